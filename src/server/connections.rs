//! The process's client connections: one bound shared by every worker, what
//! each connection is doing, and which idle one to close when the bound is hit.
//!
//! Why here and not in hyper: hyper's HTTP/1 header timeout starts only once
//! the version sniff of hyper-util's auto builder has seen bytes, and h2 has no
//! idle timer at all (keep-alive pings keep an idle h2 connection open
//! forever). So every connection carries a [`Conn`] that the server's service
//! updates — requests in flight, and since when it has had none — and a
//! watchdog ([`Conn::stalled`]) closes it when it has been idle too long:
//! `header_read_timeout` before its first request (first byte, version sniff,
//! h2 preface and settings, HTTP/1 headers all fall inside it), `idle_timeout`
//! after a request (keep-alive, h2 with pings). A request in flight is never
//! timed out here: its body read and its upstream call have their own bounds.
//!
//! The bound: `max_connections` permits in one semaphore shared by all
//! workers, so the process never holds more, whichever worker the kernel hands
//! a connection to. A connection that finds no permit first asks the idle
//! connection that has waited longest to close (what nginx does with its
//! keep-alive connections when it runs short), then waits — fairly, in arrival
//! order across workers — for up to `header_read_timeout`. At most
//! `max_connections` (at least 1024) more may wait; beyond that a new
//! connection is closed at once. So silent sockets cannot starve real clients: each new arrival pushes
//! out the stalest idle one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How often a connection waiting for a slot looks again for an idle one to
/// push out (none may have been idle when it arrived).
const EVICT_RETRY: Duration = Duration::from_millis(250);

/// Connections that may wait for a slot at least, however small the bound:
/// at the bound every newcomer waits for the one it pushed out to close.
const MIN_WAITING: usize = 1024;

/// Every open client connection of the process.
pub struct Connections {
    /// One permit per open connection, shared by all workers.
    slots: Arc<Semaphore>,
    /// Connections waiting for a permit, bounded by `max_waiting`.
    waiting: AtomicUsize,
    max_waiting: usize,
    /// id → connection. A std mutex: held for one insert or remove per
    /// connection, or one scan when the bound is hit; never across an await.
    table: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

/// One connection's progress, shared by its service (which counts requests)
/// and its watchdog.
pub struct Conn {
    id: u64,
    /// Requests in flight: from the service call until the response body is
    /// dropped (sent, or abandoned by the client).
    active: AtomicU32,
    /// Milliseconds after `epoch` when `active` last became 0.
    idle_since_ms: AtomicU64,
    /// Requests answered so far (0: the first request's bound applies).
    served: AtomicU64,
    /// Whether the client has sent a byte yet (set by [`super::io::Watched`]).
    heard: AtomicBool,
    /// Cancelled when another connection needs this one's permit.
    evicted: CancellationToken,
    epoch: Instant,
}

/// A connection's permit; dropping it frees the slot and forgets the connection.
pub struct Slot {
    pub conn: Arc<Conn>,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

/// Marks one request in flight until dropped.
pub struct InFlight(Arc<Conn>);

/// Why a connection is closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// No request (or no next request) arrived within its bound.
    Idle,
    /// Closed to make room for a new connection at the bound.
    Evicted,
}

impl Connections {
    pub fn new(max_connections: usize) -> Arc<Connections> {
        Arc::new(Connections {
            slots: Arc::new(Semaphore::new(max_connections)),
            waiting: AtomicUsize::new(0),
            max_waiting: max_connections.max(MIN_WAITING),
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// A slot for a just-accepted connection: at once when one is free, else
    /// after an idle connection made room, within `wait`; `None` means close it.
    pub async fn admit(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
                let permit = self.wait_for_a_slot(wait).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                permit?
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            active: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            served: AtomicU64::new(0),
            heard: AtomicBool::new(false),
            evicted: CancellationToken::new(),
            epoch: self.epoch,
        });
        self.lock().insert(id, conn.clone());
        Some(Slot { conn, connections: self.clone(), _permit: permit })
    }

    /// Waits for a permit, asking an idle connection to make room now and
    /// every [`EVICT_RETRY`].
    async fn wait_for_a_slot(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let deadline = Instant::now() + wait;
        let acquire = self.slots.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            self.evict_stalest_idle();
            let next_try = (Instant::now() + EVICT_RETRY).min(deadline);
            tokio::select! {
                permit = &mut acquire => return permit.ok(),
                _ = tokio::time::sleep_until(next_try) => {
                    if next_try >= deadline {
                        return None;
                    }
                }
            }
        }
    }

