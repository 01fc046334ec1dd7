//! Leases: a replica admits most requests without a Redis round trip.
//!
//! When admit.lua (v6) finds every limiter and the balance far from their
//! edges, it grants up to `credits.lease_requests` requests of the asking
//! request's size at once: each rate limiter is charged for all of them and
//! the balance reserves all of them, under one reservation record. The
//! replica then admits further requests of the same key, kind and limits
//! from that slice, in memory, until a request needs more than is left, the
//! lease is `credits.flush_interval_ms` old, or the workspace's balance is
//! read on this replica. While one request of a key takes a lease, the key's
//! other requests wait for it rather than each taking one. Then the lease
//! retires: once its last call has settled, one settle gives back what it
//! did not use (the credits not charged, the requests and tokens not used,
//! moving the limiters' arrival times back) and charges what its calls cost.
//!
//! Only a busy key asks for a lease: one that made more than half a lease's
//! worth of requests on this replica within the last one or two lease times.
//! A key that calls now and then is admitted one request at a time, as
//! without leases, so its balance shows what each call holds and no slice
//! sits idle.
//!
//! Why this is exact where it matters:
//! - nothing is overspent: every request admitted locally was charged to the
//!   limiters and the balance in Redis before it was admitted;
//! - a slice is taken only when each limiter and the balance could grant 16
//!   times the lease again, so near an edge (a small limit, a low balance)
//!   every request goes to Redis one by one, exactly as without leases, and
//!   capacity is not stranded on another replica when it matters;
//! - each call's usage is added up in the lease per day and agent, and the
//!   totals ride with the lease's return, in the same script call and only
//!   if the return applies, so usage totals count every call once, retries
//!   included. A usage read on this replica retires the workspace's leases
//!   first, as a balance read does.
//!
//! The bound on staleness: a lease admits for at most the flush interval, so
//! a limit lowered or a plan changed reaches a replica's leases within it
//! (plus the terms cache's TTL, as without leases). A top-up is seen at once
//! (it only adds to the balance). A replica killed holding a lease loses its
//! calls' charges like any reservation whose settle never came: the reaper
//! gives the slice back after `credits.reservation_ttl_ms`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::credits::{Admit, Settlement};
use crate::limits::{LimitSet, RateHeaders};

mod registry;

pub(super) use registry::{returned, Leases, Local, Next};

/// A slice of a key's limits and its workspace's balance, held by this replica.
#[derive(Debug)]
pub struct Lease {
    /// The acquiring admission: its reservation id, and the size of each of
    /// the lease's requests (`tokens`, `amount`).
    admit: Admit,
    /// Where the reservation came from: (plan part, top-up part).
    parts: (u64, u64),
    /// The ledger's month when it reserved.
    period: String,
    granted: u64,
    taken_at: Instant,
    /// The limiters' windows right after the acquiring request.
    headers: RateHeaders,
    state: Mutex<State>,
    /// Signalled when the lease's return has been applied in Redis.
    returned: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Requests of the slice not yet admitted.
    requests_left: u64,
    /// Tokens of the slice not yet charged to a request (estimates, then
    /// corrected at each settle).
    tokens_left: i64,
    /// Micro-credits of the slice not held by a call or charged.
    credits_free: i64,
    /// Admitted so far, the acquiring request included.
    admitted: u64,
    tokens_admitted: u64,
    in_flight: u64,
    /// Totals of the settled calls, for the return.
    charged: u64,
    tokens_used: u64,
    /// The settled calls' usage, per day and agent (most leases: one line).
    lines: Vec<UsageLine>,
    retired: bool,
    return_queued: bool,
    applied: bool,
}

/// A request admitted from a lease: its ticket holds this.
#[derive(Debug, Clone)]
pub struct LeaseUse {
    pub(super) lease: Arc<Lease>,
    /// What this request holds of the slice (micro-credits).
    pub(super) amount: u64,
}

/// A lease's return, for the settle queue: one settle of the lease's
/// reservation, the requests it gives back to the rpm limiters, and its
/// calls' usage lines (applied only with the return).
pub(super) struct Return {
    pub(super) settlement: Settlement,
    pub(super) requests_unused: u64,
    pub(super) lines: Vec<UsageLine>,
    pub(super) lease: Arc<Lease>,
}

/// The usage of a lease's calls of one day and agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UsageLine {
    pub(super) day: String,
    pub(super) agent: Arc<str>,
    pub(super) requests: u64,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    /// Micro-credits the calls cost.
    pub(super) credits: u64,
}

