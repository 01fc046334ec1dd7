//! The limits and credits section: each metered path against the plain store-key path of its
//! backend, one table per concurrency, and the budgets (p99 on the embedded ledger, one Redis
//! round trip on the request path). Separate: it is one question, what metering costs.

use std::fmt::Write as _;

use super::census::{background_line, census_summary, request_path};
use super::{
    budget_line, cpu_cell, find, ms, pct_ms, per_request, redis_cell, warn_errors, CensusRecord, Record, GATEWAY,
    GW_EMBEDDED, GW_METERED_EMBEDDED, GW_METERED_REDIS, GW_REDIS,
};

/// Each metered path and the plain store-key path it is judged against.
const METERED_PAIRS: [(&str, &str); 2] = [(GW_METERED_EMBEDDED, GW_EMBEDDED), (GW_METERED_REDIS, GW_REDIS)];

/// Limits and credits: the embedded ledger may add this much to p99 over the plain store key...
const BUDGET_METERED_P99_RATIO: f64 = 1.05;
/// ...and the Redis ledger exactly one round trip on the request path (the admission), give or
/// take a rare key-cache or terms-cache refresh.
/// Admissions that went to Redis; a busy key's leases admit the rest in memory.
const BUDGET_METERED_REDIS_ROUND_TRIPS: f64 = 0.05;

/// Limits and credits: each metered path against the plain store-key path of its backend (and
/// the static-key `gateway`, which is never metered), one table per concurrency, and the budgets.
pub(super) fn render_metering(out: &mut String, records: &[Record], censuses: &[CensusRecord]) {
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

    // Redis: at most one round trip in 20 on the request path, from the census.
    let what = format!(
        "redis metered: Redis round trips per request on the request path ≤ {BUDGET_METERED_REDIS_ROUND_TRIPS} \
         (admissions taking a lease or near an edge; the settles run after the response, batched)"
    );
    let census = |path: &str| censuses.iter().find(|c| c.path == path);
    match census(GW_METERED_REDIS) {
        None => budget_line(out, None, &what, "gw-metered-redis census not taken"),
        Some(metered) => {
            let plain = census(GW_REDIS);
            let on_path = metered.per_request(request_path(metered, plain));
            let ok = plain.is_some() && on_path <= BUDGET_METERED_REDIS_ROUND_TRIPS;
            let detail = format!(
                "{on_path:.4} (census: {}{})",
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
