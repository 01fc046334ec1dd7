//! Wall-clock time for everything calendar-shaped (monthly refreshes, usage
//! days, reservation expiry), behind a trait so tests can move it.
//!
//! Rate limiting does not use it: governor keeps its own monotonic clock, and
//! the Redis limiter uses the Redis server's `TIME`, one clock for all replicas.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Parses an IANA time zone name (`Europe/Berlin`).
pub fn parse_time_zone(name: &str) -> Option<chrono_tz::Tz> {
    name.parse().ok()
}

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that only moves when told to; for tests of month boundaries.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now_ms)))
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
