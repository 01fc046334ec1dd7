//! Each endpoint's deliveries on this replica: its window (how many attempts
//! it may have in flight now), the attempts running, and a local line of
//! claimed deliveries its running tasks take next (four per slot of the
//! window, two while it is failing).
//!
//! The window moves between `webhooks.per_endpoint_concurrency` (where every
//! endpoint starts) and `webhooks.max_per_endpoint_concurrency`: a success
//! while deliveries wait in the line widens it by one, a failure worth a retry
//! (no answer, timeout, 408, 429, 5xx) halves it. So a receiver that keeps up
//! is sent as much as it takes, and one that slows down, refuses or hangs is
//! quickly back to a few slots — it never holds more than its window and line
//! of this replica's `max_in_flight`, and every other endpoint keeps its pace.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::events::store::Delivery;
use crate::events::Webhook;

/// An endpoint's line holds this many deliveries per slot of its window, so
/// the next claim's answer arrives before the line runs dry...
const LINE_FACTOR: usize = 4;
/// ... and this many once it has failed (until its next success), so that a
/// delivery lined up behind an endpoint that hangs waits at most for the
/// attempts in flight and two more rounds: about three times `timeout_ms`.
const FAILING_LINE_FACTOR: usize = 2;

/// A claimed delivery and its webhook (`None`: deleted, or could not be read).
pub(super) type Claimed = (Delivery, Option<Arc<Webhook>>);

/// The bounds of every endpoint's window (from `[webhooks]`, read per use so
/// a reload applies at once).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub floor: usize,
    pub ceiling: usize,
}

impl Bounds {
    fn clamp(self, window: usize) -> usize {
        window.clamp(self.floor, self.ceiling.max(self.floor))
    }
}

/// What one attempt says about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    /// A 2xx: the endpoint keeps up.
    Success,
    /// No answer or one asking to slow down: the window halves.
    Backoff,
    /// Nothing about its pace (a 4xx, no attempt made).
    Neutral,
}

/// Where a claimed delivery went.
pub(super) enum Placed {
    /// Start a task for it: the endpoint's window has room.
    Run(Claimed),
    /// In the endpoint's line.
    Lined,
    /// The line is full: put it back.
    Full(Delivery),
}

/// What a task does after its delivery.
pub(super) struct After {
    /// Its next delivery; `None`: the task ends.
    pub next: Option<Claimed>,
    /// Deliveries to start in tasks of their own (the window widened).
    pub more: Vec<Claimed>,
    /// Deliveries beyond the line of a window that narrowed: to put back, so
    /// none waits behind more than two rounds of attempts.
    pub evicted: Vec<Delivery>,
    /// The line has room worth a claim.
    pub room: bool,
}

/// A new endpoint's worth of deliveries: its first window and line.
fn fresh(bounds: Bounds) -> usize {
    bounds.floor * (1 + LINE_FACTOR)
}

#[derive(Default)]
pub(super) struct Endpoints(Mutex<HashMap<String, Endpoint>>);

struct Endpoint {
    window: usize,
    running: usize,
    /// This replica disabled it: what is still lined up is dropped, not sent.
    disabled: bool,
    /// Its last attempt worth a retry failed and no success came since.
    failing: bool,
    line: VecDeque<Claimed>,
}

impl Endpoint {
    /// How many deliveries its line may hold.
    fn line_cap(&self) -> usize {
        self.window * if self.failing { FAILING_LINE_FACTOR } else { LINE_FACTOR }
    }

    fn capacity(&self) -> usize {
        self.window + self.line_cap()
    }

    /// How many deliveries its line may hold once a claim's are placed: its
    /// cap, and for a healthy endpoint the new endpoint's worth each claim
    /// adds to the room (see [`Endpoints::room`]), which would otherwise go
    /// back and come round again behind the whole queue.
    fn line_limit(&self, bounds: Bounds) -> usize {
        self.line_cap() + if self.failing { 0 } else { fresh(bounds) }
    }

