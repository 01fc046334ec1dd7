//! The performance budgets of the full feature path (issue 15), each judged
//! PASS or MISS against the nginx row of the same run — or n/a, naming
//! what was not measured. Separate from the gateway's own budget section,
//! which judges only the static-key path at one concurrency.

use std::fmt::Write as _;

use super::{
    budget_line, find, pct_ms, CensusRecord, OpenStreamsFacts, Record, DIRECT, GATEWAY, GW_METERED_EMBEDDED,
    GW_METERED_REDIS, GW_OPEN_STREAMS, GW_REDIS, GW_WEBHOOKS_EMBEDDED, GW_WEBHOOKS_REDIS, NGINX,
};

/// Budget 5: streams held open at once, and the memory they may take.
const OPEN_STREAMS: usize = 10_000;
const OPEN_STREAMS_RSS_MB: f64 = 150.0;

/// A ratio of two rows' figures, or why it cannot be made.
fn ratio(a: Option<f64>, b: Option<f64>) -> Result<f64, &'static str> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Ok(a / b),
        _ => Err("not measured"),
    }
}

fn rps(r: Option<&Record>) -> Option<f64> {
    r.map(|r| r.load.rps())
}

fn cpu(r: Option<&Record>) -> Option<f64> {
    r.and_then(|r| r.usage).map(|u| u.cpu_us_per_req)
}

/// The gateway's CPU per request plus its Redis server's.
fn cpu_with_redis(r: Option<&Record>) -> Option<f64> {
    let u = r.and_then(|r| r.usage)?;
    Some(u.cpu_us_per_req + u.redis.map_or(0.0, |redis| redis.cpu_us_per_req))
}

/// One `a ≤ limit × b` (or `≥`) line.
fn judge(out: &mut String, what: &str, value: Result<f64, &'static str>, limit: f64, at_most: bool) {
    match value {
        Ok(v) => {
            let ok = if at_most { v <= limit } else { v >= limit };
            budget_line(out, Some(ok), what, &format!("{v:.2}×"));
        }
        Err(why) => budget_line(out, None, what, why),
    }
}

