//! Prometheus metrics (`GET /metrics`, DESIGN.md "Operations"), with the
//! `prometheus-client` crate: one registry per gateway (not a process-wide
//! recorder), so two gateways in one process — the tests — count apart.
//!
//! **Where they are counted.** Every HTTP request once, in the router, by
//! route pattern and status class; every model request once, from its usage
//! record ([`MetricsSink`], beside the access log and events): outcome,
//! tokens, credits, duration. Gauges that are state, not events (open
//! connections, the event queue) are read when scraped, so they cost the
//! request path nothing.
//!
//! **Bounded cardinality.** Labels come from fixed sets (route patterns,
//! status classes, outcomes) or from [`Bounded`]: the first
//! [`MAX_LABEL_VALUES`] distinct model ids (or error codes) keep their name,
//! later ones count as `other` — a workspace creating agents by the thousand
//! cannot blow up the scrape.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::usage::{UsageRecord, UsageSink};

mod labels;
mod store;

use labels::{
    latency, AttemptLabels, CodeLabel, HttpLabels, ModelLabel, ModelLabels, ResultLabel, RouteLabel, TargetLabel,
    TokenLabels,
};
pub use labels::{status_class, Bounded, MAX_LABEL_VALUES};
use store::{StoreErrors, StoreLatency};

