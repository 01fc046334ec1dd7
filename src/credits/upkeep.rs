//! The ledger's background work: the periodic write-behind flush and the
//! reaper of reservations whose settle never came, and the bounded last
//! flush at shutdown. Separate because it runs off the request path, on the
//! control runtime.

use super::Meter;

/// The ledger's background work, forever: the write-behind flush every
/// `credits.flush_interval_ms` and the reaper every `credits.reaper_interval_ms`.
/// Runs on the control runtime beside the other periodic tasks.
pub async fn upkeep(meter: &Meter) -> std::convert::Infallible {
    // Two loops, polled side by side: a flush that waits (Redis: for queued
    // settles to land) never holds up the reaper.
    let flushing = async {
        let mut every = tokio::time::interval(meter.config.flush_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = meter.ledger.flush().await {
                tracing::warn!(error = %e, "credit ledger flush failed; will retry");
            }
        }
    };
    let reaping = async {
        let mut every = tokio::time::interval(meter.config.reaper_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match meter.ledger.reap(meter.clock.now_ms()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(released = n, "released expired credit reservations (a replica died mid-call?)")
                }
                Err(e) => tracing::warn!(error = %e, "credit reservation reaper failed; will retry"),
            }
        }
    };
    tokio::join!(flushing, reaping);
    unreachable!("both upkeep loops run forever")
}

/// How long shutdown waits for the ledger's last writes.
const FINAL_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes everything pending before the process exits (bounded).
pub async fn final_flush(meter: &Meter) {
    match tokio::time::timeout(FINAL_FLUSH, meter.ledger.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the credit ledger's last flush failed"),
        Err(_) => tracing::error!("the credit ledger's last flush did not finish in {FINAL_FLUSH:?}"),
    }
}
