//! The report's opening sections: the header, the raw tables of every path per case, their errors,
//! the gateway against direct and nginx (overhead and budget), and the Responses and baseline
//! comparisons. Separate from the store-key, metering and webhook sections, which judge the
//! gateway's paths against each other rather than against the reference servers.

use std::fmt::Write as _;

use super::{
    budget_line, case_name, cpu_cell, error_cell, find, ms, pct_ms, rss_cell, Header, Record, BASELINE, DIRECT,
    GATEWAY, GW_RESPONSES, NGINX,
};

/// What the gateway must achieve at the budget concurrency.
const BUDGET_CONCURRENCY: usize = 64;
const BUDGET_RPS_VS_NGINX: f64 = 0.8;
const BUDGET_ADDED_P99_MS: f64 = 1.0;
const BUDGET_CPU_VS_NGINX: f64 = 2.0;
const BUDGET_RSS_MB: f64 = 30.0;

pub(super) fn render_header(out: &mut String, header: &Header) {
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

pub(super) fn render_plain_table(out: &mut String, records: &[Record]) {
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

pub(super) fn render_stream_table(out: &mut String, records: &[Record]) {
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
pub(super) fn render_errors(out: &mut String, records: &[Record]) {
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
pub(super) fn render_responses(out: &mut String, records: &[Record]) {
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
pub(super) fn render_baseline(out: &mut String, records: &[Record]) {
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

pub(super) fn render_comparison(out: &mut String, records: &[Record]) {
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

pub(super) fn render_budget(out: &mut String, records: &[Record]) {
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