    /// The line's next delivery, without its webhook once disabled.
    fn take(&mut self) -> Option<Claimed> {
        let disabled = self.disabled;
        self.line.pop_front().map(|(d, w)| (d, w.filter(|_| !disabled)))
    }
}

impl Endpoints {
    /// Runs `claimed` now, lines it up, or says it does not fit.
    pub fn place(&self, claimed: Claimed, bounds: Bounds) -> Placed {
        let mut endpoints = self.0.lock().expect("endpoints lock");
        let e = endpoints.entry(claimed.0.webhook.clone()).or_insert_with(|| Endpoint {
            window: bounds.floor,
            running: 0,
            disabled: false,
            failing: false,
            line: VecDeque::new(),
        });
        e.window = bounds.clamp(e.window);
        if e.running < e.window {
            e.running += 1;
            Placed::Run(claimed)
        } else if e.line.len() < e.line_limit(bounds) {
            e.line.push_back(claimed);
            Placed::Lined
        } else {
            Placed::Full(claimed.0)
        }
    }

    /// After one of `webhook`'s deliveries: moves its window by `signal` and
    /// hands the task its next delivery (and any the wider window lets start).
    pub fn after(&self, webhook: &str, signal: Signal, disabled: bool, bounds: Bounds) -> After {
        let mut endpoints = self.0.lock().expect("endpoints lock");
        let e = endpoints.get_mut(webhook).expect("a running endpoint is listed");
        e.disabled |= disabled;
        let window = match signal {
            Signal::Success => {
                e.failing = false;
                if e.line.is_empty() {
                    e.window
                } else {
                    e.window + 1
                }
            }
            Signal::Backoff => {
                e.failing = true;
                e.window / 2
            }
            Signal::Neutral => e.window,
        };
        e.window = bounds.clamp(window);
        let keep = e.line_limit(bounds);
        let evicted: Vec<Delivery> =
            if e.line.len() > keep { e.line.drain(keep..).map(|(d, _)| d).collect() } else { Vec::new() };
        let next = e.take();
        if next.is_none() {
            e.running -= 1;
            if e.running == 0 {
                endpoints.remove(webhook);
            }
            return After { next, more: Vec::new(), evicted, room: true };
        }
        let mut more = Vec::new();
        while e.running < e.window {
            let Some(claimed) = e.take() else { break };
            e.running += 1;
            more.push(claimed);
        }
        let room = e.line.len() <= keep / 2;
        After { next, more, evicted, room }
    }

