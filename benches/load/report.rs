//! Turning raw run results into the Markdown report (pasteable into the README): one table
//! per case, the gateway's overhead relative to direct and to nginx, the budget check, and what
//! a store-backed key costs over a static one.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::loadgen::LoadResult;
use crate::sys::Machine;

pub const DIRECT: &str = "direct";
pub const GATEWAY: &str = "gateway";
pub const NGINX: &str = "nginx";
/// The gateway authenticating with a key from its embedded store.
pub const GW_EMBEDDED: &str = "gw-embedded";
/// The gateway authenticating with a key from Redis.
pub const GW_REDIS: &str = "gw-redis";

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
/// "No Redis round trip per request" means ≈ 0 commands per request. A round trip per request
/// would be ≥ 1; this leaves room for a rare cache expiry or a background command.
const BUDGET_REDIS_COMMANDS_PER_REQ: f64 = 0.01;

/// Server-side cost of one run, for the paths whose server process we started.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_us_per_req: f64,
    pub peak_rss_mb: f64,
    /// Bytes the server wrote to its log per request (gateway only).
    pub log_bytes_per_req: Option<f64>,
    /// Commands its Redis server processed during the measured window (`gw-redis` only).
    pub redis_commands: Option<u64>,
}

/// One (path, case, concurrency) measurement.
pub struct Record {
    pub path: &'static str,
    pub stream: bool,
    pub concurrency: usize,
    pub load: LoadResult,
    pub usage: Option<Usage>,
}

/// Everything printed above the tables.
pub struct Header {
    pub machine: Machine,
    pub command: String,
    pub setup: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn render(header: &Header, records: &[Record]) -> String {
    let mut out = String::new();
    render_header(&mut out, header);
    render_plain_table(&mut out, records);
    render_stream_table(&mut out, records);
    render_errors(&mut out, records);
    render_comparison(&mut out, records);
    render_budget(&mut out, records);
    render_store_keys(&mut out, records);
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
fn render_store_keys(out: &mut String, records: &[Record]) {
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
    render_store_budget(out, records, &concurrencies);
}

fn render_store_table(out: &mut String, records: &[Record], concurrency: usize) {
    let gateway = find(records, GATEWAY, false, concurrency);
    let _ = writeln!(out, "#### Concurrency {concurrency}\n");
    let _ = writeln!(
        out,
        "| path | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | added p50 vs gateway µs | Redis cmds/req |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|");
    for path in [GATEWAY, GW_EMBEDDED, GW_REDIS] {
        let Some(r) = find(records, path, false, concurrency) else {
            continue;
        };
        let added = match gateway {
            Some(g) if path != GATEWAY => format!("{:+.0}", added_p50_us(r, g)),
            _ => "–".to_owned(),
        };
        let commands = redis_per_request(r).map_or("–".to_owned(), |(per_req, _)| format!("{per_req:.4}"));
        let _ = writeln!(
            out,
            "| {path} | {:.0} | {} | {} | {} | {} | {added} | {commands} |",
            r.load.rps(),
            ms(&r.load.total, 50.0),
            ms(&r.load.total, 99.0),
            cpu_cell(r),
            rss_cell(r),
        );
    }
    out.push('\n');
}

fn render_store_budget(out: &mut String, records: &[Record], concurrencies: &[usize]) {
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

    let what = "Redis round trips per request for a cached key: 0";
    let redis: Vec<(usize, f64, u64, u64)> = concurrencies
        .iter()
        .filter_map(|&c| {
            let r = find(records, GW_REDIS, false, c)?;
            let (per_req, commands) = redis_per_request(r)?;
            Some((c, per_req, commands, r.load.completed))
        })
        .collect();
    if redis.is_empty() {
        line(None, what, "gw-redis not measured".to_owned());
    } else {
        let ok = redis.iter().all(|&(_, per_req, ..)| per_req < BUDGET_REDIS_COMMANDS_PER_REQ);
        let detail = redis
            .iter()
            .map(|(c, per_req, commands, requests)| format!("c={c}: {per_req:.4} ({commands} in {requests} requests)"))
            .collect::<Vec<_>>()
            .join("; ");
        line(Some(ok), what, format!("commands/request = {detail} (≈ 0 means < {BUDGET_REDIS_COMMANDS_PER_REQ})"));
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

/// Redis commands per completed request in the measured window, and the command count.
fn redis_per_request(r: &Record) -> Option<(f64, u64)> {
    let commands = r.usage?.redis_commands?;
    (r.load.completed > 0).then(|| (commands as f64 / r.load.completed as f64, commands))
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
