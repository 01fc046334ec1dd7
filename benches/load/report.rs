//! Turning raw run results into the Markdown report (pasteable into the README): one table
//! per case, the gateway's overhead relative to direct and to nginx, and the budget check.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::loadgen::LoadResult;
use crate::sys::Machine;

pub const DIRECT: &str = "direct";
pub const GATEWAY: &str = "gateway";
pub const NGINX: &str = "nginx";

/// What the gateway must achieve at the budget concurrency.
const BUDGET_CONCURRENCY: usize = 64;
const BUDGET_RPS_VS_NGINX: f64 = 0.8;
const BUDGET_ADDED_P99_MS: f64 = 1.0;
const BUDGET_CPU_VS_NGINX: f64 = 2.0;
const BUDGET_RSS_MB: f64 = 30.0;

/// Server-side cost of one run, for the paths whose server process we started.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_us_per_req: f64,
    pub peak_rss_mb: f64,
    /// Bytes the server wrote to its log per request (gateway only).
    pub log_bytes_per_req: Option<f64>,
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
    let mut line = |ok: Option<bool>, what: &str, detail: String| {
        let verdict = match ok {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a ",
        };
        let _ = writeln!(out, "- **{verdict}** {what}: {detail}");
    };

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
