//! This replica's leases, one per workspace, key and kind: when a request
//! admits from one, when a key is busy enough to take one, and retiring
//! them. What one lease holds and gives back is the parent module's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Lease, LeaseUse, Return, UsageLine};
use crate::credits::{Admit, Kind, Settlement, Ticket};
use crate::limits::RateHeaders;

/// This replica's leases and what decides them, per workspace, key and kind.
pub(in crate::credits::redis) struct Leases {
    /// The most requests one lease asks for; 1 turns leases off.
    pub(in crate::credits::redis) size: u64,
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
pub(in crate::credits::redis) struct Acquiring<'a> {
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
pub(in crate::credits::redis) enum Next<'a> {
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
pub(in crate::credits::redis) enum Local {
    Admitted(Ticket, RateHeaders),
    /// No lease fits: the admission goes to Redis.
    Redis(Admit),
}

impl Leases {
    pub(in crate::credits::redis) fn new(size: u64, ttl: Duration) -> Leases {
        Leases { size: size.max(1), ttl, keys: Mutex::default() }
    }

    /// For an admission no lease admitted: how many requests to ask Redis
    /// for — a lease's worth when its key is busy (see the module doc), else
    /// 1 — or, when `may_wait` and another request of the key is taking a
    /// lease, wait for that one.
    pub(in crate::credits::redis) fn next(&self, a: &Admit, may_wait: bool) -> Next<'_> {
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
    pub(in crate::credits::redis) fn admit_local(&self, a: Admit, returns: &mut Vec<Return>) -> Local {
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
    pub(in crate::credits::redis) fn hold(
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
    pub(in crate::credits::redis) fn settle(&self, used: &LeaseUse, s: &Settlement) -> Option<Return> {
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
    pub(in crate::credits::redis) fn retire(
        &self,
        which: impl Fn(&Lease) -> bool,
        returns: &mut Vec<Return>,
    ) -> Vec<Arc<Lease>> {
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
    pub(in crate::credits::redis) fn retire_workspace(
        &self,
        workspace: &str,
        returns: &mut Vec<Return>,
    ) -> Vec<Arc<Lease>> {
        self.retire(|l| &*l.admit.workspace == workspace, returns)
    }

    /// Retires the leases past their time, and forgets keys not busy lately.
    pub(in crate::credits::redis) fn retire_expired(&self, returns: &mut Vec<Return>) {
        let ttl = self.ttl;
        self.retire(|l| l.taken_at.elapsed() >= ttl, returns);
        let mut keys = self.keys.lock().expect("leases lock");
        keys.retain(|_, k| k.lease.is_some() || k.acquiring.is_some() || k.busy.recent(ttl));
    }

    pub(in crate::credits::redis) fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Waits until each lease's return is in Redis.
pub(in crate::credits::redis) async fn returned(leases: Vec<Arc<Lease>>) {
    for lease in leases {
        lease.wait_returned().await;
    }
}
