//! Store operation latency and failures, counted where every call to a
//! backend passes (the embedded store's thread hand-off, the Redis
//! client's bounded call): atomics, so counting costs the call a few
//! nanoseconds and `/metrics` reads them when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (then +Inf).
pub const BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Default)]
pub struct OpStats {
    /// Calls per bucket; the last is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    errors: AtomicU64,
}

/// What a scrape reads.
pub struct Snapshot {
    /// `(upper bound, calls in that bucket)`, +Inf last as `f64::MAX`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
    pub errors: u64,
}

impl OpStats {
    pub fn observe(&self, took: Duration, ok: bool) {
        let seconds = took.as_secs_f64();
        let i = BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a call that started at `started` and ended with `result`: a
    /// conflict is an answer, not a failure of the store.
    pub fn observe_result<T>(&self, started: std::time::Instant, result: &Result<T, super::StoreError>) {
        let failed = matches!(result, Err(super::StoreError::Unavailable(_) | super::StoreError::Corrupt(_)));
        self.observe(started.elapsed(), !failed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let bounds = BUCKETS.iter().copied().chain(std::iter::once(f64::MAX));
        Snapshot {
            count: counts.iter().sum(),
            buckets: bounds.zip(counts).collect(),
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_bucket_and_failures_are_counted() {
        let s = OpStats::default();
        s.observe(Duration::from_micros(80), true);
        s.observe(Duration::from_millis(3), false);
        s.observe(Duration::from_secs(9), true);
        let snap = s.snapshot();
        assert_eq!((snap.count, snap.errors), (3, 1));
        assert_eq!(snap.buckets[0], (0.0001, 1));
        assert_eq!(snap.buckets[5], (0.005, 1));
        assert_eq!(snap.buckets.last(), Some(&(f64::MAX, 1)));
        assert!((snap.sum_seconds - 9.00308).abs() < 1e-6);
    }
}
