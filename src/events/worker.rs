//! The webhook delivery worker: claims due deliveries, signs and POSTs them,
//! and decides what happens next.
//!
//! - **At least once**: a delivery leaves the queue only after a 2xx, after
//!   its last retry, or when its webhook is gone; a replica that dies while
//!   holding one leaves it to be claimed again (embedded: at restart; Redis:
//!   by any replica after `webhooks.claim_idle_ms`). Every attempt carries the
//!   event id as `webhook-id`, so receivers can deduplicate.
//! - **Retries**: network errors, timeouts, 408, 429 and 5xx are retried on
//!   `webhooks.retry_schedule_ms` (Standard Webhooks' schedule by default),
//!   each wait moved by up to `jitter_percent`, and never sooner than a
//!   `Retry-After` the receiver sent. Other 4xx answers are not retried.
//!   410 Gone disables the endpoint at once, as does a run of
//!   `disable_after_failures` failed attempts; either emits `webhook.disabled`.
//! - **Pace and isolation** (`worker/endpoints.rs`): each endpoint has a
//!   window of attempts in flight, from `per_endpoint_concurrency` up to
//!   `max_per_endpoint_concurrency` while it keeps up, halved when it fails.
//!   A replica holds at most `max_in_flight` claimed deliveries: those in
//!   flight, and per endpoint a local line (four times its window, twice
//!   while it fails) that its running tasks take next, so a busy endpoint
//!   costs no store write per waiting delivery. Claims are sized to the room
//!   in those lines plus a new endpoint's worth; beyond its line a delivery
//!   is put back for a moment. So a receiver that hangs holds only its own
//!   slots and every other endpoint keeps its pace.
//! - **Store writes** (`worker/finisher.rs`): what becomes of each delivery
//!   is written in batches, one store write for all decided meanwhile.
//! - **Credits**: each delivered event costs `webhooks.price` integration
//!   micro-credits, reserved before the attempt and charged after a 2xx
//!   (a failed attempt costs nothing). When the workspace cannot pay, the
//!   delivery waits `credit_wait_ms` and tries again, without counting an
//!   attempt, so deliveries resume on their own after a top-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rand::Rng;
use serde::Serialize;
use tokio::sync::Semaphore;

mod endpoints;
mod finisher;

use endpoints::{Bounds, Claimed, Endpoints, Placed, Signal};
use finisher::Finisher;

use super::ssrf::{self, CheckedResolver};
use super::store::{Attempt, Delivery, Finished, Next};
use super::{sign, EventType, Events, Webhook};
use crate::credits::{Kind, Meter, MeterError};

type HttpClient = Client<HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

/// The most of a receiver's answer read (then the connection is dropped).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long a delivery for a busy endpoint waits before it is claimed again.
const BUSY_WAIT: Duration = Duration::from_millis(250);

pub struct Worker {
    events: Arc<Events>,
    meter: Arc<Meter>,
    client: HttpClient,
    /// Claimed deliveries this replica may hold (in flight or in a line).
    budget: Arc<Semaphore>,
    endpoints: Endpoints,
    finisher: Finisher,
    /// Webhooks this replica saw fail since their record was read: their
    /// next success must reset the stored run of failures.
    failed: Mutex<std::collections::HashSet<String>>,
}

/// How one attempt went.
enum Answer {
    Status { status: StatusCode, retry_after: Option<Duration> },
    Failed(String),
}

impl Worker {
    pub fn new(events: Arc<Events>, meter: Arc<Meter>) -> Worker {
        let config = events.webhook_config.load_full();
        let mut http =
            HttpConnector::new_with_resolver(CheckedResolver { allow_private: config.allow_private_targets });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .expect("ring provides TLS 1.2 and 1.3")
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            // A connection per slot of the widest window stays open, so a busy
            // endpoint's deliveries never pay for a new connection each.
            .pool_max_idle_per_host(config.max_per_endpoint_concurrency)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        let budget = Arc::new(Semaphore::new(config.max_in_flight));
        let finisher = Finisher::start(events.queue.clone(), &events.tasks);
        Worker { events, meter, client, budget, endpoints: Endpoints::default(), finisher, failed: Mutex::default() }
    }

