//! The embedded limiter: governor's GCRA, one direct limiter per (subject,
//! limit), with a state store the gateway can also move for corrections.
//!
//! governor decides (`check_n`); the arrival time it keeps lives in an
//! [`AtomicU64`] shared with [`Bucket`], so a refund (a request refused by a
//! later limiter, or fewer tokens used than estimated) moves it back and an
//! under-estimate moves it forward — the correction GCRA allows and governor's
//! own stores do not expose.
//!
//! Buckets live in a sharded map (a read lock on a hit; no lock is held
//! across an `.await` — there is none here). A full bucket decides exactly as
//! a new one would, so [`LocalLimiter::sweep`] drops full, unused buckets:
//! the map holds only subjects active within the last minute.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::{Dimension, LimitError, LimitSet, RateHeaders, Window};

/// Shards of the bucket map: enough that two workers rarely meet.
const SHARDS: usize = 16;

/// Governor's state, shared: the arrival time in nanoseconds since `start`.
#[derive(Clone, Default)]
struct SharedTat(Arc<AtomicU64>);

impl StateStore for SharedTat {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // governor's own compare-and-swap loop, on our shared cell.
        let mut prev = self.0.load(Ordering::Acquire);
        loop {
            let (result, next) = f((prev != 0).then(|| Nanos::new(prev)))?;
            match self.0.compare_exchange_weak(prev, next.as_u64(), Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return Ok(result),
                Err(current) => prev = current,
            }
        }
    }
}

type Governor = RateLimiter<NotKeyed, SharedTat, MonotonicClock, StateInformationMiddleware>;

/// One limiter: N per minute, burst N.
pub struct Bucket {
    limiter: Governor,
    tat: SharedTat,
    limit: u32,
    /// Nanoseconds per unit (60 s / limit).
    per_unit: u64,
    start: Instant,
}

impl Bucket {
    fn new(per_minute: NonZeroU32) -> Bucket {
        let tat = SharedTat::default();
        let start = Instant::now();
        let limiter = RateLimiter::<NotKeyed, _, _, governor::middleware::NoOpMiddleware<Instant>>::new(
            Quota::per_minute(per_minute),
            tat.clone(),
            MonotonicClock,
        )
        .with_middleware();
        Bucket { limiter, tat, limit: per_minute.get(), per_unit: 60_000_000_000 / per_minute.get() as u64, start }
    }

    /// Back to its full burst: dropping it changes no decision.
    fn is_full(&self) -> bool {
        self.tat.0.load(Ordering::Acquire) <= self.since_start()
    }

    fn since_start(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Takes `n` units or says how long until they fit.
    fn take(&self, n: u64) -> Result<Window, Refusal> {
        let Some(cells) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 { Ok(self.window()) } else { Err(Refusal::TooLarge) };
        };
        match self.limiter.check_n(cells) {
            Err(_) => Err(Refusal::TooLarge),
            Ok(Err(not_until)) => Err(Refusal::Wait(not_until.wait_time_from(MonotonicClock.now()))),
            Ok(Ok(_)) => Ok(self.window()),
        }
    }

    /// Gives `n` units back (refused elsewhere, or estimated too high).
    fn refund(&self, n: u64) {
        let back = n.saturating_mul(self.per_unit);
        let _ = self.tat.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_sub(back).max(1)));
    }

    /// Takes `n` more units whether they fit or not (estimated too low): the
    /// next requests wait for them.
    fn charge(&self, n: u64) {
        let now = self.since_start();
        let more = n.saturating_mul(self.per_unit);
        let _ = self.tat.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.max(now).saturating_add(more)));
    }

    fn window(&self) -> Window {
        let ahead = self.tat.0.load(Ordering::Acquire).saturating_sub(self.since_start());
        let burst = 60_000_000_000u64;
        let remaining = (burst.saturating_sub(ahead) / self.per_unit).min(self.limit as u64);
        Window { limit: self.limit, remaining, reset: Duration::from_nanos(ahead) }
    }
}

enum Refusal {
    Wait(Duration),
    TooLarge,
}

/// Who a limiter counts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(Arc<str>),
    Workspace(Arc<str>),
}

impl Subject {
    fn scope(&self) -> &'static str {
        match self {
            Subject::Key(_) => "key",
            Subject::Workspace(_) => "workspace",
        }
    }
}

/// What a passed check took, to correct or refund it later.
#[derive(Default)]
pub struct Consumed {
    buckets: Vec<(Arc<Bucket>, Dimension, u64)>,
}

impl Consumed {
    /// Corrects the token limiters from `charged` to `actual` tokens.
    pub fn correct_tokens(&self, actual: u64) {
        for (bucket, dimension, charged) in &self.buckets {
            if *dimension != Dimension::Tokens {
                continue;
            }
            match actual.cmp(charged) {
                std::cmp::Ordering::Less => bucket.refund(charged - actual),
                std::cmp::Ordering::Greater => bucket.charge(actual - charged),
                std::cmp::Ordering::Equal => {}
            }
        }
    }

    pub(crate) fn refund_all(&self) {
        for (bucket, _, n) in &self.buckets {
            bucket.refund(*n);
        }
    }
}

/// All limiters of the embedded backend.
pub struct LocalLimiter {
    shards: Box<[Shard]>,
}

type Shard = RwLock<HashMap<BucketKey, Arc<Bucket>>>;

/// (who, what, per-minute limit): a changed limit starts a new bucket.
type BucketKey = (Subject, Dimension, u32);

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter { shards: (0..SHARDS).map(|_| RwLock::default()).collect() }
    }
}

