//! The Redis ledger's settle queue: settles and cancels wait here, off the
//! request path, and a background task applies them, each retried until
//! Redis takes it.
//!
//! Settles go in batches: a script call costs Redis mostly a fixed amount
//! (80–97 µs per call measured on the bench machine, a bare `EVAL` 3–5 µs),
//! so what has gathered while earlier batches ran is handed over together,
//! one `settle.lua` call per workspace (a workspace's keys share one Cluster
//! slot). There is no timer: at low load a batch holds the one settle that
//! came; under load the queue fills while [`CALLS_IN_FLIGHT`] calls run,
//! and the next batch takes it all. Cancels are rare and go one by one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::Script;
use tokio::sync::{mpsc, Notify};

use super::lease::{Lease, Return, UsageLine};
use super::{limiter_names, names, Scripts, USAGE_TTL_S};
use crate::credits::{Admit, Settlement};
use crate::store::redis::RedisStore;

/// Settles one script call applies at most.
pub(super) const BATCH: usize = 256;
/// Script calls the queue keeps in flight; what arrives meanwhile waits for
/// the next batch.
const CALLS_IN_FLIGHT: usize = 4;

/// What the background task applies, each retried until Redis takes it.
pub(super) enum Job {
    Settle(Settlement),
    /// A lease's return (see `lease`).
    Return(Return),
    /// An admission the gateway gave up on (see the parent module's doc).
    Cancel(Admit),
}

/// Jobs queued or being applied; `flush` waits for zero.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) count: AtomicU64,
    pub(super) idle: Notify,
}

impl Pending {
    pub(super) fn done(&self, jobs: u64) {
        if self.count.fetch_sub(jobs, Ordering::AcqRel) == jobs {
            self.idle.notify_waiters();
        }
    }
}

/// One script call's worth of work.
enum Call {
    /// Settles of one workspace.
    Settles(Vec<Entry>),
    Cancel(Admit),
}

/// One settle of a batch.
struct Entry {
    settlement: Settlement,
    /// Requests its usage line counts: 1 for a call, 0 for a lease's return,
    /// the line's for a lease's usage line.
    usage_requests: u64,
    /// A lease's usage line: applies only if the entry before it (the
    /// lease's return, or its previous line) did.
    follows: bool,
    /// Requests a lease's return gives back to the rpm limiters.
    requests_unused: u64,
    /// The lease returned, told when the return is applied.
    returned: Option<Arc<Lease>>,
}

/// Adds settles that go together (a lease's return and its usage lines) to
/// their workspace's call, or starts one.
fn push(calls: &mut Vec<Call>, group: Vec<Entry>) {
    let ws = &group[0].settlement.workspace;
    let same = calls.iter_mut().find_map(|c| match c {
        Call::Settles(list) if list[0].settlement.workspace == *ws && list.len() + group.len() <= BATCH => Some(list),
        _ => None,
    });
    match same {
        Some(list) => list.extend(group),
        None => calls.push(Call::Settles(group)),
    }
}

/// A lease's return and, after it, its calls' usage lines.
fn return_entries(r: Return) -> Vec<Entry> {
    let line_of = |line: UsageLine| Settlement {
        agent: line.agent,
        day: line.day,
        cost: line.credits,
        input_tokens: line.input_tokens,
        output_tokens: line.output_tokens,
        tokens_charged: 0,
        tokens_used: 0,
        recorded: false,
        ..r.settlement.clone()
    };
    let lines: Vec<Entry> = r
        .lines
        .into_iter()
        .map(|line| Entry {
            usage_requests: line.requests,
            settlement: line_of(line),
            follows: true,
            requests_unused: 0,
            returned: None,
        })
        .collect();
    let returned = Entry {
        settlement: r.settlement,
        usage_requests: 0,
        follows: false,
        requests_unused: r.requests_unused,
        returned: Some(r.lease),
    };
    std::iter::once(returned).chain(lines).collect()
}

