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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::credits::{Admit, Kind, Settlement, Ticket};
use crate::limits::{LimitSet, RateHeaders};

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

/// This replica's leases and what decides them, per workspace, key and kind.
pub(super) struct Leases {
    /// The most requests one lease asks for; 1 turns leases off.
    pub(super) size: u64,
    /// How long a lease admits.
    ttl: Duration,
    keys: Mutex<HashMap<LeaseKey, KeyState>>,
}

/// One key's live lease, how busy it is, and whether a lease is being taken.
#[derive(Default)]
struct KeyState {
    lease: Option<Arc<Lease>>,
    busy: Busy,
    /// Set while one of the key's requests takes a lease: the others wait for it.
    acquiring: Option<Arc<Notify>>,
}

/// Requests of a key in the current and the previous lease time: each sent
/// to Redis counts 1, a lease the requests it grants.
#[derive(Default)]
struct Busy {
    since: Option<Instant>,
    current: u64,
    previous: u64,
}

impl Busy {
    /// Counts one request sent to Redis; whether the key is busy.
    fn count(&mut self, ttl: Duration, size: u64) -> bool {
        let age = self.since.map_or(Duration::MAX, |t| t.elapsed());
        if age >= ttl {
            self.previous = if age < 2 * ttl { self.current } else { 0 };
            self.current = 0;
            self.since = Some(Instant::now());
        }
        self.current += 1;
        self.previous + self.current > size / 2
    }

    fn recent(&self, ttl: Duration) -> bool {
        self.since.is_some_and(|t| t.elapsed() < 2 * ttl)
    }
}

/// A key's lease being taken by this request; dropping it lets the key's
/// waiting requests try again.
pub(super) struct Acquiring<'a> {
    leases: &'a Leases,
    key: LeaseKey,
}

impl Drop for Acquiring<'_> {
    fn drop(&mut self) {
        let mut keys = self.leases.keys.lock().expect("leases lock");
        if let Some(done) = keys.get_mut(&self.key).and_then(|k| k.acquiring.take()) {
            done.notify_waiters();
        }
    }
}

/// What a request that found no lease to admit it does next.
pub(super) enum Next<'a> {
    /// Go to Redis, asking for this many requests (holding the key's
    /// acquisition while it does when that is more than one).
    Redis(u64, Option<Acquiring<'a>>),
    /// Wait: another request of the key is taking a lease.
    Wait(tokio::sync::futures::OwnedNotified),
}

/// What a lease is for: workspace, key (or payer), kind.
type LeaseKey = (Arc<str>, Arc<str>, Kind);

fn key_of(a: &Admit) -> LeaseKey {
    (a.workspace.clone(), a.key.clone(), a.kind)
}

/// What [`Leases::admit_local`] did with an admission.
pub(super) enum Local {
    Admitted(Ticket, RateHeaders),
    /// No lease fits: the admission goes to Redis.
    Redis(Admit),
}

impl Leases {
    pub(super) fn new(size: u64, ttl: Duration) -> Leases {
        Leases { size: size.max(1), ttl, keys: Mutex::default() }
    }