impl LocalLimiter {
    fn bucket(&self, key: BucketKey, limit: NonZeroU32) -> Arc<Bucket> {
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        let shard = &self.shards[hasher.finish() as usize % SHARDS];
        if let Some(bucket) = shard.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return bucket.clone();
        }
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_insert_with(|| Arc::new(Bucket::new(limit))).clone()
    }

    /// Drops the buckets that are full again and held by no call in flight;
    /// returns how many remain. Run it now and then (the ledger's flush does).
    pub fn sweep(&self) -> usize {
        let mut remaining = 0;
        for shard in self.shards.iter() {
            let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, bucket| Arc::strong_count(bucket) > 1 || !bucket.is_full());
            remaining += map.len();
        }
        remaining
    }

    /// Checks and takes one request and `tokens` tokens from every limit that
    /// applies; if any refuses, what the others took is given back.
    pub fn check(
        &self,
        key: &Arc<str>,
        workspace: &Arc<str>,
        limits: &LimitSet,
        tokens: u64,
    ) -> Result<(Consumed, RateHeaders), LimitError> {
        let checks = [
            (Subject::Key(key.clone()), Dimension::Requests, limits.key_rpm, 1),
            (Subject::Workspace(workspace.clone()), Dimension::Requests, limits.workspace_rpm, 1),
            (Subject::Key(key.clone()), Dimension::Tokens, limits.key_tpm, tokens),
            (Subject::Workspace(workspace.clone()), Dimension::Tokens, limits.workspace_tpm, tokens),
        ];
        let mut taken = Consumed::default();
        let mut headers = RateHeaders::default();
        for (subject, dimension, limit, n) in checks {
            let Some(limit) = limit.and_then(NonZeroU32::new) else { continue };
            let scope = subject.scope();
            let bucket = self.bucket((subject, dimension, limit.get()), limit);
            match bucket.take(n) {
                Ok(window) => {
                    let slot = match dimension {
                        Dimension::Requests => &mut headers.requests,
                        Dimension::Tokens => &mut headers.tokens,
                    };
                    *slot = Window::tighter(*slot, Some(window));
                    taken.buckets.push((bucket, dimension, n));
                }
                Err(refusal) => {
                    taken.refund_all();
                    let limit = limit.get();
                    return Err(match refusal {
                        Refusal::TooLarge => LimitError::TooLarge { scope, limit, requested: n },
                        Refusal::Wait(retry_after) => {
                            let window = Some(Window { remaining: 0, ..bucket.window() });
                            match dimension {
                                Dimension::Requests => headers.requests = window,
                                Dimension::Tokens => headers.tokens = window,
                            }
                            LimitError::Exceeded { dimension, scope, limit, retry_after, headers }
                        }
                    });
                }
            }
        }
        Ok((taken, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u32>, tpm: Option<u32>) -> LimitSet {
        LimitSet { key_rpm: rpm, key_tpm: tpm, ..Default::default() }
    }

    #[test]
    fn requests_per_minute_allow_a_burst_then_refuse() {
        let l = LocalLimiter::default();
        let (k, w) = (Arc::from("k"), Arc::from("w"));
        for i in 0..3 {
            let (_, h) = l.check(&k, &w, &limits(Some(3), None), 0).unwrap();
            assert_eq!(h.requests.unwrap().remaining, 2 - i);
        }
        match l.check(&k, &w, &limits(Some(3), None), 0) {
            Err(LimitError::Exceeded { dimension: Dimension::Requests, retry_after, .. }) => {
                assert!(retry_after > Duration::from_secs(15) && retry_after <= Duration::from_secs(20));
            }
            other => panic!("{:?}", other.map(|(_, h)| h)),
        }
    }

    #[test]
    fn a_refusal_gives_back_what_other_limits_took() {
        let l = LocalLimiter::default();
        let (k, w) = (Arc::from("k"), Arc::from("w"));
        let set = LimitSet { key_rpm: Some(100), workspace_tpm: Some(1000), ..Default::default() };
        assert!(matches!(l.check(&k, &w, &set, 2000), Err(LimitError::TooLarge { limit: 1000, .. })));
        let (_, h) = l.check(&k, &w, &set, 10).unwrap();
        assert_eq!(h.requests.unwrap().remaining, 99, "the refused request was given back");
    }

    #[test]
    fn token_corrections_move_the_budget_both_ways() {
        let l = LocalLimiter::default();
        let (k, w) = (Arc::from("k"), Arc::from("w"));
        let set = limits(None, Some(1000));
        let (taken, _) = l.check(&k, &w, &set, 600).unwrap();
        assert!(l.check(&k, &w, &set, 600).is_err(), "600 + 600 > 1000");
        taken.correct_tokens(100);
        let (taken, h) = l.check(&k, &w, &set, 600).unwrap();
        assert!(h.tokens.unwrap().remaining <= 300);
        taken.correct_tokens(900);
        assert!(l.check(&k, &w, &set, 1).is_err(), "100 + 900 used the whole minute");
    }

    #[test]
    fn sweeping_keeps_buckets_that_still_count() {
        let l = LocalLimiter::default();
        let (k, w) = (Arc::from("k"), Arc::from("w"));
        let (taken, _) = l.check(&k, &w, &limits(Some(10), Some(1000)), 5).unwrap();
        drop(taken);
        assert_eq!(l.sweep(), 2, "not full again yet: kept");
        let set = LimitSet { key_rpm: Some(u32::MAX), ..Default::default() };
        let _ = l.check(&Arc::from("idle"), &w, &set, 0).unwrap();
        // 60 s / u32::MAX per request: full again within nanoseconds.
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(l.sweep(), 2, "the full, unused bucket went");
    }
}
