//! Writes the worker's decisions (delivered, retry later, put back, dropped;
//! with the attempt to record) to the delivery queue in batches: whatever was
//! decided while one write was in flight goes into the next, so a busy worker
//! makes one store write per batch instead of one per delivery, and an
//! endpoint's slot is free again as soon as its answer came.
//!
//! At least once still holds: until its decision is written a delivery stays
//! claimed in the store, so a replica that dies first leaves it to be claimed
//! again (and delivered twice, the same `webhook-id` both times).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::events::store::{DeliveryQueue, Finished};
use crate::tasks::Tasks;

/// The most decisions written in one store call.
const BATCH: usize = 256;
/// Writes of one batch before it is left to the claim timeout (a store that
/// refuses it for this long is down; the deliveries are claimed again later).
const WRITES: u32 = 3;
/// The wait before the second write of a batch; doubled for the third.
const REWRITE_AFTER: Duration = Duration::from_millis(100);

/// The sending side; the writing task ends when every sender is gone, after
/// writing what was sent (so shutdown, which waits for it, loses nothing).
pub(super) struct Finisher {
    sender: mpsc::UnboundedSender<Finished>,
}

impl Finisher {
    pub fn start(queue: Arc<dyn DeliveryQueue>, tasks: &Tasks) -> Finisher {
        let (sender, receiver) = mpsc::unbounded_channel();
        tasks.spawn(write(queue, receiver));
        Finisher { sender }
    }

    /// Hands a decision over; never waits.
    pub fn send(&self, finished: Finished) {
        // The writer only stops once every sender is gone.
        let _ = self.sender.send(finished);
    }
}

async fn write(queue: Arc<dyn DeliveryQueue>, mut receiver: mpsc::UnboundedReceiver<Finished>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let mut wait = REWRITE_AFTER;
        for write in 1..=WRITES {
            match queue.finish(&batch).await {
                Ok(()) => break,
                Err(e) if write == WRITES => {
                    tracing::warn!(error = %e, deliveries = batch.len(),
                        "cannot record webhook deliveries; they will be claimed again");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "recording webhook deliveries failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        batch.clear();
    }
}
