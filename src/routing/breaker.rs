//! A circuit breaker as a plain state machine: no clock of its own and no
//! locking, so every transition is unit-tested with made-up instants. The
//! caller ([`super::health::Health`]) holds it behind a short mutex.
//!
//! Closed counts outcomes; it opens on `consecutive_failures` in a row, or
//! when a window of at least `min_calls` calls failed at `error_rate` or
//! more (tumbling windows: cheap, and a burst of errors is not diluted by an
//! hour of successes). Open skips the target for `open_for`; then one probe
//! is let through (half-open): its success closes the breaker, its failure
//! opens it again for another `open_for`.

use std::time::Instant;

use crate::config::RoutingConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// Open time is over; `probing` while the one trial call is out.
    HalfOpen {
        probing: bool,
    },
}

/// What the breaker says to a call about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, as the half-open probe: its outcome decides the state.
    Probe,
    No,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: RoutingConfig,
    state: State,
    consecutive: u32,
    window_start: Instant,
    calls: u32,
    failures: u32,
}

impl Breaker {
    pub fn new(config: RoutingConfig, now: Instant) -> Breaker {
        Breaker { config, state: State::Closed, consecutive: 0, window_start: now, calls: 0, failures: 0 }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a call may start now, without starting one (for choosing).
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { probing } => !probing,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed => Admit::Yes,
            State::Open { until } if now < until => Admit::No,
            State::HalfOpen { probing: true } => Admit::No,
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Admit::Probe
            }
        }
    }

    pub fn success(&mut self, now: Instant) {
        if matches!(self.state, State::HalfOpen { .. }) {
            *self = Breaker::new(self.config, now);
            return;
        }
        self.count(now, false);
        self.consecutive = 0;
    }

    pub fn failure(&mut self, now: Instant) {
        if self.state != State::Closed {
            // A failed probe (or a call that started before the breaker
            // opened) keeps it open for another period.
            self.state = State::Open { until: now + self.config.open_for };
            return;
        }
        self.count(now, true);
        self.consecutive += 1;
        let c = &self.config;
        let rate_tripped =
            self.calls >= c.min_calls && f64::from(self.failures) >= c.error_rate * f64::from(self.calls);
        if self.consecutive >= c.consecutive_failures || rate_tripped {
            self.state = State::Open { until: now + c.open_for };
        }
    }

    /// The probe ended without a verdict (the client went away first): the
    /// next call may probe instead.
    pub fn abandon_probe(&mut self) {
        if self.state == (State::HalfOpen { probing: true }) {
            self.state = State::HalfOpen { probing: false };
        }
    }

    fn count(&mut self, now: Instant, failed: bool) {
        if now.saturating_duration_since(self.window_start) >= self.config.window {
            self.window_start = now;
            self.calls = 0;
            self.failures = 0;
        }
        self.calls += 1;
        self.failures += u32::from(failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> RoutingConfig {
        RoutingConfig {
            consecutive_failures: 3,
            error_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
        }
    }

    #[test]
    fn opens_on_failures_in_a_row_and_a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        b.failure(t0);
        b.failure(t0);
        b.success(t0);
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.state(), State::Closed, "two in a row since the success");
        b.failure(t0);
        assert_eq!(b.state(), State::Open { until: t0 + Duration::from_secs(5) });
        assert_eq!(b.admit(t0 + Duration::from_secs(4)), Admit::No);
        assert!(!b.would_admit(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn opens_on_an_error_rate_once_the_window_has_enough_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        // Alternating: never three in a row, but half of the calls fail.
        for i in 0..9 {
            if i % 2 == 0 {
                b.failure(t0);
            } else {
                b.success(t0);
            }
        }
        assert_eq!(b.state(), State::Closed, "nine calls: below min_calls");
        b.success(t0);
        b.failure(t0);
        assert!(matches!(b.state(), State::Open { .. }), "6 of 11 failed");
    }

    #[test]
    fn a_new_window_forgets_the_old_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..9 {
            b.success(t0);
            b.failure(t0);
            b.success(t0);
        }
        let later = t0 + Duration::from_secs(11);
        for _ in 0..2 {
            b.failure(later);
            b.success(later);
        }
        assert_eq!(b.state(), State::Closed, "4 calls in the new window");
    }

    #[test]
    fn one_probe_after_the_open_time_decides() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..3 {
            b.failure(t0);
        }
        let t1 = t0 + Duration::from_secs(5);
        assert!(b.would_admit(t1));
        assert_eq!(b.admit(t1), Admit::Probe);
        assert_eq!(b.admit(t1), Admit::No, "only one probe at a time");
        b.failure(t1);
        assert_eq!(b.state(), State::Open { until: t1 + Duration::from_secs(5) }, "a failed probe reopens");
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(b.admit(t2), Admit::Probe);
        b.success(t2);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.admit(t2), Admit::Yes);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..3 {
            b.failure(t0);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(t1), Admit::Probe);
        b.abandon_probe();
        assert_eq!(b.admit(t1), Admit::Probe);
    }
}
