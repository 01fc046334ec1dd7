//! Turning raw run results into the Markdown report (pasteable into the README): one table
//! per case, the gateway's overhead relative to direct and to nginx, the budget check, what
//! a store-backed key costs over a static one, what limits and credits cost over a
//! store-backed key on an unmetered plan, and what a webhook for every request costs and
//! whether all its events arrived.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::loadgen::LoadResult;
use crate::redis::{Census, Traffic};
use crate::sys::Machine;
use crate::webhooks::{self, Counts};

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
/// Every path, in the order they are started and measured.
pub const PATHS: [&str; 11] = [
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
];
/// Each metered path and the plain store-key path it is judged against.
const METERED_PAIRS: [(&str, &str); 2] = [(GW_METERED_EMBEDDED, GW_EMBEDDED), (GW_METERED_REDIS, GW_REDIS)];
/// Each webhooks path and the same store-key path without a webhook, which it is judged against.
pub const WEBHOOK_PAIRS: [(&str, &str); 2] = [(GW_WEBHOOKS_EMBEDDED, GW_EMBEDDED), (GW_WEBHOOKS_REDIS, GW_REDIS)];

/// What the gateway must achieve at the budget concurrency.
const BUDGET_CONCURRENCY: usize = 64;
const BUDGET_RPS_VS_NGINX: f64 = 0.8;
const BUDGET_ADDED_P99_MS: f64 = 1.0;
const BUDGET_CPU_VS_NGINX: f64 = 2.0;
const BUDGET_RSS_MB: f64 = 30.0;

/// What a cached store-backed key may add over a static key, judged at concurrency 1: with
/// one client the machine is least loaded, so a few µs are not lost in scheduling noise.
const STORE_BUDGET_CONCURRENCY: usize = 1;
const BUDGET_LOOKUP_ADDED_P50_US: f64 = 5.0;
/// "No Redis round trip per request" means ≈ 0 round trips per request on the request path. A
/// round trip per request would be ≥ 1; this leaves room for a rare cache expiry.
const BUDGET_REDIS_COMMANDS_PER_REQ: f64 = 0.01;

/// Limits and credits: the embedded ledger may add this much to p99 over the plain store key...
const BUDGET_METERED_P99_RATIO: f64 = 1.05;
/// ...and the Redis ledger exactly one round trip on the request path (the admission), give or
/// take a rare key-cache or terms-cache refresh.
const BUDGET_METERED_REDIS_ROUND_TRIPS: f64 = 1.0;
const ROUND_TRIP_TOLERANCE: f64 = 0.01;

/// Webhooks (issue 5): a webhook for every request may add this much to p99 over the same
/// store key without one, and every event of the run must have been delivered by the end.
const BUDGET_WEBHOOKS_P99_RATIO: f64 = 1.05;

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

/// Everything printed above the tables.
pub struct Header {
    pub machine: Machine,
    pub command: String,
    pub setup: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn render(header: &Header, records: &[Record], censuses: &[CensusRecord], checks: &[WebhookCheck]) -> String {
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
    out
}

fn render_header(out: &mut String, header: &Header) {
    let m = &header.machine;
    let _ = writeln!(out, "## tollgate load benchmark\n");
    let _ = writeln!(out, "- command: `{}`", header.command);
    let _ = writeln!(out, "- machine: {} CPUs, {}", m.cpus, m.cpu_model);
    for line in &header.setup {
        let _ = writeln!(out, "- {line}");
    }
    for warning in &header.warnings {
        let _ = writeln!(out, "\n> **⚠ {warning}**");
    }
    out.push('\n');
}

fn render_plain_table(out: &mut String, records: &[Record]) {
    let _ = writeln!(out, "### Non-streaming (`chat.completion`, ~0.5 kB)\n");
    let _ = writeln!(out, "| path | conc. | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | peak RSS MB | errors |");
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in records.iter().filter(|r| !r.stream) {
        let h = &r.load.total;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.path,
            r.concurrency,
            r.load.rps(),
            ms(h, 50.0),
            ms(h, 99.0),
            ms(h, 99.9),
            cpu_cell(r),
            rss_cell(r),
            error_cell(r),
        );
    }
    out.push('\n');
}

fn render_stream_table(out: &mut String, records: &[Record]) {
    if !records.iter().any(|r| r.stream) {
        return;
    }
    let _ = writeln!(out, "### Streaming (SSE: 16 chunks + usage + `[DONE]`; TTFB = first body frame)\n");
    let _ = writeln!(
        out,
        "| path | conc. | req/s | TTFB p50 | TTFB p99 | TTFB p99.9 | total p50 | total p99 | total p99.9 | CPU µs/req | peak RSS MB | errors |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in records.iter().filter(|r| r.stream) {
        let (t, f) = (&r.load.total, &r.load.ttfb);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.path,
            r.concurrency,
            r.load.rps(),
            ms(f, 50.0),
            ms(f, 99.0),
            ms(f, 99.9),
            ms(t, 50.0),
            ms(t, 99.0),
            ms(t, 99.9),
            cpu_cell(r),
            rss_cell(r),
            error_cell(r),
        );
    }
    let _ = writeln!(out, "\nLatencies in ms.\n");
}

