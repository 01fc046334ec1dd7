//! The in-memory side of events: a bounded queue that emitters never wait on,
//! drained in batches into the [`EventLog`].
//!
//! Overload: when the queue is full, an emitter pushes the event onto an
//! overflow list (one short mutex section, no `.await`) and, if no spill task
//! is running, starts one on the control runtime that appends the overflow to
//! the store in batches. Nothing is dropped and no request waits; the cost of
//! overload is more, smaller store writes and the memory of events not yet
//! written, both visible in [`BusStats`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::{Event, EventLog};

/// Counters for the README's overload figures and the logs.
#[derive(Debug, Default)]
pub struct BusStats {
    pub emitted: AtomicU64,
    /// Events that found the queue full and went through the overflow.
    pub spilled: AtomicU64,
    /// Events written to the store.
    pub stored: AtomicU64,
    /// Webhook delivery attempts by result, in [`ATTEMPT_RESULTS`]' order.
    pub attempts: [AtomicU64; 4],
}

/// What a webhook delivery attempt can end as (`/metrics` labels).
pub const ATTEMPT_RESULTS: [&str; 4] = ["delivered", "retrying", "failed", "disabled"];

impl BusStats {
    /// Counts one attempt that ended as `result` (one of [`ATTEMPT_RESULTS`]).
    pub fn attempt(&self, result: &str) {
        if let Some(i) = ATTEMPT_RESULTS.iter().position(|r| *r == result) {
            self.attempts[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct EventBus {
    sender: mpsc::Sender<Event>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    overflow: Arc<Mutex<Vec<Event>>>,
    spilling: Arc<AtomicBool>,
    log: Arc<dyn EventLog>,
    /// Where spill tasks run (the control runtime, which outlives the workers).
    tasks: crate::tasks::Tasks,
    batch_size: usize,
    retry: Duration,
    /// Woken when deliveries were queued, so the local worker starts at once.
    pub deliveries_queued: Arc<Notify>,
    pub stats: Arc<BusStats>,
}

impl EventBus {
    pub fn new(
        log: Arc<dyn EventLog>,
        capacity: usize,
        batch_size: usize,
        retry: Duration,
        tasks: crate::tasks::Tasks,
    ) -> EventBus {
        let (sender, receiver) = mpsc::channel(capacity);
        EventBus {
            sender,
            receiver: tokio::sync::Mutex::new(receiver),
            overflow: Arc::default(),
            spilling: Arc::default(),
            log,
            tasks,
            batch_size,
            retry,
            deliveries_queued: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Hands an event over; never blocks, never drops.
    pub fn emit(&self, event: Event) {
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        let event = match self.sender.try_send(event) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e)) => e,
        };
        self.stats.spilled.fetch_add(1, Ordering::Relaxed);
        self.overflow.lock().expect("overflow lock").push(event);
        if !self.spilling.swap(true, Ordering::AcqRel) {
            let spill = Spill {
                overflow: self.overflow.clone(),
                spilling: self.spilling.clone(),
                log: self.log.clone(),
                batch_size: self.batch_size,
                retry: self.retry,
                notify: self.deliveries_queued.clone(),
                stats: self.stats.clone(),
            };
            self.tasks.spawn(spill.run());
        }
    }

    /// Appends everything queued, until `stop` is set: the drain task. It
    /// stops only between batches, or while a batch waits for a store that
    /// refuses it — then the batch goes back to the overflow, so the last
    /// [`EventBus::flush`] writes it. Cancelling this future instead could
    /// lose the batch it holds.
    pub async fn drain(&self, mut stop: watch::Receiver<bool>) {
        let mut receiver = self.receiver.lock().await;
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            let received = tokio::select! {
                biased;
                () = stopped(&mut stop) => return,
                n = receiver.recv_many(&mut batch, self.batch_size) => n,
            };
            if received == 0 {
                // Every sender is gone (the bus lives in the app): nothing more comes.
                stopped(&mut stop).await;
                return;
            }
            let stored = append_until_stored(
                &*self.log,
                &batch,
                self.retry,
                &self.stats,
                &self.deliveries_queued,
                Some(&mut stop),
            )
            .await;
            if !stored {
                let mut overflow = self.overflow.lock().expect("overflow lock");
                overflow.splice(0..0, batch.drain(..));
                return;
            }
            batch.clear();
        }
    }

    /// Writes what is still queued (shutdown), within `limit`.
    pub async fn flush(&self, limit: Duration) {
        let work = async {
            let mut batch = Vec::new();
            if let Ok(mut receiver) = self.receiver.try_lock() {
                while let Ok(e) = receiver.try_recv() {
                    batch.push(e);
                }
            }
            batch.append(&mut self.overflow.lock().expect("overflow lock"));
            for chunk in batch.chunks(self.batch_size) {
                append_until_stored(&*self.log, chunk, self.retry, &self.stats, &self.deliveries_queued, None).await;
            }
            // A spill task holding a batch of its own finishes it here (it
            // runs on this runtime, which stops polling it once we return).
            while self.spilling.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        if tokio::time::timeout(limit, work).await.is_err() {
            tracing::error!("events still queued at shutdown could not be stored within {limit:?}");
        }
    }
}

struct Spill {
    overflow: Arc<Mutex<Vec<Event>>>,
    spilling: Arc<AtomicBool>,
    log: Arc<dyn EventLog>,
    batch_size: usize,
    retry: Duration,
    notify: Arc<Notify>,
    stats: Arc<BusStats>,
}

impl Spill {
    async fn run(self) {
        loop {
            let batch: Vec<Event> = {
                let mut overflow = self.overflow.lock().expect("overflow lock");
                let n = overflow.len().min(self.batch_size);
                overflow.drain(..n).collect()
            };
            if batch.is_empty() {
                self.spilling.store(false, Ordering::Release);
                // An emitter may have pushed after the check and seen `spilling` set.
                if self.overflow.lock().expect("overflow lock").is_empty() || self.spilling.swap(true, Ordering::AcqRel)
                {
                    return;
                }
                continue;
            }
            append_until_stored(&*self.log, &batch, self.retry, &self.stats, &self.notify, None).await;
        }
    }
}

/// Resolves once `stop` is set; never if its sender is gone without setting it.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Appends a batch, retrying while the store is unavailable: events are
/// only dropped if the process dies meanwhile. `false` when `stop` was set
/// while the store kept refusing (the caller keeps the batch).
async fn append_until_stored(
    log: &dyn EventLog,
    batch: &[Event],
    retry: Duration,
    stats: &BusStats,
    notify: &Notify,
    mut stop: Option<&mut watch::Receiver<bool>>,
) -> bool {
    loop {
        match log.append(batch).await {
            Ok(deliveries) => {
                stats.stored.fetch_add(batch.len() as u64, Ordering::Relaxed);
                if deliveries > 0 {
                    notify.notify_one();
                }
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, events = batch.len(), "cannot store events; retrying");
                match stop.as_deref_mut() {
                    Some(stop) => {
                        if tokio::time::timeout(retry, stopped(stop)).await.is_ok() {
                            return false;
                        }
                    }
                    None => tokio::time::sleep(retry).await,
                }
            }
        }
    }
}