    /// Claims and delivers, forever.
    pub async fn run(self) -> std::convert::Infallible {
        let this = Arc::new(self);
        loop {
            // Per turn: a reload's poll interval applies from the next one.
            let config = this.events.webhook_config.load_full();
            let wanted = this.budget.available_permits().min(this.endpoints.room(bounds(&config)));
            let claimed = if wanted == 0 {
                Vec::new()
            } else {
                match this.events.queue.claim(wanted, this.events.clock.now_ms()).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim webhook deliveries; will retry");
                        Vec::new()
                    }
                }
            };
            let mut progressed = false;
            // One read per webhook per batch, not one per delivery.
            let mut webhooks: HashMap<String, Option<Arc<Webhook>>> = HashMap::new();
            for delivery in claimed {
                if !webhooks.contains_key(&delivery.webhook) {
                    let read = this.events.webhooks.webhook(&delivery.webhook).await;
                    let read = match read {
                        Ok(w) => Some(w.map(Arc::new)),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read a webhook; its deliveries wait");
                            None
                        }
                    };
                    match read {
                        Some(w) => webhooks.insert(delivery.webhook.clone(), w),
                        None => {
                            this.put_back(delivery, config.poll_interval);
                            continue;
                        }
                    };
                }
                let webhook = webhooks[&delivery.webhook].clone();
                progressed |= this.start((delivery, webhook));
            }
            // Nothing started or lined up (idle, or every claimed delivery was
            // for a full endpoint and went back): wait, never spin.
            if !progressed || this.budget.available_permits() == 0 {
                let wake = this.events.bus.deliveries_queued.notified();
                tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep(config.poll_interval) => {}
                }
            }
        }
    }

    /// Starts one delivery in a task of its own, lines it up behind its
    /// endpoint's running tasks, or puts it back when that line is full.
    /// Whether it was started or lined up.
    fn start(self: &Arc<Self>, claimed: Claimed) -> bool {
        let Ok(permit) = self.budget.try_acquire() else {
            self.put_back(claimed.0, BUSY_WAIT);
            return false;
        };
        match self.endpoints.place(claimed, bounds(&self.events.webhook_config.load())) {
            Placed::Run(claimed) => {
                // Released by hand as each delivery of the task ends.
                permit.forget();
                self.spawn_endpoint(claimed);
                true
            }
            Placed::Lined => {
                permit.forget();
                true
            }
            Placed::Full(delivery) => {
                drop(permit);
                self.put_back(delivery, BUSY_WAIT);
                false
            }
        }
    }

    /// A task for one of an endpoint's slots, starting with `claimed`.
    fn spawn_endpoint(self: &Arc<Self>, claimed: Claimed) {
        self.events.tasks.spawn(self.clone().run_endpoint(claimed));
    }

    /// Delivers, then takes the next delivery in the endpoint's line (and
    /// starts more tasks when its window widened), until the line is empty.
    async fn run_endpoint(self: Arc<Self>, (mut delivery, mut webhook): Claimed) {
        loop {
            let id = delivery.webhook.clone();
            let (signal, disabled) = self.deliver(delivery, webhook).await;
            self.budget.add_permits(1);
            let config = self.events.webhook_config.load();
            let after = self.endpoints.after(&id, signal, disabled, bounds(&config));
            for claimed in after.more {
                self.spawn_endpoint(claimed);
            }
            if !after.evicted.is_empty() {
                self.budget.add_permits(after.evicted.len());
                for delivery in after.evicted {
                    self.put_back(delivery, BUSY_WAIT);
                }
            }
            // Room in the line: look for more work at once.
            if after.room {
                self.events.bus.deliveries_queued.notify_one();
            }
            match after.next {
                Some((d, w)) => (delivery, webhook) = (d, w),
                None => return,
            }
        }
    }

    /// Puts a claimed delivery back, to be claimed again after `wait`
    /// (no attempt counted).
    fn put_back(&self, delivery: Delivery, wait: Duration) {
        let at_ms = self.events.clock.now_ms() + wait.as_millis() as i64;
        let next = Next::Retry { at_ms, attempts: delivery.attempts };
        self.finisher.send(Finished { delivery, next, attempt: None });
    }

    /// One attempt and what follows it: what it says about the endpoint's
    /// pace, and whether it disabled the webhook.
    async fn deliver(&self, delivery: Delivery, webhook: Option<Arc<Webhook>>) -> (Signal, bool) {
        let d = &delivery;
        let webhook = match webhook {
            Some(w) if w.disabled_at.is_none() => w,
            // Deleted or disabled meanwhile: nothing to deliver to.
            _ => {
                self.finisher.send(Finished { delivery, next: Next::Done, attempt: None });
                return (Signal::Neutral, false);
            }
        };
        let config = self.events.webhook_config.load_full();
        let workspace: Arc<str> = Arc::from(d.workspace.as_str());
        let meter = &self.meter;
        let ticket = match config.price {
            0 => None,
            price => match meter.reserve(&workspace, &Arc::from(webhook.id.as_str()), Kind::Integration, price).await {
                Ok(t) => Some(t),
                Err(e) => {
                    if !matches!(e, MeterError::InsufficientQuota { .. }) {
                        tracing::warn!(error = %e, "cannot reserve integration credits; the delivery waits");
                    }
                    let at_ms = self.events.clock.now_ms() + config.credit_wait.as_millis() as i64;
                    let next = Next::Retry { at_ms, attempts: d.attempts };
                    self.finisher.send(Finished { delivery, next, attempt: None });
                    return (Signal::Neutral, false);
                }
            },
        };
        let started_ms = self.events.clock.now_ms();
        let started = Instant::now();
        let answer = self.attempt(&webhook, d, started_ms).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let success = matches!(&answer, Answer::Status { status, .. } if status.is_success());
        if let Some(ticket) = ticket {
            meter.settle_flat(ticket, Arc::from("webhook"), if success { config.price } else { 0 });
        }
        let attempts = d.attempts + 1;
        let (status, error, retry_after) = match &answer {
            Answer::Status { status, retry_after } => (Some(status.as_u16()), None, *retry_after),
            Answer::Failed(e) => (None, Some(e.clone()), None),
        };
        let gone = status == Some(410);
        let retryable = match status {
            None => true,
            Some(s) => s == 408 || s == 429 || s >= 500,
        };
        // A success after successes changes nothing: no store write.
        let failed_here = {
            let mut failed = self.failed.lock().expect("failed lock");
            if success {
                failed.remove(&webhook.id)
            } else {
                failed.insert(webhook.id.clone());
                true
            }
        };
        let failures = if success && webhook.failures == 0 && !failed_here {
            0
        } else {
            match self.events.webhooks.count_attempt(&webhook.id, success).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count a webhook attempt");
                    0
                }
            }
        };
        let disable = if gone {
            Some("the receiver answered 410 Gone")
        } else if !success && failures >= config.disable_after_failures {
            Some("too many consecutive failed attempts")
        } else {
            None
        };
        let (next, result) = if success {
            (Next::Done, "delivered")
        } else if disable.is_some() {
            (Next::Done, "disabled")
        } else if retryable && (attempts as usize) <= config.retry_schedule.len() {
            let wait = self.backoff(attempts, retry_after);
            (Next::Retry { at_ms: self.events.clock.now_ms() + wait.as_millis() as i64, attempts }, "retrying")
        } else {
            (Next::Done, "failed")
        };
        let attempt = Attempt {
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            attempt: attempts,
            at_ms: started_ms,
            status,
            error,
            latency_ms,
            result: result.to_owned(),
        };
        tracing::debug!(webhook = %webhook.id, event = %d.event_id, attempt = attempts, ?status, result, "webhook attempt");
        self.events.bus.stats.attempt(result);
        self.finisher.send(Finished { delivery, next, attempt: Some(attempt) });
        if let Some(reason) = disable {
            self.disable(&webhook, reason, status).await;
        }
        let signal = if success {
            Signal::Success
        } else if retryable {
            Signal::Backoff
        } else {
            Signal::Neutral
        };
        (signal, disable.is_some())
    }

    /// One signed POST, bounded by `webhooks.timeout_ms` from connect to the
    /// end of the (bounded) answer.
    async fn attempt(&self, webhook: &Webhook, d: &Delivery, now_ms: i64) -> Answer {
        let config = self.events.webhook_config.load_full();
        // Names are checked by the resolver at connect time; literals here.
        match ssrf::parse_url(&webhook.url) {
            Ok((_, host, _)) => {
                if let Err(e) = ssrf::check_literal(&host, config.allow_private_targets) {
                    return Answer::Failed(e.to_string());
                }
            }
            Err(e) => return Answer::Failed(e.to_string()),
        }
        let timestamp = now_ms / 1000;
        let body = Bytes::from(d.body.clone());
        let (standard, tollgate) =
            sign::signature_headers(&webhook.signing_keys(now_ms), &d.event_id, timestamp, &body);
        let request = Request::post(&webhook.url)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(header::USER_AGENT, concat!("tollgate-webhooks/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", standard)
            .header("x-tollgate-signature", tollgate)
            .header("x-tollgate-event", &d.event_type)
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Answer::Failed(format!("cannot build the request: {e}")),
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| crate::telemetry::chain(&e))?;
            let status = response.status();
            let retry_after =
                response.headers().get(header::RETRY_AFTER).and_then(|v| retry_after(v.to_str().ok()?, now_ms));
            // Read (a bounded part of) the answer so the connection can be reused.
            let _ = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await;
            Ok::<_, String>(Answer::Status { status, retry_after })
        };
        match tokio::time::timeout(config.timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Answer::Failed(e),
            Err(_) => Answer::Failed(format!("no answer within {} ms", config.timeout.as_millis())),
        }
    }

    /// The wait before attempt `attempts + 1`: the schedule's, with jitter,
    /// and at least the receiver's `Retry-After`.
    fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let config = self.events.webhook_config.load_full();
        let base = config.retry_schedule[attempts as usize - 1];
        let spread = base.as_millis() as u64 * config.jitter_percent / 100;
        let jittered = if spread == 0 {
            base
        } else {
            let offset = rand::thread_rng().gen_range(0..=2 * spread);
            Duration::from_millis((base.as_millis() as u64 + offset).saturating_sub(spread))
        };
        jittered.max(retry_after.unwrap_or_default())
    }

    async fn disable(&self, webhook: &Webhook, reason: &str, status: Option<u16>) {
        let now = self.events.clock.now_ms();
        match self.events.webhooks.disable_webhook(&webhook.id, reason, now / 1000).await {
            Ok(true) => {
                tracing::warn!(webhook = %webhook.id, reason, "webhook disabled");
                #[derive(Serialize)]
                struct Disabled<'a> {
                    webhook_id: &'a str,
                    url: &'a str,
                    reason: &'a str,
                    last_status: Option<u16>,
                }
                let data = Disabled { webhook_id: &webhook.id, url: &webhook.url, reason, last_status: status };
                self.events.emit(&Arc::from(webhook.workspace.as_str()), EventType::WebhookDisabled, &data);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, webhook = %webhook.id, "cannot disable a webhook"),
        }
    }
}

/// The bounds of every endpoint's window.
fn bounds(config: &crate::config::WebhooksConfig) -> Bounds {
    Bounds { floor: config.per_endpoint_concurrency, ceiling: config.max_per_endpoint_concurrency }
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110), from `now_ms`;
/// bounded to a day so a receiver cannot park a delivery for ever.
fn retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    const MAX: Duration = Duration::from_secs(86_400);
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?.timestamp_millis();
            Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64)
        }
    };
    Some(wait.min(MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc2822("Sun, 22 Nov 2026 10:00:00 GMT").unwrap().timestamp_millis();
        assert_eq!(retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Sun, 22 Nov 2026 10:02:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO), "a past date: now");
        assert_eq!(retry_after("99999999", now), Some(Duration::from_secs(86_400)), "bounded to a day");
        assert_eq!(retry_after("soon", now), None);
    }
}
