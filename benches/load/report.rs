//! Turning raw run results into the Markdown report (pasteable into the README): one table
//! per case, the gateway's overhead relative to direct and to nginx, the budget check, what
//! a store-backed key costs over a static one, what limits and credits cost over a
//! store-backed key on an unmetered plan, and what a webhook for every request costs and
//! whether all its events arrived.
//!
//! This file holds the paths, what a run records and the table cells every section uses; each
//! section of the report is a file of its own under `report/`.

#[path = "report/budgets.rs"]
mod budgets;
#[path = "report/census.rs"]
mod census;
#[path = "report/gateway.rs"]
mod gateway;
#[path = "report/metering.rs"]
mod metering;
#[path = "report/store_keys.rs"]
mod store_keys;
#[path = "report/webhook_delivery.rs"]
mod webhook_delivery;

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::loadgen::LoadResult;
use crate::redis::{Census, Traffic};
use crate::sys::Machine;
use crate::webhooks::{self, Counts};

use gateway::{
    render_baseline, render_budget, render_comparison, render_errors, render_header, render_plain_table,
    render_responses, render_stream_table,
};
use metering::render_metering;
use store_keys::render_store_keys;
use webhook_delivery::render_webhooks;

pub const DIRECT: &str = "direct";
pub const GATEWAY: &str = "gateway";
pub const NGINX: &str = "nginx";
/// The gateway called at `POST /v1/responses` (same config, its own process).
pub const GW_RESPONSES: &str = "gw-responses";
/// The same gateway config served by another build (`BENCH_BASELINE_BIN`), for before/after
/// comparisons in one run.
pub const BASELINE: &str = "baseline";
/// The gateway authenticating with a key from its embedded store.
pub const GW_EMBEDDED: &str = "gw-embedded";
/// The gateway authenticating with a key from Redis.
pub const GW_REDIS: &str = "gw-redis";
/// [`GW_EMBEDDED`] with the key's workspace on a plan with limits and credits.
pub const GW_METERED_EMBEDDED: &str = "gw-metered-embedded";
/// [`GW_REDIS`] with the key's workspace on a plan with limits and credits.
pub const GW_METERED_REDIS: &str = "gw-metered-redis";
/// [`GW_EMBEDDED`] with a webhook registered for `request.completed` (receiver on loopback).
pub const GW_WEBHOOKS_EMBEDDED: &str = "gw-webhooks-embedded";
/// [`GW_REDIS`] with a webhook registered for `request.completed` (receiver on loopback).
pub const GW_WEBHOOKS_REDIS: &str = "gw-webhooks-redis";
/// The gateway holding many streams open against a slow model (`load/open_streams.rs`).
pub const GW_OPEN_STREAMS: &str = "gw-open-streams";
/// Every path, in the order they are started and measured.
pub const PATHS: [&str; 12] = [
    DIRECT,
    GATEWAY,
    GW_RESPONSES,
    BASELINE,
    GW_EMBEDDED,
    GW_METERED_EMBEDDED,
    GW_REDIS,
    GW_METERED_REDIS,
    GW_WEBHOOKS_EMBEDDED,
    GW_WEBHOOKS_REDIS,
    NGINX,
    GW_OPEN_STREAMS,
];
/// Each webhooks path and the same store-key path without a webhook, which it is judged against.
pub const WEBHOOK_PAIRS: [(&str, &str); 2] = [(GW_WEBHOOKS_EMBEDDED, GW_EMBEDDED), (GW_WEBHOOKS_REDIS, GW_REDIS)];

/// Server-side cost of one run, for the paths whose server process we started.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_us_per_req: f64,
    pub peak_rss_mb: f64,
    /// Bytes the server wrote to its log per request (gateway only).
    pub log_bytes_per_req: Option<f64>,
    /// What its Redis server did during the measured window (Redis-backed paths only).
    pub redis: Option<RedisUsage>,
}

/// A Redis-backed path's Redis during one measured window.
#[derive(Clone, Copy, Debug)]
pub struct RedisUsage {
    pub traffic: Traffic,
    /// The `redis-server` process's CPU per request.
    pub cpu_us_per_req: f64,
}

/// One (path, case, concurrency) measurement.
pub struct Record {
    pub path: &'static str,
    pub stream: bool,
    pub concurrency: usize,
    pub load: LoadResult,
    pub usage: Option<Usage>,
    /// How the path's webhook deliveries kept up (webhooks paths only).
    pub delivery: Option<DeliveryPace>,
}

/// A webhooks path's deliveries in one row: during the measured window, and the backlog the
/// load left behind, which the benchmark lets drain before the next path's turn (so no path is
/// measured while another gateway is still delivering).
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryPace {
    /// Events received (distinct ids) during the measured window.
    pub in_window: u64,
    /// Events owed but not yet received when the load stopped (largest over the rounds).
    pub backlog: u64,
    /// How long that backlog took to arrive (longest over the rounds).
    pub drain: Duration,
    /// Whether every backlog arrived within the benchmark's limit.
    pub drained: bool,
}