/// Splits what was taken off the queue into script calls: one per
/// workspace's settles (at most [`BATCH`] of them), one per cancel.
fn calls(jobs: Vec<Job>) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    for job in jobs {
        match job {
            Job::Cancel(a) => calls.push(Call::Cancel(a)),
            Job::Settle(settlement) => push(
                &mut calls,
                vec![Entry { settlement, usage_requests: 1, follows: false, requests_unused: 0, returned: None }],
            ),
            Job::Return(r) => push(&mut calls, return_entries(r)),
        }
    }
    calls
}

/// Applies queued settles and cancels until the queue's senders are gone.
pub(super) async fn worker(
    store: Arc<RedisStore>,
    scripts: Arc<Scripts>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    pending: Arc<Pending>,
) {
    let mut running = tokio::task::JoinSet::new();
    loop {
        if running.len() >= CALLS_IN_FLIGHT {
            running.join_next().await;
            continue;
        }
        let first = tokio::select! {
            next = jobs.recv() => match next {
                Some(job) => job,
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => continue,
        };
        let mut taken = vec![first];
        while taken.len() < BATCH {
            match jobs.try_recv() {
                Ok(job) => taken.push(job),
                Err(_) => break,
            }
        }
        for call in calls(taken) {
            let (store, scripts, pending) = (store.clone(), scripts.clone(), pending.clone());
            running.spawn(async move {
                let (script, keys, args, jobs, first_id) = match &call {
                    Call::Settles(list) => (
                        &scripts.settle,
                        settle_keys(&store, list),
                        settle_args(list),
                        // A job each, a lease's usage lines riding on its return.
                        list.iter().filter(|e| !e.follows).count(),
                        &list[0].settlement.ticket_id,
                    ),
                    Call::Cancel(a) => (&scripts.cancel, cancel_keys(&store, a), cancel_args(a), 1, &a.id),
                };
                until_applied(&store, script, &keys, &args, first_id).await;
                if let Call::Settles(list) = &call {
                    list.iter().filter_map(|e| e.returned.as_ref()).for_each(|lease| lease.applied());
                }
                pending.done(jobs as u64);
            });
        }
    }
    while running.join_next().await.is_some() {}
}

/// `settle.lua`'s keys: the workspace's four, then five per settle.
fn settle_keys(store: &RedisStore, list: &[Entry]) -> Vec<String> {
    let ws = &list[0].settlement.workspace;
    let p = store.prefix();
    let mut keys = Vec::with_capacity(4 + 5 * list.len());
    keys.extend(names(store, ws));
    for e in list {
        let s = &e.settlement;
        let [key_rpm, ws_rpm, key_tpm, ws_tpm] = limiter_names(store, ws, &s.key);
        keys.extend([format!("{p}:usage:{{{ws}}}:{}", s.day), key_tpm, ws_tpm, key_rpm, ws_rpm]);
    }
    keys
}

/// `settle.lua`'s arguments: the usage TTL, then fourteen per settle.
fn settle_args(list: &[Entry]) -> Vec<String> {
    let mut args = Vec::with_capacity(1 + 14 * list.len());
    args.push(USAGE_TTL_S.to_string());
    for e in list {
        let s = &e.settlement;
        let delta = s.tokens_used as i64 - s.tokens_charged as i64;
        args.extend([
            s.ticket_id.to_string(),
            s.kind.as_str().to_owned(),
            s.cost.to_string(),
            delta.to_string(),
            s.limits.key_tpm.unwrap_or(0).to_string(),
            s.limits.workspace_tpm.unwrap_or(0).to_string(),
            format!("{}\x1f{}", s.key, s.agent),
            s.input_tokens.to_string(),
            s.output_tokens.to_string(),
            if e.follows {
                "2"
            } else if s.recorded {
                "1"
            } else {
                "0"
            }
            .to_owned(),
            e.usage_requests.to_string(),
            e.requests_unused.to_string(),
            s.limits.key_rpm.unwrap_or(0).to_string(),
            s.limits.workspace_rpm.unwrap_or(0).to_string(),
        ]);
    }
    args
}

fn cancel_keys(store: &RedisStore, a: &Admit) -> Vec<String> {
    let [credits, resv, _, _] = names(store, &a.workspace);
    let mut keys = vec![credits, resv];
    keys.extend(limiter_names(store, &a.workspace, &a.key));
    keys
}

fn cancel_args(a: &Admit) -> Vec<String> {
    let l = &a.limits;
    let mut args = vec![a.id.to_string(), a.expires_at_ms.to_string()];
    args.extend([l.key_rpm, l.workspace_rpm, l.key_tpm, l.workspace_tpm].iter().map(|l| l.unwrap_or(0).to_string()));
    args.push(a.tokens.to_string());
    args
}

/// Runs a settle or cancel script until Redis takes it (both are idempotent
/// by reservation id, so a retry after a timeout that did apply is harmless).
async fn until_applied(store: &RedisStore, script: &Script, keys: &[String], args: &[String], id: &str) {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    loop {
        match store.eval::<i64>(script, keys, args).await {
            Ok(_) => return,
            Err(e) => {
                attempt += 1;
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(ticket = %id, attempt, error = %e, "settle or cancel failed; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credits::{Kind, Period};
    use crate::limits::LimitSet;

    fn settlement(workspace: &str, id: &str) -> Settlement {
        Settlement {
            ticket_id: id.into(),
            workspace: workspace.into(),
            key: "k".into(),
            agent: "a".into(),
            kind: Kind::Message,
            period: "2026-12".into(),
            parts: (0, 0),
            limits: LimitSet::default(),
            tokens_charged: 0,
            tokens_used: 0,
            cost: 1,
            input_tokens: 0,
            output_tokens: 0,
            day: Period::utc_day(0),
            expires_at_ms: 0,
            recorded: true,
            lease: None,
        }
    }

    fn shape(calls: &[Call]) -> Vec<(String, usize)> {
        calls
            .iter()
            .map(|c| match c {
                Call::Settles(list) => (list[0].settlement.workspace.to_string(), list.len()),
                Call::Cancel(a) => (format!("cancel {}", a.id), 1),
            })
            .collect()
    }

    #[test]
    fn settles_are_grouped_per_workspace_and_capped_per_call() {
        let mut jobs: Vec<Job> = (0..BATCH + 3).map(|i| Job::Settle(settlement("a", &format!("r{i}")))).collect();
        jobs.insert(1, Job::Settle(settlement("b", "rb")));
        let got = shape(&calls(jobs));
        assert_eq!(got, [("a".into(), BATCH), ("b".into(), 1), ("a".into(), 3)]);
    }

    #[test]
    fn a_leases_return_and_its_usage_lines_stay_in_one_call() {
        let mut jobs: Vec<Job> = (0..BATCH - 1).map(|i| Job::Settle(settlement("a", &format!("r{i}")))).collect();
        let line = |agent: &str| UsageLine {
            day: "2026-12-04".into(),
            agent: agent.into(),
            requests: 3,
            input_tokens: 30,
            output_tokens: 9,
            credits: 7,
        };
        let ret = Return {
            settlement: settlement("a", "lease"),
            requests_unused: 2,
            lines: vec![line("x"), line("y")],
            lease: Lease::for_tests(),
        };
        jobs.push(Job::Return(ret));
        let got = calls(jobs);
        assert_eq!(shape(&got), [("a".into(), BATCH - 1), ("a".into(), 3)], "the group does not fit beside 255");
        let Call::Settles(list) = &got[1] else { panic!("settles") };
        let follows: Vec<_> = list.iter().map(|e| (e.follows, e.usage_requests, e.settlement.cost)).collect();
        assert_eq!(follows, [(false, 0, 1), (true, 3, 7), (true, 3, 7)]);
        let args = settle_args(list);
        assert_eq!((&args[10], &args[24], &args[38]), (&"1".to_string(), &"2".to_string(), &"2".to_string()));
    }
}