/// Gauges read when scraped.
pub struct Scraped {
    pub open_connections: usize,
    pub events_emitted: u64,
    pub events_stored: u64,
    pub events_spilled: u64,
    /// Webhook delivery attempts so far, by result.
    pub webhook_attempts: [(&'static str, u64); 4],
    /// Store-key lookups the key cache answered, and those it did not.
    pub key_cache: [(&'static str, u64); 2],
    /// Every configured upstream target's state.
    pub targets: Vec<TargetState>,
    /// Webhook deliveries queued and not yet done (`None`: the store did
    /// not answer in time; the gauge keeps its last value).
    pub webhook_backlog: Option<u64>,
}

/// One upstream target at scrape time.
pub struct TargetState {
    /// `provider/upstream_model`.
    pub label: String,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker: u8,
    pub in_flight: u32,
}

/// The gateway's metrics; see the module doc.
pub struct Metrics {
    /// `[metrics] enabled = false`: nothing is counted (the request path
    /// pays nothing) and `/metrics` answers 404.
    enabled: bool,
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    model_requests: Family<ModelLabels, Counter>,
    model_duration: Family<ModelLabel, Histogram, fn() -> Histogram>,
    tokens: Family<TokenLabels, Counter>,
    credits: Family<ModelLabel, Counter>,
    refusals: Family<CodeLabel, Counter>,
    open_connections: Gauge,
    events_emitted: Counter,
    events_stored: Counter,
    events_spilled: Counter,
    event_queue: Gauge,
    webhook_attempts: Family<ResultLabel, Counter>,
    key_cache: Family<ResultLabel, Counter>,
    upstream_attempts: Family<AttemptLabels, Counter>,
    upstream_first_byte: Family<TargetLabel, Histogram, fn() -> Histogram>,
    breaker_state: Family<TargetLabel, Gauge>,
    webhook_backlog: Gauge,
    open_streams: Gauge,
    target_in_flight: Family<TargetLabel, Gauge>,
    models: Bounded,
    targets: Bounded,
    codes: Bounded,
}

impl Metrics {
    pub fn new(enabled: bool) -> Metrics {
        let mut registry = Registry::with_prefix("tollgate");
        let metrics = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency),
            model_requests: Family::default(),
            model_duration: Family::new_with_constructor(latency),
            tokens: Family::default(),
            credits: Family::default(),
            refusals: Family::default(),
            open_connections: Gauge::default(),
            events_emitted: Counter::default(),
            events_stored: Counter::default(),
            events_spilled: Counter::default(),
            event_queue: Gauge::default(),
            webhook_attempts: Family::default(),
            key_cache: Family::default(),
            upstream_attempts: Family::default(),
            upstream_first_byte: Family::new_with_constructor(latency),
            breaker_state: Family::default(),
            webhook_backlog: Gauge::default(),
            open_streams: Gauge::default(),
            target_in_flight: Family::default(),
            models: Bounded::default(),
            targets: Bounded::default(),
            codes: Bounded::default(),
            registry: Registry::default(),
            enabled,
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern and status class",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_response_seconds",
            "Time from a request's arrival to its response headers (a stream's first byte), by route pattern",
            metrics.http_duration.clone(),
        );
        registry.register(
            "model_requests",
            "Model requests, by model (agent or alias), front door, status class and outcome",
            metrics.model_requests.clone(),
        );
        registry.register(
            "model_request_seconds",
            "Time from a model request's arrival to the end of its answer (the whole stream), by model",
            metrics.model_duration.clone(),
        );
        registry.register("tokens", "Tokens by model and direction (input, output)", metrics.tokens.clone());
        registry.register(
            "credits_charged",
            "Micro-credits charged for model requests, by model",
            metrics.credits.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused by the gateway, by error code (rate_limit_exceeded, insufficient_quota, invalid_api_key...)",
            metrics.refusals.clone(),
        );
        registry.register("open_connections", "Client connections open now", metrics.open_connections.clone());
        registry.register("events_emitted", "Events emitted by this process", metrics.events_emitted.clone());
        registry.register(
            "events_stored",
            "Events written to the event log by this process",
            metrics.events_stored.clone(),
        );
        registry.register(
            "events_spilled",
            "Events that found the in-memory queue full and went through the overflow",
            metrics.events_spilled.clone(),
        );
        registry.register("event_queue", "Events emitted and not yet in the event log", metrics.event_queue.clone());
        registry.register(
            "key_cache_lookups",
            "Store-key lookups by result: hit (the cache answered) or miss (the store was asked)",
            metrics.key_cache.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by this process, by result (delivered, retrying, failed, disabled)",
            metrics.webhook_attempts.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Calls to upstream targets (provider/upstream_model), by result: ok, or the kind of failure",
            metrics.upstream_attempts.clone(),
        );
        registry.register(
            "upstream_first_byte_seconds",
            "Time from sending a call to a target to its response headers, by target",
            metrics.upstream_first_byte.clone(),
        );
        registry.register(
            "target_breaker_state",
            "Each configured target's circuit breaker: 0 closed, 1 open (skipped), 2 half-open (probing)",
            metrics.breaker_state.clone(),
        );
        registry.register(
            "target_in_flight",
            "Calls in flight on each configured target (a stream counts until it ends)",
            metrics.target_in_flight.clone(),
        );
        registry.register(
            "webhook_backlog",
            "Webhook deliveries queued in the store and not yet delivered or given up (all replicas)",
            metrics.webhook_backlog.clone(),
        );
        registry.register("open_streams", "Streamed answers being relayed now", metrics.open_streams.clone());
        registry.register(
            "build",
            "This build of the gateway",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics { registry, ..metrics }
    }

    /// One HTTP request, answered with `status` after `elapsed`; `code` is
    /// the error code of a refusal (4xx the gateway itself decided).
    pub fn http(&self, route: &'static str, status: u16, elapsed: Duration, refused: Option<&str>) {
        if !self.enabled {
            return;
        }
        let status = status_class(status);
        self.http_requests.get_or_create(&HttpLabels { route, status }).inc();
        self.http_duration.get_or_create(&RouteLabel { route }).observe(elapsed.as_secs_f64());
        if let Some(code) = refused {
            let code = self.codes.label(&Arc::from(code));
            self.refusals.get_or_create(&CodeLabel { code }).inc();
        }
    }

    /// One model request's usage record.
    pub fn model(&self, r: &UsageRecord) {
        if !self.enabled {
            return;
        }
        let model = self.models.label(&r.model);
        let labels = ModelLabels {
            model: model.clone(),
            endpoint: r.endpoint,
            status: status_class(r.status),
            outcome: r.outcome.as_str(),
        };
        self.model_requests.get_or_create(&labels).inc();
        let label = ModelLabel { model };
        self.model_duration.get_or_create(&label).observe(r.latency.as_secs_f64());
        for (direction, n) in [("input", r.usage.prompt_tokens), ("output", r.usage.completion_tokens)] {
            if n > 0 {
                self.tokens.get_or_create(&TokenLabels { model: label.model.clone(), direction }).inc_by(n);
            }
        }
        if r.credits > 0 {
            self.credits.get_or_create(&label).inc_by(r.credits);
        }
    }

    /// One call to an upstream target: `result` is `ok` (with the time to
    /// its headers) or the kind of failure.
    pub fn upstream(&self, target: &Arc<str>, result: &'static str, first_byte: Option<Duration>) {
        if !self.enabled {
            return;
        }
        let target = self.targets.label(target);
        if let Some(took) = first_byte {
            self.upstream_first_byte.get_or_create(&TargetLabel { target: target.clone() }).observe(took.as_secs_f64());
        }
        self.upstream_attempts.get_or_create(&AttemptLabels { target, result }).inc();
    }

    /// Counts a stream as open until the guard is dropped (the stream's end).
    pub fn stream_opened(&self) -> OpenStream {
        self.open_streams.inc();
        OpenStream(self.open_streams.clone())
    }

    /// Exports the store's operation latency and failures (read when scraped).
    pub fn watch_store(&mut self, stats: Arc<crate::store::stats::OpStats>) {
        self.registry.register(
            "store_operation_seconds",
            "Time of each call to the store backend (embedded file or Redis), queueing included",
            StoreLatency(stats.clone()),
        );
        self.registry.register(
            "store_errors",
            "Calls to the store that failed (unavailable, timed out, unreadable data)",
            StoreErrors(stats),
        );
    }

    /// The text exposition, with the scrape-time gauges filled in.
    pub fn render(&self, now: Scraped) -> String {
        self.open_connections.set(now.open_connections as i64);
        catch_up(&self.events_emitted, now.events_emitted);
        catch_up(&self.events_stored, now.events_stored);
        catch_up(&self.events_spilled, now.events_spilled);
        self.event_queue.set(now.events_emitted.saturating_sub(now.events_stored) as i64);
        for (result, total) in now.webhook_attempts {
            catch_up(&self.webhook_attempts.get_or_create(&ResultLabel { result }), total);
        }
        for (result, total) in now.key_cache {
            catch_up(&self.key_cache.get_or_create(&ResultLabel { result }), total);
        }
        if let Some(backlog) = now.webhook_backlog {
            self.webhook_backlog.set(backlog as i64);
        }
        // A reload may drop targets: the gauges show the config in force.
        self.breaker_state.clear();
        self.target_in_flight.clear();
        for t in now.targets {
            let label = TargetLabel { target: Arc::from(t.label) };
            self.breaker_state.get_or_create(&label).set(i64::from(t.breaker));
            self.target_in_flight.get_or_create(&label).set(i64::from(t.in_flight));
        }
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(true)
    }
}

/// Moves a counter mirrored from another process-wide counter up to `total`.
fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// A stream being relayed; see [`Metrics::stream_opened`].
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The usage sink that counts each model request, then hands the record on.
pub struct MetricsSink {
    metrics: Arc<Metrics>,
    inner: Arc<dyn UsageSink>,
}

impl MetricsSink {
    pub fn new(metrics: Arc<Metrics>, inner: Arc<dyn UsageSink>) -> MetricsSink {
        MetricsSink { metrics, inner }
    }
}

impl UsageSink for MetricsSink {
    fn record(&self, record: UsageRecord) {
        self.metrics.model(&record);
        self.inner.record(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_registry_counts_nothing() {
        let m = Metrics::new(false);
        m.http("/chat/completions", 200, Duration::from_millis(3), None);
        let text = m.render(Scraped {
            open_connections: 0,
            events_emitted: 0,
            events_stored: 0,
            events_spilled: 0,
            webhook_attempts: [("delivered", 0), ("retrying", 0), ("failed", 0), ("disabled", 0)],
            key_cache: [("hit", 0), ("miss", 0)],
            targets: Vec::new(),
            webhook_backlog: None,
        });
        assert!(!text.contains("tollgate_http_requests_total{"), "{text}");
    }

    #[test]
    fn the_exposition_names_every_family() {
        let m = Metrics::new(true);
        m.http("/chat/completions", 200, Duration::from_millis(3), None);
        m.http("/chat/completions", 429, Duration::from_millis(1), Some("rate_limit_exceeded"));
        let text = m.render(Scraped {
            open_connections: 3,
            events_emitted: 5,
            events_stored: 4,
            events_spilled: 0,
            webhook_attempts: [("delivered", 2), ("retrying", 0), ("failed", 0), ("disabled", 0)],
            key_cache: [("hit", 7), ("miss", 1)],
            targets: vec![TargetState { label: "openai/gpt-4o".into(), breaker: 1, in_flight: 2 }],
            webhook_backlog: Some(4),
        });
        assert!(text.contains("tollgate_webhook_backlog 4"), "{text}");
        assert!(text.contains("tollgate_target_breaker_state{target=\"openai/gpt-4o\"} 1"), "{text}");
        assert!(text.contains("tollgate_target_in_flight{target=\"openai/gpt-4o\"} 2"), "{text}");
        assert!(text.contains("tollgate_http_requests_total{route=\"/chat/completions\",status=\"2xx\"} 1"), "{text}");
        assert!(text.contains("tollgate_refusals_total{code=\"rate_limit_exceeded\"} 1"), "{text}");
        assert!(text.contains("tollgate_open_connections 3"), "{text}");
        assert!(text.contains("tollgate_event_queue 1"), "{text}");
        assert!(text.contains("tollgate_build_info{version="), "{text}");
        assert!(text.contains("tollgate_webhook_attempts_total{result=\"delivered\"} 2"), "{text}");
        assert!(text.contains("tollgate_key_cache_lookups_total{result=\"hit\"} 7"), "{text}");
    }
}