    /// How many deliveries a claim should take: the room left in every active
    /// endpoint's window and line, and a new endpoint's worth. A claim much
    /// larger would mostly be put back when one busy endpoint is all there is.
    pub fn room(&self, bounds: Bounds) -> usize {
        let endpoints = self.0.lock().expect("endpoints lock");
        endpoints.values().map(|e| e.capacity().saturating_sub(e.running + e.line.len())).sum::<usize>() + fresh(bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(webhook: &str, n: usize) -> Claimed {
        let d = Delivery {
            webhook: webhook.into(),
            workspace: "ws".into(),
            event_id: format!("evt_{n}"),
            event_type: "request.completed".into(),
            body: "{}".into(),
            attempts: 0,
            queued_at_ms: 0,
            handle: n.to_string(),
        };
        (d, None)
    }

    const BOUNDS: Bounds = Bounds { floor: 2, ceiling: 8 };

    /// Places `n` deliveries for `webhook`: how many ran, were lined, did not fit.
    fn place(e: &Endpoints, webhook: &str, n: usize) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for i in 0..n {
            match e.place(delivery(webhook, i), BOUNDS) {
                Placed::Run(_) => counts.0 += 1,
                Placed::Lined => counts.1 += 1,
                Placed::Full(_) => counts.2 += 1,
            }
        }
        counts
    }

    #[test]
    fn an_endpoint_starts_at_the_floor_with_a_line_four_times_its_window() {
        let e = Endpoints::default();
        assert_eq!(place(&e, "a", 24), (2, 18, 4), "a line of 8, and a claim's new-endpoint worth (10) past it");
        assert_eq!(e.room(BOUNDS), 10, "a full endpoint leaves only a new endpoint's worth");
        assert_eq!(place(&e, "b", 1), (1, 0, 0), "another endpoint has slots of its own");
    }

    #[test]
    fn successes_with_a_line_widen_the_window_up_to_the_ceiling() {
        let e = Endpoints::default();
        place(&e, "a", 6);
        let after = e.after("a", Signal::Success, false, BOUNDS);
        assert!(after.next.is_some());
        assert_eq!(after.more.len(), 1, "window 3: one more task starts");
        // Keep the line full and succeed: the window stops at the ceiling.
        for _ in 0..40 {
            place(&e, "a", 4);
            let after = e.after("a", Signal::Success, false, BOUNDS);
            assert!(after.next.is_some());
        }
        let endpoints = e.0.lock().unwrap();
        let a = &endpoints["a"];
        assert_eq!(a.window, 8);
        assert_eq!(a.running, 8);
        assert!(a.line.len() <= 32 + 10);
    }

    #[test]
    fn a_failure_halves_the_window_and_never_below_the_floor() {
        let e = Endpoints::default();
        place(&e, "a", 24);
        for _ in 0..6 {
            place(&e, "a", 2);
            e.after("a", Signal::Success, false, BOUNDS);
        }
        assert_eq!(e.0.lock().unwrap()["a"].window, 8);
        let (_, _, full) = place(&e, "a", 50);
        assert!(full > 0);
        assert_eq!(e.0.lock().unwrap()["a"].line.len(), 42);
        let after = e.after("a", Signal::Backoff, false, BOUNDS);
        assert_eq!(e.0.lock().unwrap()["a"].window, 4);
        assert_eq!(after.evicted.len(), 34, "a failing endpoint's line keeps twice the narrower window, no slack");
        assert_eq!(e.0.lock().unwrap()["a"].line.len(), 7, "and hands the task its next");
        for _ in 0..3 {
            e.after("a", Signal::Backoff, false, BOUNDS);
        }
        assert_eq!(e.0.lock().unwrap()["a"].window, 2);
        // Neutral answers and successes without a line leave it alone.
        e.after("a", Signal::Neutral, false, BOUNDS);
        assert_eq!(e.0.lock().unwrap()["a"].line_cap(), 4, "failing: twice the window");
        assert_eq!(e.0.lock().unwrap()["a"].window, 2);
    }

    #[test]
    fn an_endpoint_is_forgotten_when_its_last_task_ends_and_lined_ones_of_a_disabled_one_lose_their_webhook() {
        let e = Endpoints::default();
        let webhook = Arc::new(Webhook {
            id: "a".into(),
            workspace: "ws".into(),
            url: "https://example.com/hook".into(),
            events: vec!["*".into()],
            description: None,
            secret: crate::secret::Secret::new("whsec_test".into()),
            previous_secret: None,
            previous_until_ms: None,
            created_at: 0,
            disabled_at: None,
            disabled_reason: None,
            failures: 0,
        });
        let mut first = delivery("a", 0);
        first.1 = Some(webhook.clone());
        let mut second = delivery("a", 1);
        second.1 = Some(webhook.clone());
        assert!(matches!(e.place(first, Bounds { floor: 1, ceiling: 1 }), Placed::Run(_)));
        assert!(matches!(e.place(second, Bounds { floor: 1, ceiling: 1 }), Placed::Lined));
        let after = e.after("a", Signal::Neutral, true, Bounds { floor: 1, ceiling: 1 });
        let (_, w) = after.next.expect("the lined delivery");
        assert!(w.is_none(), "dropped, not sent");
        let after = e.after("a", Signal::Neutral, false, Bounds { floor: 1, ceiling: 1 });
        assert!(after.next.is_none() && after.room);
        assert!(e.0.lock().unwrap().is_empty());
    }
}