    /// Open connections of the whole process.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// Asks an idle connection (no request in flight) to close: one that has
    /// sent nothing first, then one with a request under way, then an idle
    /// keep-alive one; the longest idle first. A client that has just
    /// connected is the newest, so it is the last of its kind to go.
    fn evict_stalest_idle(&self) {
        let table = self.lock();
        let stalest = table
            .values()
            .filter(|c| c.active.load(Ordering::Acquire) == 0 && !c.evicted.is_cancelled())
            .min_by_key(|c| {
                let heard = c.heard.load(Ordering::Acquire);
                (heard, c.served.load(Ordering::Acquire) > 0, c.idle_since_ms.load(Ordering::Acquire))
            });
        if let Some(conn) = stalest {
            conn.evicted.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.conn.id);
    }
}

impl Conn {
    /// Counts a request in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Notes that the client sent something (first time only: one load after).
    pub fn heard(&self) {
        if !self.heard.load(Ordering::Relaxed) {
            self.heard.store(true, Ordering::Release);
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Resolves when the connection should be closed: it has had no request
    /// in flight for `first` (before its first request) or `idle` (after
    /// one), or it was evicted. It wakes on its own clock — at most once per
    /// the shorter bound — never per request (measured: a wake-up per
    /// request, to restart the idle timer, cost more CPU than the rest of
    /// this table), so an idle connection closes within `idle` plus that
    /// period after its last request.
    pub async fn stalled(&self, first: Duration, idle: Duration) -> Stall {
        let period = first.min(idle);
        loop {
            let bound = if self.served.load(Ordering::Acquire) == 0 { first } else { idle };
            let wait = if self.active.load(Ordering::Acquire) > 0 {
                period
            } else {
                let idle_for = self.now_ms().saturating_sub(self.idle_since_ms.load(Ordering::Acquire));
                match bound.checked_sub(Duration::from_millis(idle_for)) {
                    Some(left) if !left.is_zero() => left.min(period),
                    _ => return Stall::Idle,
                }
            };
            tokio::select! {
                biased;
                _ = self.evicted.cancelled() => return Stall::Evicted,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.served.fetch_add(1, Ordering::AcqRel);
        conn.idle_since_ms.store(conn.now_ms(), Ordering::Release);
        conn.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_stalls_after_its_bound_a_busy_one_never() {
        let connections = Connections::new(4);
        let slot = connections.admit(Duration::ZERO).await.unwrap();
        let conn = slot.conn.clone();
        let started = tokio::time::Instant::now();
        assert_eq!(conn.stalled(Duration::from_secs(1), Duration::from_secs(60)).await, Stall::Idle);
        assert!(started.elapsed() >= Duration::from_secs(1));

        let request = conn.begin();
        let busy = tokio::time::timeout(
            Duration::from_secs(600),
            conn.stalled(Duration::from_secs(1), Duration::from_secs(60)),
        );
        assert!(busy.await.is_err(), "a request in flight is never timed out by the watchdog");
        drop(request);
        let started = tokio::time::Instant::now();
        assert_eq!(conn.stalled(Duration::from_secs(1), Duration::from_secs(60)).await, Stall::Idle);
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(60), "after a request the keep-alive bound applies");
        assert!(took <= Duration::from_secs(61), "within the bound plus one wake-up period: {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_bound_a_newcomer_pushes_out_a_silent_connection_first() {
        let connections = Connections::new(2);
        let talking = connections.admit(Duration::ZERO).await.unwrap();
        talking.conn.heard();
        tokio::time::advance(Duration::from_millis(10)).await;
        let silent = connections.admit(Duration::ZERO).await.unwrap();
        assert_eq!(connections.open(), 2);

        // The silent one goes, though it is the newer; the newcomer gets its
        // permit once it has closed.
        let (got, waiter) = tokio::sync::oneshot::channel();
        let tasks = crate::tasks::Tasks::on_current_runtime();
        {
            let connections = connections.clone();
            tasks.spawn(async move {
                let _ = got.send(connections.admit(Duration::from_secs(5)).await);
            });
        }
        let silent_conn = silent.conn.clone();
        assert_eq!(silent_conn.stalled(Duration::from_secs(100), Duration::from_secs(100)).await, Stall::Evicted);
        assert!(!talking.conn.evicted.is_cancelled());
        drop(silent);
        let newcomer = waiter.await.unwrap().expect("the waiter got the evicted connection's permit");

        // Everything busy: nothing is pushed out; a newcomer waits its bound,
        // then is turned away.
        let (_busy, _busy_too) = (talking.conn.begin(), newcomer.conn.begin());
        assert!(connections.admit(Duration::from_secs(1)).await.is_none());
        assert!(!talking.conn.evicted.is_cancelled() && !newcomer.conn.evicted.is_cancelled());
        assert_eq!(connections.open(), 2);
    }
}
