//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics`],
//! behind the optional scrape token of `[metrics]` (compared as SHA-256
//! digests in constant time, like keys).

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::auth::{extract_key, hash_key};
use crate::body::Body;
use crate::error::json_response;
use crate::events::bus::ATTEMPT_RESULTS;
use crate::metrics::{Scraped, TargetState};

/// OpenMetrics text, which Prometheus negotiates and parses.
/// Longest a scrape waits for the webhook backlog count.
const BACKLOG_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics(app: &App, headers: &HeaderMap) -> Response<Body> {
    let config = app.metrics_config.load_full();
    if !config.enabled {
        let body = &br#"{"error":{"message":"Metrics are off ([metrics] enabled = false).","type":"not_found_error","code":"not_found"}}"#[..];
        return json_response(StatusCode::NOT_FOUND, body);
    }
    if let Some(expected) = &config.token_sha256 {
        let matches = extract_key(headers).is_ok_and(|token| bool::from(hash_key(token).ct_eq(expected)));
        if !matches {
            let body = &br#"{"error":{"message":"/metrics needs the scrape token as a Bearer token.","type":"invalid_request_error","code":"invalid_api_key"}}"#[..];
            return json_response(StatusCode::UNAUTHORIZED, body);
        }
    }
    // One store read per scrape, bounded: a store outage must not stall it.
    let backlog = tokio::time::timeout(BACKLOG_WITHIN, app.events.queue.pending()).await.ok().and_then(Result::ok);
    let stats = &app.events.bus.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let text = app.metrics.render(Scraped {
        open_connections: app.connections.open(),
        events_emitted: load(&stats.emitted),
        events_stored: load(&stats.stored),
        events_spilled: load(&stats.spilled),
        webhook_attempts: std::array::from_fn(|i| (ATTEMPT_RESULTS[i], load(&stats.attempts[i]))),
        key_cache: [("hit", load(&app.auth.cache_hits)), ("miss", load(&app.auth.cache_misses))],
        webhook_backlog: backlog,
        targets: app
            .agents
            .catalog()
            .healths()
            .snapshot()
            .into_iter()
            .map(|(label, h)| TargetState { label, breaker: h.breaker_state(), in_flight: h.in_flight() })
            .collect(),
    });
    let mut response = Response::new(Body::full(text));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
