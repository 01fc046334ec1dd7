//! The store-backed keys section: `gw-embedded` and `gw-redis` against the static-key
//! `gateway`, one table per concurrency, and their two budgets (the added p50 of a cached
//! lookup, no Redis round trip per request). Separate: it is one question, what a key read
//! from the store costs.

use std::fmt::Write as _;

use super::census::{background_line, census_summary, request_path};
use super::{
    budget_line, cpu_cell, find, ms, pct_ms, redis_cell, rss_cell, CensusRecord, Record, GATEWAY, GW_EMBEDDED,
    GW_METERED_REDIS, GW_REDIS,
};

/// What a cached store-backed key may add over a static key, judged at concurrency 1: with
/// one client the machine is least loaded, so a few µs are not lost in scheduling noise.
const STORE_BUDGET_CONCURRENCY: usize = 1;
const BUDGET_LOOKUP_ADDED_P50_US: f64 = 5.0;
/// "No Redis round trip per request" means ≈ 0 round trips per request on the request path. A
/// round trip per request would be ≥ 1; this leaves room for a rare cache expiry.
const BUDGET_REDIS_COMMANDS_PER_REQ: f64 = 0.01;

/// The store-backed paths against `gateway` (static key), one table per concurrency, and their
/// two budgets: the added p50 of a cached lookup and Redis commands per request.
pub(super) fn render_store_keys(out: &mut String, records: &[Record], censuses: &[CensusRecord]) {
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
