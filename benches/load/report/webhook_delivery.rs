//! The webhooks section: each webhooks path against the same store key without a webhook, one
//! table per concurrency, the p99 budget and the check that every event owed was delivered.
//! Separate: it is one question, what a webhook for every request costs.

use std::fmt::Write as _;

use super::{
    budget_line, cpu_cell, find, ms, pct_ms, per_request, warn_errors, webhooks, Record, WebhookCheck, GW_EMBEDDED,
    GW_REDIS, GW_WEBHOOKS_EMBEDDED, GW_WEBHOOKS_REDIS, WEBHOOK_PAIRS,
};

/// Webhooks (issue 5): a webhook for every request may add this much to p99 over the same
/// store key without one, and every event of the run must have been delivered by the end.
const BUDGET_WEBHOOKS_P99_RATIO: f64 = 1.05;

/// Webhooks: each webhooks path against the same store key without a webhook, one table per
/// concurrency, then the budget (p99) and the delivery check.
pub(super) fn render_webhooks(out: &mut String, records: &[Record], checks: &[WebhookCheck]) {
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
