//! What the gateway knows about one upstream target (a provider and an
//! upstream model), shared by every route that names it: calls in flight,
//! recent first-byte latency, a `Retry-After` cool-down and the circuit
//! breaker. Reads for choosing are atomics; the breaker's transitions take a
//! mutex held for a few instructions, never across an `.await`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::breaker::{Admit, Breaker, State};
use crate::config::RoutingConfig;

/// How fast the latency estimate forgets: an observation's weight halves
/// about every 7 s of silence, so a target that was slow once is tried
/// again rather than starved forever.
const DECAY_TAU: Duration = Duration::from_secs(10);
/// Weight of a new observation that is not slower than the estimate.
const ALPHA: f64 = 0.3;
/// Longest cool-down a `Retry-After` may ask for.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(300);
/// Cool-down after a 429 that did not say how long to wait.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(1);

pub struct Health {
    /// Started when the gateway built it: the zero of the millisecond stamps.
    epoch: Instant,
    in_flight: AtomicU32,
    /// Most calls in flight at once (`u32::MAX`: no limit).
    limit: u32,
    /// Peak-sensitive EWMA of the time to response headers, in µs (f64 bits).
    ewma_us: AtomicU64,
    /// When `ewma_us` was last updated, ms after `epoch`.
    ewma_at_ms: AtomicU64,
    /// Skipped until this many ms after `epoch` (a 429's `Retry-After`).
    cool_until_ms: AtomicU64,
    breaker: Mutex<Breaker>,
}

/// Why a target cannot take a call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    Open,
    CoolingFor(Duration),
    Full,
}