/// Errors and reconnects get their own lines: a row with errors is not a valid measurement.
fn render_errors(out: &mut String, records: &[Record]) {
    let mut any = false;
    for r in records {
        if r.load.errors > 0 {
            any = true;
            let _ = writeln!(
                out,
                "- **⚠ {} {} c={}: {} errors** — e.g. {}",
                r.path,
                case_name(r.stream),
                r.concurrency,
                r.load.errors,
                r.load
                    .error_samples
                    .iter()
                    .map(|s| format!("`{}`", s.replace('`', "'")))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if r.load.reconnects > 0 {
            any = true;
            let _ = writeln!(
                out,
                "- {} {} c={}: server closed keep-alive connections {} times",
                r.path,
                case_name(r.stream),
                r.concurrency,
                r.load.reconnects
            );
        }
    }
    for r in records.iter().filter(|r| r.path == GATEWAY) {
        if let Some(bytes) = r.usage.and_then(|u| u.log_bytes_per_req) {
            any = true;
            let _ = writeln!(
                out,
                "- gateway {} c={}: {bytes:.0} bytes of log per request",
                case_name(r.stream),
                r.concurrency
            );
        }
    }
    if any {
        out.push('\n');
    }
}

/// What the Responses front door may cost over chat completions, per request.
const BUDGET_RESPONSES_CPU_VS_CHAT: f64 = 1.3;

/// The Responses front door against the chat path of the same build.
fn render_responses(out: &mut String, records: &[Record]) {
    let pairs: Vec<(&Record, &Record)> = records
        .iter()
        .filter(|r| r.path == GW_RESPONSES)
        .filter_map(|resp| find(records, GATEWAY, resp.stream, resp.concurrency).map(|chat| (resp, chat)))
        .collect();
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Responses vs chat completions (ratio responses / chat)\n");
    let _ = writeln!(out, "| case | conc. | req/s | p50 | p99 | CPU/req | CPU µs/req responses, chat | budget CPU ≤ {BUDGET_RESPONSES_CPU_VS_CHAT}× |");
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|:-:|");
    for (resp, chat) in pairs {
        let q = |r: &Record, p: f64| pct_ms(&r.load.total, p);
        let (ratio, figures, verdict) = match (resp.usage, chat.usage) {
            (Some(r), Some(c)) => {
                let ratio = r.cpu_us_per_req / c.cpu_us_per_req;
                let verdict = if ratio <= BUDGET_RESPONSES_CPU_VS_CHAT { "PASS" } else { "MISS" };
                (format!("{ratio:.2}×"), format!("{:.1}, {:.1}", r.cpu_us_per_req, c.cpu_us_per_req), verdict)
            }
            _ => ("n/a".to_owned(), "n/a".to_owned(), "n/a"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}× | {:.2}× | {:.2}× | {ratio} | {figures} | {verdict} |",
            case_name(resp.stream),
            resp.concurrency,
            resp.load.rps() / chat.load.rps(),
            q(resp, 50.0) / q(chat, 50.0),
            q(resp, 99.0) / q(chat, 99.0),
        );
    }
    out.push('\n');
}

/// This build against `BENCH_BASELINE_BIN` (same config, same run, interleaved rounds).
fn render_baseline(out: &mut String, records: &[Record]) {
    let pairs: Vec<(&Record, &Record)> = records
        .iter()
        .filter(|r| r.path == GATEWAY)
        .filter_map(|gw| find(records, BASELINE, gw.stream, gw.concurrency).map(|b| (gw, b)))
        .collect();
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(out, "### This build vs the baseline build (ratio this / baseline; < 1 is faster for latency)\n");
    let _ = writeln!(out, "| case | conc. | req/s | p50 | p99 | CPU/req | baseline req/s, p50 ms, p99 ms |");
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
    for (gw, base) in pairs {
        let q = |r: &Record, p: f64| pct_ms(&r.load.total, p);
        let cpu = match (gw.usage, base.usage) {
            (Some(g), Some(b)) => format!("{:.2}×", g.cpu_us_per_req / b.cpu_us_per_req),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}× | {:.2}× | {:.2}× | {} | {:.0}, {:.3}, {:.3} |",
            case_name(gw.stream),
            gw.concurrency,
            gw.load.rps() / base.load.rps(),
            q(gw, 50.0) / q(base, 50.0),
            q(gw, 99.0) / q(base, 99.0),
            cpu,
            base.load.rps(),
            q(base, 50.0),
            q(base, 99.0),
        );
    }
    out.push('\n');
}

fn render_comparison(out: &mut String, records: &[Record]) {
    let gateway_rows: Vec<&Record> = records.iter().filter(|r| r.path == GATEWAY).collect();
    if gateway_rows.is_empty() {
        let _ = writeln!(out, "### Gateway overhead\n\nGateway not measured (see warnings above).\n");
        return;
    }
    let _ = writeln!(out, "### Gateway overhead (added latency = gateway − direct; for streams on total time)\n");
    let _ = writeln!(
        out,
        "| case | conc. | added p50 ms | added p99 ms | req/s vs nginx | req/s vs direct | CPU/req vs nginx |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
    for gw in gateway_rows {
        let direct = find(records, DIRECT, gw.stream, gw.concurrency);
        let nginx = find(records, NGINX, gw.stream, gw.concurrency);
        let added = |q: f64| {
            direct.map_or("n/a".to_owned(), |d| format!("{:+.3}", pct_ms(&gw.load.total, q) - pct_ms(&d.load.total, q)))
        };
        let rps_ratio = |other: Option<&Record>| {
            other.map_or("n/a".to_owned(), |o| format!("{:.2}×", gw.load.rps() / o.load.rps()))
        };
        let cpu_ratio = match (gw.usage, nginx.and_then(|n| n.usage)) {
            (Some(g), Some(n)) => format!("{:.2}×", g.cpu_us_per_req / n.cpu_us_per_req),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            case_name(gw.stream),
            gw.concurrency,
            added(50.0),
            added(99.0),
            rps_ratio(nginx),
            rps_ratio(direct),
            cpu_ratio,
        );
    }
    out.push('\n');
}

fn render_budget(out: &mut String, records: &[Record]) {
    // Judge at concurrency 64, or at the highest one measured if 64 was not.
    let Some(c) =
        records.iter().filter(|r| !r.stream).map(|r| r.concurrency).max_by_key(|&c| (c == BUDGET_CONCURRENCY, c))
    else {
        return;
    };
    let _ = writeln!(out, "### Budget (non-streaming, concurrency {c})\n");
    let Some(gw) = find(records, GATEWAY, false, c) else {
        let _ = writeln!(out, "- n/a: gateway not measured\n");
        return;
    };
    let direct = find(records, DIRECT, false, c);
    let nginx = find(records, NGINX, false, c);
    let mut line = |ok: Option<bool>, what: &str, detail: String| budget_line(out, ok, what, &detail);

    match nginx {
        Some(n) => {
            let ratio = gw.load.rps() / n.load.rps();
            line(
                Some(ratio >= BUDGET_RPS_VS_NGINX),
                &format!("throughput ≥ {BUDGET_RPS_VS_NGINX}× nginx"),
                format!("{:.0} vs {:.0} req/s = {ratio:.2}×", gw.load.rps(), n.load.rps()),
            );
        }
        None => line(None, "throughput vs nginx", "nginx not measured".into()),
    }
    match direct {
        Some(d) => {
            let (g99, d99) = (pct_ms(&gw.load.total, 99.0), pct_ms(&d.load.total, 99.0));
            line(
                Some(g99 - d99 <= BUDGET_ADDED_P99_MS),
                &format!("added p99 over direct ≤ {BUDGET_ADDED_P99_MS} ms"),
                format!("{g99:.3} − {d99:.3} = {:.3} ms", g99 - d99),
            );
        }
        None => line(None, "added p99 over direct", "direct not measured".into()),
    }
    match (gw.usage, nginx.and_then(|n| n.usage)) {
        (Some(g), Some(n)) => {
            let ratio = g.cpu_us_per_req / n.cpu_us_per_req;
            line(
                Some(ratio <= BUDGET_CPU_VS_NGINX),
                &format!("CPU/request ≤ {BUDGET_CPU_VS_NGINX}× nginx"),
                format!("{:.1} vs {:.1} µs = {ratio:.2}×", g.cpu_us_per_req, n.cpu_us_per_req),
            );
        }
        _ => line(None, "CPU/request vs nginx", "nginx not measured".into()),
    }
    match gw.usage {
        Some(g) => line(
            Some(g.peak_rss_mb <= BUDGET_RSS_MB),
            &format!("peak RSS ≤ {BUDGET_RSS_MB} MB"),
            format!("{:.1} MB", g.peak_rss_mb),
        ),
        None => line(None, "peak RSS", "not sampled".into()),
    }
    if gw.load.errors > 0 {
        let _ = writeln!(
            out,
            "- **⚠ the gateway had {} errors in this run; the numbers above are not valid**",
            gw.load.errors
        );
    }
    out.push('\n');
}

/// The store-backed paths against `gateway` (static key), one table per concurrency, and their
/// two budgets: the added p50 of a cached lookup and Redis commands per request.
fn render_store_keys(out: &mut String, records: &[Record], censuses: &[CensusRecord]) {
    let store_rows = || records.iter().filter(|r| !r.stream && (r.path == GW_EMBEDDED || r.path == GW_REDIS));
    if store_rows().next().is_none() {
        let _ = writeln!(out, "### Store-backed keys (non-stream)\n\nNot measured (see warnings above).\n");
        return;
    }
    let _ =
        writeln!(out, "### Store-backed keys (non-stream; added p50 = path − `gateway` with a static key, same run)\n");
    let mut concurrencies: Vec<usize> = store_rows().map(|r| r.concurrency).collect();
    concurrencies.dedup();
    for &c in &concurrencies {
        render_store_table(out, records, c);
    }
    render_store_budget(out, records, censuses, &concurrencies);
}

fn render_store_table(out: &mut String, records: &[Record], concurrency: usize) {
    let gateway = find(records, GATEWAY, false, concurrency);
    let _ = writeln!(out, "#### Concurrency {concurrency}\n");
    let _ = writeln!(
        out,
        "| path | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | added p50 vs gateway µs | Redis script calls/req | Redis cmds executed/req |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for path in [GATEWAY, GW_EMBEDDED, GW_REDIS] {
        let Some(r) = find(records, path, false, concurrency) else {
            continue;
        };
        let added = match gateway {
            Some(g) if path != GATEWAY => format!("{:+.0}", added_p50_us(r, g)),
            _ => "–".to_owned(),
        };
        let (scripts, executed) = (redis_cell(r, |t| t.scripts), redis_cell(r, |t| t.executed));
        let _ = writeln!(
            out,
            "| {path} | {:.0} | {} | {} | {} | {} | {added} | {scripts} | {executed} |",
            r.load.rps(),
            ms(&r.load.total, 50.0),
            ms(&r.load.total, 99.0),
            cpu_cell(r),
            rss_cell(r),
        );
    }
    out.push('\n');
}

fn render_store_budget(out: &mut String, records: &[Record], censuses: &[CensusRecord], concurrencies: &[usize]) {
    let mut line = |ok: Option<bool>, what: &str, detail: String| budget_line(out, ok, what, &detail);

    // Concurrency 1, or the lowest measured if 1 was not.
    let c = concurrencies.iter().copied().min_by_key(|&c| (c != STORE_BUDGET_CONCURRENCY, c)).unwrap_or(1);
    let what = format!(
        "cached key lookup adds ≤ {BUDGET_LOOKUP_ADDED_P50_US} µs at p50 (embedded / redis), judged as \
         p50(path) − p50(gateway) at concurrency {c}, the least noisy point"
    );
    match find(records, GATEWAY, false, c) {
        None => line(None, &what, "gateway (static key) not measured".to_owned()),
        Some(gateway) => {
            let (ok, detail) = lookup_verdict(records, gateway, c);
            line(ok, &what, detail);
        }
    }

    let what = "Redis round trips on the request path per request for a cached key (unmetered plan): 0";
    match (censuses.iter().find(|c| c.path == GW_REDIS), censuses.iter().find(|c| c.path == GW_METERED_REDIS)) {
        (None, _) => line(None, what, "gw-redis census not taken".to_owned()),
        (Some(plain), metered) => {
            let on_path = plain.per_request(request_path(plain, metered));
            line(
                Some(on_path < BUDGET_REDIS_COMMANDS_PER_REQ),
                what,
                format!(
                    "{on_path:.4} (census: {}; ≈ 0 means < {BUDGET_REDIS_COMMANDS_PER_REQ})",
                    census_summary(plain, metered)
                ),
            );
            background_line(out, plain);
        }
    }

    let with_errors: Vec<String> = records
        .iter()
        .filter(|r| !r.stream && [GATEWAY, GW_EMBEDDED, GW_REDIS].contains(&r.path) && r.load.errors > 0)
        .map(|r| format!("{} c={}", r.path, r.concurrency))
        .collect();
    if !with_errors.is_empty() {
        let _ = writeln!(out, "- **⚠ errors in {}; the numbers above are not valid**", with_errors.join(", "));
    }
    out.push('\n');
}

/// The lookup budget over every measured store path at concurrency `c`: PASS only if each one
/// is within it; n/a if none was measured.
fn lookup_verdict(records: &[Record], gateway: &Record, c: usize) -> (Option<bool>, String) {
    let mut ok = None;
    let mut parts = Vec::new();
    for (path, label) in [(GW_EMBEDDED, "embedded"), (GW_REDIS, "redis")] {
        match find(records, path, false, c) {
            Some(r) => {
                let added = added_p50_us(r, gateway);
                ok = Some(ok.unwrap_or(true) && added <= BUDGET_LOOKUP_ADDED_P50_US);
                parts.push(format!(
                    "{label} {:.3} − {:.3} ms = {added:+.0} µs",
                    pct_ms(&r.load.total, 50.0),
                    pct_ms(&gateway.load.total, 50.0)
                ));
            }
            None => parts.push(format!("{label} not measured")),
        }
    }
    (ok, parts.join("; "))
}

/// p50 of `r` minus p50 of the static-key `gateway`, in µs.
fn added_p50_us(r: &Record, gateway: &Record) -> f64 {
    (pct_ms(&r.load.total, 50.0) - pct_ms(&gateway.load.total, 50.0)) * 1000.0
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

/// Whether the census of the other path saw script `sha` at all.
fn runs_script(census: Option<&CensusRecord>, sha: &str) -> bool {
    census.is_some_and(|c| c.census.scripts().any(|(s, n)| s == sha && n > 0))
}

/// Round trips a request waits for, from a census. A path's own scripts are either its
/// admission (awaited before the upstream call) or run off the request path: the settle (after
/// the response) and the store's last-used and reaper scripts, which the plain and metered paths
/// both run; so the scripts only the metered path runs are its admission. Every round trip that
/// runs no script (key or workspace reads on a cache miss, but also the reaper's listing) is
/// counted as on the request path too: an upper bound. The census has already set apart the
/// background work (event log, delivery worker, credit watcher; [`background_line`]), by the
/// keys it touches: none of it is among these.
fn request_path(census: &CensusRecord, other_path: Option<&CensusRecord>) -> u64 {
    let own_scripts: u64 =
        census.census.scripts().filter(|(sha, _)| !runs_script(other_path, sha)).map(|(_, n)| n).sum();
    let admits = if census.path == GW_METERED_REDIS { own_scripts } else { 0 };
    admits + census.census.other()
}

/// `4000 requests at c=16: round trips 2.0003/req = scripts 0ce500c0 1.0000 (admit) + 3f1a2b4c
/// 1.0001 (settle) + other 0.0002 (get 0.0001, ...); 25.0 commands/req inside scripts`.
fn census_summary(census: &CensusRecord, other_path: Option<&CensusRecord>) -> String {
    let c = &census.census;
    let scripts = c
        .scripts()
        .map(|(sha, n)| {
            let role = if other_path.is_none() {
                ""
            } else if census.per_request(n) < 0.01 {
                " (rare)"
            } else if runs_script(other_path, sha) {
                " (settle)"
            } else if census.path == GW_METERED_REDIS {
                " (admit)"
            } else {
                " (?)"
            };
            format!("`{sha}` {:.4}{role}", census.per_request(n))
        })
        .collect::<Vec<_>>()
        .join(" + ");
    let others = c
        .round_trips
        .iter()
        .filter(|(name, _)| !name.starts_with("evalsha"))
        .map(|(name, &n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} requests at c={}: round trips {:.4}/req = scripts {} + other {:.4}{}; {:.1} commands/req run inside scripts",
        census.requests,
        census.concurrency,
        census.per_request(c.total()),
        if scripts.is_empty() { "none".to_owned() } else { scripts },
        census.per_request(c.other()),
        if others.is_empty() { String::new() } else { format!(" ({others})") },
        census.per_request(c.in_scripts),
    )
}

/// The census's background traffic, which the round trips above leave out: `- Background Redis
/// commands of gw-redis (census; off the request path, not counted above): 4.0352/req = event log
/// 4.0325 (evalsha `4cbac236` 0.0162, xadd 4.0000, xtrim 0.0162) + delivery worker 0.0027
/// (evalsha `2a0af46d` 0.0009, ...); 0.0 commands/req run inside background scripts`. Per
/// request, though the delivery worker and the credit watcher run on timers: their share is their
/// polls over the census window.
fn background_line(out: &mut String, census: &CensusRecord) {
    let c = &census.census;
    let sources = c
        .background
        .iter()
        .map(|(&source, commands)| {
            let commands = commands
                .iter()
                .map(|(name, &n)| match name.strip_prefix("evalsha ") {
                    Some(sha) => format!("evalsha `{sha}` {:.4}", census.per_request(n)),
                    None => format!("{name} {:.4}", census.per_request(n)),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("{} {:.4} ({commands})", source.label(), census.per_request(c.background_of(source)))
        })
        .collect::<Vec<_>>()
        .join(" + ");
    let _ = writeln!(
        out,
        "- Background Redis commands of {} (census; off the request path, not counted above): {:.4}/req = {}; \
         {:.1} commands/req run inside background scripts{}",
        census.path,
        census.per_request(c.background_total()),
        if sources.is_empty() { "none".to_owned() } else { sources },
        census.per_request(c.background_in_scripts),
        match c.elsewhere {
            0 => String::new(),
            n => format!("; {n} commands of other gateways on the same server left out"),
        },
    );
}

/// Limits and credits: each metered path against the plain store-key path of its backend (and
/// the static-key `gateway`, which is never metered), one table per concurrency, and the budgets.
fn render_metering(out: &mut String, records: &[Record], censuses: &[CensusRecord]) {
    let rows = || records.iter().filter(|r| !r.stream && METERED_PAIRS.iter().any(|&(metered, _)| metered == r.path));
    if rows().next().is_none() {
        let _ = writeln!(out, "### Limits and credits (non-stream)\n\nNot measured (see warnings above).\n");
        return;
    }
    let _ = writeln!(
        out,
        "### Limits and credits (non-stream; ratios against the plain store key of the same backend, same run)\n"
    );
    let _ = writeln!(
        out,
        "Plain = store key, workspace on the default plan (no limits, no allowance, free agent); \
         metered = limits and credits on every request. `gateway` (static key, never metered) for reference. \
         Redis script calls = `EVALSHA` round trips (admissions and settles); executed = every command Redis \
         ran, including those inside scripts; Redis CPU = the `redis-server` process. Which round trips are on \
         the request path: see the census below the tables.\n"
    );
    let mut concurrencies: Vec<usize> = rows().map(|r| r.concurrency).collect();
    concurrencies.dedup();
    for &c in &concurrencies {
        render_metering_table(out, records, c);
    }
    render_metering_budget(out, records, censuses, &concurrencies);
}

fn render_metering_table(out: &mut String, records: &[Record], concurrency: usize) {
    let gateway = find(records, GATEWAY, false, concurrency);
    let _ = writeln!(out, "#### Concurrency {concurrency}\n");
    let _ = writeln!(
        out,
        "| path | metering | req/s | p50 ms | p99 ms | CPU µs/req | req/s vs plain | p99 vs plain | p99 vs gateway | \
         Redis script calls/req | Redis cmds executed/req | Redis CPU µs/req |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let rows = [
        (GATEWAY, "none (static key)", None),
        (GW_EMBEDDED, "plain", None),
        (GW_METERED_EMBEDDED, "limits + credits", Some(GW_EMBEDDED)),
        (GW_REDIS, "plain", None),
        (GW_METERED_REDIS, "limits + credits", Some(GW_REDIS)),
    ];
    for (path, metering, plain) in rows {
        let Some(r) = find(records, path, false, concurrency) else {
            continue;
        };
        let plain = plain.and_then(|p| find(records, p, false, concurrency));
        let ratio = |other: Option<&Record>, f: fn(&Record) -> f64| {
            other.map_or("–".to_owned(), |o| format!("{:.3}×", f(r) / f(o)))
        };
        let p99 = |r: &Record| pct_ms(&r.load.total, 99.0);
        let rps = |r: &Record| r.load.rps();
        let scripts = redis_cell(r, |t| t.scripts);
        let redis = r.usage.and_then(|u| u.redis);
        let executed = redis.map_or("–".to_owned(), |redis| format!("{:.1}", per_request(redis.traffic.executed, r)));
        let redis_cpu = redis.map_or("–".to_owned(), |redis| format!("{:.1}", redis.cpu_us_per_req));
        let vs_gateway = if path == GATEWAY { "–".to_owned() } else { ratio(gateway, p99) };
        let _ = writeln!(
            out,
            "| {path} | {metering} | {:.0} | {} | {} | {} | {} | {} | {vs_gateway} | {scripts} | {executed} | \
             {redis_cpu} |",
            r.load.rps(),
            ms(&r.load.total, 50.0),
            ms(&r.load.total, 99.0),
            cpu_cell(r),
            ratio(plain, rps),
            ratio(plain, p99),
        );
    }
    out.push('\n');
}

fn render_metering_budget(out: &mut String, records: &[Record], censuses: &[CensusRecord], concurrencies: &[usize]) {
    let pair = |metered: &str, plain: &str, c: usize| {
        Some((find(records, metered, false, c)?, find(records, plain, false, c)?))
    };

    // Embedded: p99 within 5% of the plain store key, at every concurrency.
    let what = format!("embedded metered p99 ≤ {BUDGET_METERED_P99_RATIO} × plain (every concurrency)");
    let judged: Vec<(usize, f64, f64)> = concurrencies
        .iter()
        .filter_map(|&c| {
            let (m, p) = pair(GW_METERED_EMBEDDED, GW_EMBEDDED, c)?;
            Some((c, pct_ms(&m.load.total, 99.0), pct_ms(&p.load.total, 99.0)))
        })
        .collect();
    if judged.is_empty() {
        budget_line(out, None, &what, "gw-metered-embedded or gw-embedded not measured");
    } else {
        let ok = judged.iter().all(|&(_, m, p)| m <= BUDGET_METERED_P99_RATIO * p);
        let detail = judged
            .iter()
            .map(|&(c, m, p)| format!("c={c}: {m:.3} vs {p:.3} ms = {:.3}×", m / p))
            .collect::<Vec<_>>()
            .join("; ");
        budget_line(out, Some(ok), &what, &detail);
    }

    // Redis: exactly one round trip on the request path per request, from the census.
    let what = format!(
        "redis metered: Redis round trips per request on the request path = {BUDGET_METERED_REDIS_ROUND_TRIPS} \
         (the admission; the settle runs after the response)"
    );
    let census = |path: &str| censuses.iter().find(|c| c.path == path);
    match census(GW_METERED_REDIS) {
        None => budget_line(out, None, &what, "gw-metered-redis census not taken"),
        Some(metered) => {
            let plain = census(GW_REDIS);
            let on_path = metered.per_request(request_path(metered, plain));
            let ok = plain.is_some() && (on_path - BUDGET_METERED_REDIS_ROUND_TRIPS).abs() < ROUND_TRIP_TOLERANCE;
            let detail = format!(
                "{on_path:.4} (census: {}{}; = 1 means within ±{ROUND_TRIP_TOLERANCE})",
                census_summary(metered, plain),
                if plain.is_none() { "; no gw-redis census to tell the settle from the admission" } else { "" }
            );
            budget_line(out, plain.map(|_| ok), &what, &detail);
            background_line(out, metered);
        }
    }
    let scripts: Vec<String> = concurrencies
        .iter()
        .filter_map(|&c| {
            let (m, p) = pair(GW_METERED_REDIS, GW_REDIS, c)?;
            let calls = |r: &Record| Some(per_request(r.usage?.redis?.traffic.scripts, r));
            Some(format!("c={c}: {:.4} vs {:.4}", calls(m)?, calls(p)?))
        })
        .collect();
    if !scripts.is_empty() {
        let _ = writeln!(
            out,
            "- Redis script calls per request in the measured windows, metered vs plain (admission + settle vs \
             settle): {}",
            scripts.join("; ")
        );
    }

    // What that round trip costs, for reading the Redis rows (no verdict: the count is the budget).
    let costs: Vec<String> = concurrencies
        .iter()
        .filter_map(|&c| {
            let (m, p) = pair(GW_METERED_REDIS, GW_REDIS, c)?;
            let added = |q: f64| (pct_ms(&m.load.total, q) - pct_ms(&p.load.total, q)) * 1000.0;
            let traffic = m.usage?.redis?.traffic;
            let per_script = traffic.script_usec as f64 / traffic.scripts.max(1) as f64;
            Some(format!(
                "c={c}: added p50 {:+.0} µs, p99 {:+.0} µs; Redis time per script call {per_script:.1} µs",
                added(50.0),
                added(99.0)
            ))
        })
        .collect();
    if !costs.is_empty() {
        let _ = writeln!(out, "- redis metered − plain: {}", costs.join("; "));
    }

    warn_errors(out, records, &METERED_PAIRS);
}

/// Webhooks: each webhooks path against the same store key without a webhook, one table per
/// concurrency, then the budget (p99) and the delivery check.
fn render_webhooks(out: &mut String, records: &[Record], checks: &[WebhookCheck]) {
    let rows = || records.iter().filter(|r| !r.stream && WEBHOOK_PAIRS.iter().any(|&(hooked, _)| hooked == r.path));
    if rows().next().is_none() {
        let _ = writeln!(out, "### Webhooks (non-stream)\n\nNot measured (see warnings above).\n");
        return;
    }
    let _ = writeln!(out, "### Webhooks (non-stream; ratios against the same store key without a webhook, same run)\n");
    let _ = writeln!(
        out,
        "Without = the plain store-key path (events are still emitted into the log, nothing is delivered); \
         with = the same config plus a webhook for `{}` on a receiver on loopback, one delivery per request. \
         Delivered/s = distinct event ids the receiver got during the measured window; backlog = events owed \
         but not yet received when the load stopped (largest of the rounds), drain = how long they took to \
         arrive (longest); the next path's turn starts only after that.\n",
        webhooks::EVENT_TYPE
    );
    let mut concurrencies: Vec<usize> = rows().map(|r| r.concurrency).collect();
    concurrencies.dedup();
    for &c in &concurrencies {
        render_webhooks_table(out, records, c);
    }
    render_webhooks_budget(out, records, checks, &concurrencies);
}

fn render_webhooks_table(out: &mut String, records: &[Record], concurrency: usize) {
    let _ = writeln!(out, "#### Concurrency {concurrency}\n");
    let _ = writeln!(
        out,
        "| path | webhook | req/s | p50 ms | p99 ms | CPU µs/req | req/s vs without | p99 vs without | \
         delivered/s | backlog | drain s | Redis cmds executed/req |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let rows = [
        (GW_EMBEDDED, "none", None),
        (GW_WEBHOOKS_EMBEDDED, webhooks::EVENT_TYPE, Some(GW_EMBEDDED)),
        (GW_REDIS, "none", None),
        (GW_WEBHOOKS_REDIS, webhooks::EVENT_TYPE, Some(GW_REDIS)),
    ];
    for (path, hook, without) in rows {
        let Some(r) = find(records, path, false, concurrency) else {
            continue;
        };
        let without = without.and_then(|p| find(records, p, false, concurrency));
        let ratio = |f: fn(&Record) -> f64| without.map_or("–".to_owned(), |o| format!("{:.3}×", f(r) / f(o)));
        let (delivered, backlog, drain) = match r.delivery {
            Some(d) => (
                format!("{:.0}", d.in_window as f64 / r.load.window.as_secs_f64()),
                d.backlog.to_string(),
                format!("{:.1}{}", d.drain.as_secs_f64(), if d.drained { "" } else { " ⚠ not drained" }),
            ),
            None => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
        };
        let executed = r
            .usage
            .and_then(|u| u.redis)
            .map_or("–".to_owned(), |redis| format!("{:.1}", per_request(redis.traffic.executed, r)));
        let _ = writeln!(
            out,
            "| {path} | {hook} | {:.0} | {} | {} | {} | {} | {} | {delivered} | {backlog} | {drain} | {executed} |",
            r.load.rps(),
            ms(&r.load.total, 50.0),
            ms(&r.load.total, 99.0),
            cpu_cell(r),
            ratio(|r| r.load.rps()),
            ratio(|r| pct_ms(&r.load.total, 99.0)),
        );
    }
    out.push('\n');
}

fn render_webhooks_budget(out: &mut String, records: &[Record], checks: &[WebhookCheck], concurrencies: &[usize]) {
    for (hooked, without) in WEBHOOK_PAIRS {
        let pairs: Vec<(usize, &Record, &Record)> = concurrencies
            .iter()
            .filter_map(|&c| Some((c, find(records, hooked, false, c)?, find(records, without, false, c)?)))
            .collect();
        let what = format!(
            "{hooked}: p99 with webhooks vs without (budget ≤ {BUDGET_WEBHOOKS_P99_RATIO}×, every concurrency)"
        );
        if pairs.is_empty() {
            if concurrencies.iter().any(|&c| find(records, hooked, false, c).is_some()) {
                budget_line(out, None, &what, &format!("{without} not measured"));
            }
            continue;
        }
        let p99 = |r: &Record| pct_ms(&r.load.total, 99.0);
        let ok = pairs.iter().all(|&(_, h, w)| p99(h) <= BUDGET_WEBHOOKS_P99_RATIO * p99(w));
        let detail = pairs
            .iter()
            .map(|&(c, h, w)| format!("c={c}: {:.3} vs {:.3} ms = {:.3}×", p99(h), p99(w), p99(h) / p99(w)))
            .collect::<Vec<_>>()
            .join("; ");
        budget_line(out, Some(ok), &what, &detail);
        let throughput = pairs
            .iter()
            .map(|&(c, h, w)| {
                format!("c={c}: {:.0} vs {:.0} = {:.3}×", h.load.rps(), w.load.rps(), h.load.rps() / w.load.rps())
            })
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(out, "- {hooked}: req/s with webhooks vs without (no budget): {throughput}");
    }
    for check in checks {
        let got = check.received;
        // Every event owed arrived; more than owed only as far as failed requests may have
        // produced events too.
        let ok = got.distinct >= check.expected && got.distinct - check.expected <= check.errors;
        let extra = match got.distinct.checked_sub(check.expected) {
            Some(0) | None => String::new(),
            Some(n) => format!("; {n} more than answered ({} client errors)", check.errors),
        };
        budget_line(
            out,
            Some(ok),
            &format!("{}: events delivered by the end", check.path),
            &format!(
                "{} of {} (distinct `webhook-id`s of `{}` received vs requests answered 200, warm-up included; \
                 final wait {:.1} s{extra}; {} deliveries, {} duplicates, {} of other types, {} without signature \
                 headers)",
                got.distinct,
                check.expected,
                webhooks::EVENT_TYPE,
                check.waited.as_secs_f64(),
                got.deliveries,
                got.duplicates(),
                got.other,
                got.unsigned,
            ),
        );
    }
    warn_errors(out, records, &WEBHOOK_PAIRS);
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