impl UsageLine {
    /// Adds a settled call to its line in `lines`, or starts one.
    fn add(lines: &mut Vec<UsageLine>, s: &Settlement) {
        let at = match lines.iter().position(|l| l.day == s.day && l.agent == s.agent) {
            Some(at) => at,
            None => {
                lines.push(UsageLine {
                    day: s.day.clone(),
                    agent: s.agent.clone(),
                    requests: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                    credits: 0,
                });
                lines.len() - 1
            }
        };
        let l = &mut lines[at];
        l.requests += 1;
        l.input_tokens = l.input_tokens.saturating_add(s.input_tokens);
        l.output_tokens = l.output_tokens.saturating_add(s.output_tokens);
        l.credits = l.credits.saturating_add(s.cost);
    }
}

impl Lease {
    /// A lease from an admission admit.lua granted `granted` requests; the
    /// acquiring request is its first call.
    fn new(admit: Admit, parts: (u64, u64), period: String, granted: u64, headers: RateHeaders) -> Arc<Lease> {
        let more = granted.saturating_sub(1);
        let state = State {
            requests_left: more,
            tokens_left: (more * admit.tokens) as i64,
            credits_free: (more * admit.amount) as i64,
            admitted: 1,
            tokens_admitted: admit.tokens,
            in_flight: 1,
            ..State::default()
        };
        Arc::new(Lease {
            admit,
            parts,
            period,
            granted,
            taken_at: Instant::now(),
            headers,
            state: Mutex::new(state),
            returned: Notify::new(),
        })
    }

    fn fits(&self, a: &Admit, s: &State, ttl: Duration) -> bool {
        let l = &self.admit;
        !s.retired
            && s.requests_left > 0
            && self.taken_at.elapsed() < ttl
            && a.limits == l.limits
            && a.period.id == l.period.id
            && a.allowance == l.allowance
            && (a.tokens as i64 <= s.tokens_left || !has_token_limit(&a.limits))
            && (a.amount as i64 <= s.credits_free || a.amount == 0)
    }

    /// The windows as a client should see them after `s`'s admissions.
    fn headers(&self, s: &State) -> RateHeaders {
        let mut h = self.headers;
        let later = s.admitted - 1;
        if let Some(w) = h.requests.as_mut() {
            w.remaining = w.remaining.saturating_sub(later);
        }
        if let Some(w) = h.tokens.as_mut() {
            w.remaining = w.remaining.saturating_sub(s.tokens_admitted - self.admit.tokens);
        }
        h
    }

    /// The return once retired and idle (at most once).
    fn take_return(self: &Arc<Lease>, s: &mut State) -> Option<Return> {
        if !s.retired || s.in_flight > 0 || s.return_queued {
            return None;
        }
        s.return_queued = true;
        let a = &self.admit;
        let settlement = Settlement {
            ticket_id: a.id.clone(),
            workspace: a.workspace.clone(),
            key: a.key.clone(),
            agent: "".into(),
            kind: a.kind,
            period: self.period.clone(),
            parts: self.parts,
            limits: a.limits,
            tokens_charged: self.granted * a.tokens,
            tokens_used: s.tokens_used,
            cost: s.charged,
            input_tokens: 0,
            output_tokens: 0,
            day: crate::credits::Period::utc_day(a.now_ms),
            expires_at_ms: a.expires_at_ms,
            recorded: true,
            lease: None,
        };
        let lines = std::mem::take(&mut s.lines);
        Some(Return { settlement, requests_unused: s.requests_left, lines, lease: self.clone() })
    }

    /// Stops the lease admitting; its return (once its calls have settled)
    /// goes to `returns` when it is idle now. Whether it is.
    fn retire(self: &Arc<Lease>, returns: &mut Vec<Return>) -> bool {
        let mut s = self.state.lock().expect("lease lock");
        s.retired = true;
        let idle = self.take_return(&mut s);
        let returning = idle.is_some();
        returns.extend(idle);
        returning
    }

    /// A lease of nothing, for the settle queue's tests.
    #[cfg(test)]
    pub(super) fn for_tests() -> Arc<Lease> {
        use crate::credits::Kind;
        let period = crate::credits::Period::at(0, chrono_tz::UTC);
        let admit = Admit {
            id: "lease".into(),
            workspace: "a".into(),
            key: "k".into(),
            limits: LimitSet::default(),
            tokens: 0,
            kind: Kind::Message,
            amount: 0,
            period,
            allowance: [None, None],
            now_ms: 0,
            expires_at_ms: 0,
        };
        Lease::new(admit, (0, 0), "2026-12".into(), 2, RateHeaders::default())
    }

    /// Called by the settle queue once the return is in Redis.
    pub(super) fn applied(&self) {
        self.state.lock().expect("lease lock").applied = true;
        self.returned.notify_waiters();
    }

    async fn wait_returned(&self) {
        loop {
            let returned = self.returned.notified();
            if self.state.lock().expect("lease lock").applied {
                return;
            }
            returned.await;
        }
    }
}

fn has_token_limit(l: &LimitSet) -> bool {
    l.key_tpm.is_some() || l.workspace_tpm.is_some()
}