impl Health {
    pub fn new(config: RoutingConfig, limit: Option<u32>) -> Health {
        let epoch = Instant::now();
        Health {
            epoch,
            in_flight: AtomicU32::new(0),
            limit: limit.unwrap_or(u32::MAX),
            ewma_us: AtomicU64::new(0f64.to_bits()),
            ewma_at_ms: AtomicU64::new(0),
            cool_until_ms: AtomicU64::new(0),
            breaker: Mutex::new(Breaker::new(config, epoch)),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Its `max_concurrent` (`None`: no limit).
    pub fn limit(&self) -> Option<u32> {
        (self.limit != u32::MAX).then_some(self.limit)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// `0` closed, `1` open, `2` half-open (the metrics gauge).
    pub fn breaker_state(&self) -> u8 {
        match self.breaker.lock().expect("not poisoned").state() {
            State::Closed => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }

    /// The latency estimate now, decayed for the time since it was updated.
    pub fn latency_us(&self, now: Instant) -> f64 {
        let ewma = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        let idle = self.ms(now).saturating_sub(self.ewma_at_ms.load(Ordering::Relaxed));
        ewma * (-(idle as f64) / DECAY_TAU.as_millis() as f64).exp()
    }

    fn observe(&self, latency: Duration, now: Instant) {
        let sample = latency.as_micros() as f64;
        let current = self.latency_us(now);
        // Peak-sensitive: slowness counts at once, recovery gradually.
        let next = if sample > current { sample } else { current + ALPHA * (sample - current) };
        self.ewma_us.store(next.to_bits(), Ordering::Relaxed);
        self.ewma_at_ms.store(self.ms(now), Ordering::Relaxed);
    }

    /// Why the target would refuse a call now (`None`: it would take one).
    /// `breaker: false` ignores the breaker (every target is open: try anyway).
    pub fn busy(&self, now: Instant, breaker: bool) -> Option<Busy> {
        let cool = self.cool_until_ms.load(Ordering::Relaxed);
        let at = self.ms(now);
        if cool > at {
            return Some(Busy::CoolingFor(Duration::from_millis(cool - at)));
        }
        if self.in_flight() >= self.limit {
            return Some(Busy::Full);
        }
        if breaker && !self.breaker.lock().expect("not poisoned").would_admit(now) {
            return Some(Busy::Open);
        }
        None
    }

    /// Starts a call: `None` when the target is cooling down, full or open
    /// (unless `breaker` is false).
    pub fn lease(self: &Arc<Self>, now: Instant, breaker: bool) -> Option<Lease> {
        if self.busy(now, false).is_some() {
            return None;
        }
        let limit = self.limit;
        self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < limit).then_some(n + 1)).ok()?;
        let probe = match self.breaker.lock().expect("not poisoned").admit(now) {
            Admit::Yes => false,
            Admit::Probe => true,
            Admit::No if !breaker => false,
            Admit::No => {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
        };
        Some(Lease { health: self.clone(), probe, started: now, verdict: Verdict::Pending })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pending,
    Answered,
    Failed,
}

/// One call in flight on a target. Dropping it ends the call (the count of
/// calls in flight goes down): the pipeline keeps it until the answer's last
/// byte, so a stream counts as in flight as long as it runs.
pub struct Lease {
    health: Arc<Health>,
    probe: bool,
    started: Instant,
    verdict: Verdict,
}

impl Lease {
    /// The upstream answered (response headers): a success for the breaker,
    /// and a latency observation. Returns the time to first byte.
    pub fn answered(&mut self) -> Duration {
        let now = Instant::now();
        let took = now.saturating_duration_since(self.started);
        self.health.observe(took, now);
        self.health.breaker.lock().expect("not poisoned").success(now);
        self.verdict = Verdict::Answered;
        took
    }

    /// The call failed (before or after its first byte): a failure for the
    /// breaker, or with `cool_down` (a 429) a pause without one.
    pub fn failed(&mut self, cool_down: Option<Duration>) {
        if self.verdict == Verdict::Failed {
            return;
        }
        let now = Instant::now();
        match cool_down {
            Some(pause) => {
                let until = self.health.ms(now + pause.min(MAX_COOL_DOWN));
                self.health.cool_until_ms.fetch_max(until, Ordering::Relaxed);
                // The upstream is healthy, only busy: a probe still closes.
                if self.probe && self.verdict == Verdict::Pending {
                    self.health.breaker.lock().expect("not poisoned").abandon_probe();
                }
            }
            None => self.health.breaker.lock().expect("not poisoned").failure(now),
        }
        self.verdict = Verdict::Failed;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.probe && self.verdict == Verdict::Pending {
            self.health.breaker.lock().expect("not poisoned").abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(limit: Option<u32>) -> Arc<Health> {
        let config = RoutingConfig { consecutive_failures: 2, ..RoutingConfig::default() };
        Arc::new(Health::new(config, limit))
    }

    #[test]
    fn a_lease_counts_in_flight_until_dropped_and_a_limit_refuses_more() {
        let h = health(Some(2));
        let now = Instant::now();
        let a = h.lease(now, true).unwrap();
        let _b = h.lease(now, true).unwrap();
        assert_eq!(h.in_flight(), 2);
        assert_eq!(h.busy(now, true), Some(Busy::Full));
        assert!(h.lease(now, true).is_none());
        drop(a);
        assert_eq!(h.in_flight(), 1);
        assert!(h.lease(now, true).is_some());
    }

    #[test]
    fn a_cool_down_skips_the_target_for_its_length_without_opening_the_breaker() {
        let h = health(None);
        let now = Instant::now();
        h.lease(now, true).unwrap().failed(Some(Duration::from_secs(30)));
        match h.busy(Instant::now(), true) {
            Some(Busy::CoolingFor(d)) => assert!(d > Duration::from_secs(29), "{d:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.breaker_state(), 0);
        assert!(h.lease(Instant::now(), false).is_none(), "a cool-down holds even when the breaker is ignored");
    }

    #[test]
    fn failures_open_the_breaker_and_ignoring_it_still_leases() {
        let h = health(None);
        for _ in 0..2 {
            h.lease(Instant::now(), true).unwrap().failed(None);
        }
        assert_eq!(h.breaker_state(), 1);
        assert_eq!(h.busy(Instant::now(), true), Some(Busy::Open));
        assert!(h.lease(Instant::now(), true).is_none());
        assert!(h.lease(Instant::now(), false).is_some());
    }

    #[test]
    fn latency_rises_at_once_falls_gradually_and_decays_while_idle() {
        let h = health(None);
        let now = Instant::now();
        h.observe(Duration::from_millis(100), now);
        assert!((h.latency_us(now) - 100_000.0).abs() < 1.0);
        h.observe(Duration::from_millis(10), now);
        let after = h.latency_us(now);
        assert!(after > 70_000.0 && after < 100_000.0, "{after}");
        let idle = h.latency_us(now + Duration::from_secs(30));
        assert!(idle < after / 10.0, "{idle}");
    }
}