pub(super) fn render_feature_budgets(
    out: &mut String,
    records: &[Record],
    censuses: &[CensusRecord],
    open_streams: Option<OpenStreamsFacts>,
) {
    let _ = writeln!(out, "### Full-path budgets (against this run's nginx row)\n");
    let row = |path: &str, stream: bool, c: usize| find(records, path, stream, c);
    let nginx = |stream: bool, c: usize| row(NGINX, stream, c);

    // 1. Static key.
    for c in [16, 64] {
        let value = ratio(cpu(row(GATEWAY, false, c)), cpu(nginx(false, c)));
        judge(out, &format!("1. static key: CPU/request ≤ 1.2× nginx at c={c}"), value, 1.2, true);
    }
    let value = ratio(rps(row(GATEWAY, false, 64)), rps(nginx(false, 64)));
    judge(out, "1. static key: c=64 throughput ≥ 0.9× nginx", value, 0.9, false);
    match (row(GATEWAY, false, 1), row(DIRECT, false, 1)) {
        (Some(g), Some(d)) => {
            let added = pct_ms(&g.load.total, 99.0) - pct_ms(&d.load.total, 99.0);
            budget_line(
                out,
                Some(added <= 0.10),
                "1. static key: added p99 over direct at c=1 ≤ 0.10 ms",
                &format!("{added:.3} ms"),
            );
        }
        _ => budget_line(
            out,
            None,
            "1. static key: added p99 over direct at c=1",
            "not measured (BENCH_CONCURRENCY=1,...)",
        ),
    }

    // 2. Full path, embedded (store key, limits, credits, events).
    let value = ratio(cpu(row(GW_METERED_EMBEDDED, false, 64)), cpu(nginx(false, 64)));
    judge(out, "2. full path embedded: CPU/request ≤ 1.5× nginx (c=64)", value, 1.5, true);
    let value = ratio(rps(row(GW_METERED_EMBEDDED, false, 64)), rps(row(GATEWAY, false, 64)));
    judge(out, "2. full path embedded: throughput ≥ 0.8× the static-key path (c=64)", value, 0.8, false);

    // 3. Full path on Redis, Redis's own CPU counted.
    let value = ratio(cpu_with_redis(row(GW_METERED_REDIS, false, 64)), cpu(nginx(false, 64)));
    judge(out, "3. full path Redis: CPU/request with Redis's ≤ 2.0× nginx (c=64)", value, 2.0, true);
    let value = ratio(rps(row(GW_METERED_REDIS, false, 64)), rps(row(GW_REDIS, false, 64)));
    judge(out, "3. full path Redis: throughput ≥ 0.8× the plain store-key path (c=64)", value, 0.8, false);
    match censuses.iter().find(|c| c.path == GW_METERED_REDIS) {
        Some(c) => {
            // The admission and any uncached reads: the settle runs after the response.
            let plain = censuses.iter().find(|c| c.path == GW_REDIS);
            let on_path = super::census::request_path(c, plain);
            let round_trips: u64 = c.census.round_trips.values().sum();
            let background: u64 = c.census.background.values().flat_map(|m| m.values()).sum();
            let per = |n: u64| n as f64 / c.requests.max(1) as f64;
            let detail = |n: u64| format!("{:.3} per request", per(n));
            budget_line(
                out,
                Some(per(on_path) <= 0.05),
                "3. Redis round trips on the request path ≤ 0.05",
                &detail(on_path),
            );
            // Background commands count one each (pipelined ones share a round trip): an upper bound.
            let all = round_trips + background;
            budget_line(out, Some(per(all) <= 0.2), "3. Redis round trips in all ≤ 0.2", &detail(all));
        }
        None => budget_line(
            out,
            None,
            "3. Redis round trips per request",
            "no census of gw-metered-redis in this run (see the warnings above)",
        ),
    }

    // 4. Streams.
    let value = ratio(cpu(row(GATEWAY, true, 16)), cpu(nginx(true, 16)));
    judge(out, "4. streams: CPU/request ≤ 2× nginx at c=16", value, 2.0, true);
    let value = ratio(rps(row(GATEWAY, true, 16)), rps(nginx(true, 16)));
    judge(out, "4. streams: throughput ≥ 0.6× nginx at c=16", value, 0.6, false);
    match (row(GATEWAY, true, 1), nginx(true, 1)) {
        (Some(g), Some(n)) => {
            let added = pct_ms(&g.load.ttfb, 50.0) - pct_ms(&n.load.ttfb, 50.0);
            budget_line(
                out,
                Some(added <= 0.05),
                "4. streams: TTFB p50 added over nginx at c=1 ≤ 0.05 ms",
                &format!("{added:.3} ms"),
            );
        }
        _ => budget_line(out, None, "4. streams: TTFB added over nginx at c=1", "not measured"),
    }

    // 5. Open streams at scale.
    render_open_streams(out, records, open_streams);

    // 6. Webhook delivery keeps up.
    for path in [GW_WEBHOOKS_EMBEDDED, GW_WEBHOOKS_REDIS] {
        match row(path, false, 16).and_then(|r| r.delivery) {
            Some(d) => {
                let owed = d.in_window + d.backlog;
                let share = d.in_window as f64 / owed.max(1) as f64;
                let ok = share >= 0.9 && d.drained && d.drain.as_secs_f64() <= 2.0;
                let detail =
                    format!("{:.0}% during the run, the rest in {:.1} s", share * 100.0, d.drain.as_secs_f64());
                budget_line(
                    out,
                    Some(ok),
                    &format!("6. {path} c=16: ≥ 90% delivered during the run, rest ≤ 2 s"),
                    &detail,
                );
            }
            None => budget_line(out, None, &format!("6. {path} c=16 deliveries"), "not measured"),
        }
    }
    budget_line(
        out,
        None,
        "6. event emission ≤ 3 µs on the request's thread",
        "measured by `cargo bench --bench events`",
    );
    out.push('\n');
}

/// Budget 5: the open-streams row held [`OPEN_STREAMS`] streams without an error, and the
/// gateway's peak RSS stayed within [`OPEN_STREAMS_RSS_MB`].
fn render_open_streams(out: &mut String, records: &[Record], facts: Option<OpenStreamsFacts>) {
    let what = format!("5. {OPEN_STREAMS} open streams in ≤ {OPEN_STREAMS_RSS_MB} MB RSS");
    let row = records.iter().find(|r| r.path == GW_OPEN_STREAMS);
    let (Some(r), Some(facts), Some(usage)) = (row, facts, row.and_then(|r| r.usage)) else {
        return budget_line(out, None, &what, "not measured (BENCH_PATHS without gw-open-streams?)");
    };
    let added_kb = (usage.peak_rss_mb - facts.at_rest_mb) * 1024.0 / r.concurrency.max(1) as f64;
    let mut detail = format!(
        "{:.1} MB peak with {} streams open ({:.1} MB at rest, {added_kb:.1} KB per stream), {} streams completed \
         in the window, {} errors",
        usage.peak_rss_mb, r.concurrency, facts.at_rest_mb, r.load.completed, r.load.errors
    );
    if r.concurrency < facts.wanted {
        let _ = write!(
            detail,
            "; only {} of the {} streams asked for fit under the open-files limit",
            r.concurrency, facts.wanted
        );
    }
    let ok = r.concurrency >= OPEN_STREAMS && r.load.errors == 0 && r.load.completed > 0;
    budget_line(out, Some(ok && usage.peak_rss_mb <= OPEN_STREAMS_RSS_MB), &what, &detail);
}