    /// For an admission no lease admitted: how many requests to ask Redis
    /// for — a lease's worth when its key is busy (see the module doc), else
    /// 1 — or, when `may_wait` and another request of the key is taking a
    /// lease, wait for that one.
    pub(super) fn next(&self, a: &Admit, may_wait: bool) -> Next<'_> {
        if self.size <= 1 {
            return Next::Redis(1, None);
        }
        let key = key_of(a);
        let mut keys = self.keys.lock().expect("leases lock");
        let k = keys.entry(key.clone()).or_default();
        if !k.busy.count(self.ttl, self.size) {
            return Next::Redis(1, None);
        }
        match &k.acquiring {
            Some(done) if may_wait => Next::Wait(done.clone().notified_owned()),
            Some(_) => Next::Redis(1, None),
            None => {
                k.acquiring = Some(Arc::new(Notify::new()));
                Next::Redis(self.size, Some(Acquiring { leases: self, key }))
            }
        }
    }

    /// Admits `a` from its key's lease when it fits. A lease it does not fit
    /// retires; its return (if idle) goes to `returns`.
    pub(super) fn admit_local(&self, a: Admit, returns: &mut Vec<Return>) -> Local {
        if self.size <= 1 {
            return Local::Redis(a);
        }
        let mut keys = self.keys.lock().expect("leases lock");
        let Some(k) = keys.get_mut(&key_of(&a)) else { return Local::Redis(a) };
        let Some(lease) = k.lease.clone() else { return Local::Redis(a) };
        let mut s = lease.state.lock().expect("lease lock");
        if !lease.fits(&a, &s, self.ttl) {
            drop(s);
            k.lease = None;
            lease.retire(returns);
            return Local::Redis(a);
        }
        s.requests_left -= 1;
        s.tokens_left -= a.tokens as i64;
        s.credits_free -= a.amount as i64;
        s.admitted += 1;
        s.tokens_admitted += a.tokens;
        s.in_flight += 1;
        let headers = lease.headers(&s);
        drop(s);
        drop(keys);
        let period = lease.period.clone();
        let amount = a.amount;
        let ticket = Ticket {
            admit: a,
            parts: (0, 0),
            local: None,
            recorded: false,
            period,
            lease: Some(LeaseUse { lease, amount }),
        };
        Local::Admitted(ticket, headers)
    }

    /// Holds the slice admit.lua granted; `admit` is its first call. Returns
    /// the first call's lease use (none when only it was granted).
    pub(super) fn hold(
        &self,
        admit: &Admit,
        parts: (u64, u64),
        period: &str,
        granted: u64,
        headers: RateHeaders,
        returns: &mut Vec<Return>,
    ) -> Option<LeaseUse> {
        if granted <= 1 {
            return None;
        }
        let lease = Lease::new(admit.clone(), parts, period.to_owned(), granted, headers);
        let mut keys = self.keys.lock().expect("leases lock");
        let k = keys.entry(key_of(admit)).or_default();
        k.busy.current += granted - 1;
        if let Some(old) = k.lease.replace(lease.clone()) {
            // Another request of the same key took a lease at the same time.
            old.retire(returns);
        }
        Some(LeaseUse { lease, amount: admit.amount })
    }

    /// Settles one call of a lease in memory; the lease's return when that
    /// was the last call of a retired lease.
    pub(super) fn settle(&self, used: &LeaseUse, s: &Settlement) -> Option<Return> {
        let mut state = used.lease.state.lock().expect("lease lock");
        state.in_flight -= 1;
        state.charged = state.charged.saturating_add(s.cost);
        state.credits_free += used.amount as i64 - s.cost.min(i64::MAX as u64) as i64;
        state.tokens_left += s.tokens_charged as i64 - s.tokens_used as i64;
        state.tokens_used = state.tokens_used.saturating_add(s.tokens_used);
        UsageLine::add(&mut state.lines, s);
        used.lease.take_return(&mut state)
    }

    /// Retires the leases that `which` picks (all of a workspace, or those
    /// past their time); their returns (those idle) go to `returns`, and
    /// the leases returning are handed back to wait on.
    pub(super) fn retire(&self, which: impl Fn(&Lease) -> bool, returns: &mut Vec<Return>) -> Vec<Arc<Lease>> {
        let mut keys = self.keys.lock().expect("leases lock");
        let mut returning = Vec::new();
        for k in keys.values_mut() {
            if let Some(lease) = k.lease.take_if(|l| which(l)) {
                if lease.retire(returns) {
                    returning.push(lease);
                }
            }
        }
        returning
    }

    /// Retires a workspace's leases (a read of its balance on this replica
    /// then sees what its calls spent).
    pub(super) fn retire_workspace(&self, workspace: &str, returns: &mut Vec<Return>) -> Vec<Arc<Lease>> {
        self.retire(|l| &*l.admit.workspace == workspace, returns)
    }

    /// Retires the leases past their time, and forgets keys not busy lately.
    pub(super) fn retire_expired(&self, returns: &mut Vec<Return>) {
        let ttl = self.ttl;
        self.retire(|l| l.taken_at.elapsed() >= ttl, returns);
        let mut keys = self.keys.lock().expect("leases lock");
        keys.retain(|_, k| k.lease.is_some() || k.acquiring.is_some() || k.busy.recent(ttl));
    }

    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Waits until each lease's return is in Redis.
pub(super) async fn returned(leases: Vec<Arc<Lease>>) {
    for lease in leases {
        lease.wait_returned().await;
    }
}