impl Record {
    /// Adds another round of the same row (`BENCH_ROUNDS`): latencies and requests pooled,
    /// per-request costs weighted by each round's requests, peaks the larger.
    pub fn merge(&mut self, other: Record) {
        let (n, m) = (self.load.completed as f64, other.load.completed as f64);
        let mean = |a: f64, b: f64| if n + m > 0.0 { (a * n + b * m) / (n + m) } else { a };
        self.usage = match (self.usage, other.usage) {
            (Some(a), Some(b)) => Some(Usage {
                cpu_us_per_req: mean(a.cpu_us_per_req, b.cpu_us_per_req),
                peak_rss_mb: a.peak_rss_mb.max(b.peak_rss_mb),
                log_bytes_per_req: a.log_bytes_per_req.zip(b.log_bytes_per_req).map(|(a, b)| mean(a, b)),
                redis: a.redis.zip(b.redis).map(|(a, b)| RedisUsage {
                    traffic: a.traffic.add(b.traffic),
                    cpu_us_per_req: mean(a.cpu_us_per_req, b.cpu_us_per_req),
                }),
            }),
            (a, b) => a.or(b),
        };
        self.delivery = match (self.delivery, other.delivery) {
            (Some(a), Some(b)) => Some(DeliveryPace {
                in_window: a.in_window + b.in_window,
                backlog: a.backlog.max(b.backlog),
                drain: a.drain.max(b.drain),
                drained: a.drained && b.drained,
            }),
            (a, b) => a.or(b),
        };
        self.load.merge(other.load);
    }
}

/// What `MONITOR` saw of one Redis-backed path in its untimed census window.
pub struct CensusRecord {
    pub path: &'static str,
    pub concurrency: usize,
    /// Requests completed in the window.
    pub requests: u64,
    pub census: Census,
}

impl CensusRecord {
    fn per_request(&self, count: u64) -> f64 {
        count as f64 / self.requests.max(1) as f64
    }
}

/// A webhooks path's deliveries over the whole run, after the final wait.
pub struct WebhookCheck {
    pub path: &'static str,
    /// Requests the gateway answered with a complete 200, warm-up included: the events owed.
    pub expected: u64,
    /// Requests that failed on the client's side (their events may or may not exist).
    pub errors: u64,
    pub received: Counts,
    /// How long the final wait took (after the last row), and whether everything had arrived.
    pub waited: Duration,
}

/// What the open-streams row's budget needs beside its record.
#[derive(Clone, Copy, Debug)]
pub struct OpenStreamsFacts {
    /// Streams asked for (`BENCH_OPEN_STREAMS`); the record's concurrency is what ran.
    pub wanted: usize,
    /// The gateway's RSS before the load (its peak so far: start-up).
    pub at_rest_mb: f64,
}

/// Everything printed above the tables.
pub struct Header {
    pub machine: Machine,
    pub command: String,
    pub setup: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn render(
    header: &Header,
    records: &[Record],
    censuses: &[CensusRecord],
    checks: &[WebhookCheck],
    open_streams: Option<OpenStreamsFacts>,
) -> String {
    let mut out = String::new();
    render_header(&mut out, header);
    render_plain_table(&mut out, records);
    render_stream_table(&mut out, records);
    render_errors(&mut out, records);
    render_comparison(&mut out, records);
    render_baseline(&mut out, records);
    render_responses(&mut out, records);
    render_budget(&mut out, records);
    render_store_keys(&mut out, records, censuses);
    render_metering(&mut out, records, censuses);
    render_webhooks(&mut out, records, checks);
    budgets::render_feature_budgets(&mut out, records, censuses, open_streams);
    out
}
/// `count` per completed request in the measured window.
fn per_request(count: u64, r: &Record) -> f64 {
    count as f64 / r.load.completed.max(1) as f64
}

/// A per-request figure of the path's Redis in its measured window, as a table cell.
fn redis_cell(r: &Record, count: fn(&Traffic) -> u64) -> String {
    r.usage
        .and_then(|u| u.redis)
        .map_or("–".to_owned(), |redis| format!("{:.4}", per_request(count(&redis.traffic), r)))
}
/// Flags the non-stream rows of `pairs` whose load had errors, and ends the section.
fn warn_errors(out: &mut String, records: &[Record], pairs: &[(&str, &str)]) {
    let with_errors: Vec<String> = records
        .iter()
        .filter(|r| !r.stream && pairs.iter().any(|&(a, b)| r.path == a || r.path == b) && r.load.errors > 0)
        .map(|r| format!("{} c={}", r.path, r.concurrency))
        .collect();
    if !with_errors.is_empty() {
        let _ = writeln!(out, "- **⚠ errors in {}; the numbers above are not valid**", with_errors.join(", "));
    }
    out.push('\n');
}

fn find<'a>(records: &'a [Record], path: &str, stream: bool, concurrency: usize) -> Option<&'a Record> {
    records.iter().find(|r| r.path == path && r.stream == stream && r.concurrency == concurrency)
}

fn case_name(stream: bool) -> &'static str {
    if stream {
        "stream"
    } else {
        "non-stream"
    }
}

fn pct_ms(h: &Histogram<u64>, quantile_percent: f64) -> f64 {
    h.value_at_percentile(quantile_percent) as f64 / 1000.0
}

fn ms(h: &Histogram<u64>, quantile_percent: f64) -> String {
    if h.is_empty() {
        return "–".to_owned();
    }
    format!("{:.3}", pct_ms(h, quantile_percent))
}

fn cpu_cell(r: &Record) -> String {
    r.usage.map_or("–".to_owned(), |u| format!("{:.1}", u.cpu_us_per_req))
}

fn rss_cell(r: &Record) -> String {
    r.usage.map_or("–".to_owned(), |u| format!("{:.1}", u.peak_rss_mb))
}

fn error_cell(r: &Record) -> String {
    match r.load.errors {
        0 => "0".to_owned(),
        n => format!("**⚠ {n}**"),
    }
}

/// One budget line: `- **PASS** what: detail` (MISS, or n/a when not measured).
fn budget_line(out: &mut String, ok: Option<bool>, what: &str, detail: &str) {
    let verdict = match ok {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "n/a ",
    };
    let _ = writeln!(out, "- **{verdict}** {what}: {detail}");
}
