//! Shutdown, in the order a load balancer needs it:
//!
//! 1. SIGTERM (or Ctrl-C): [`Drain::begin`]. `/readyz` answers 503 from now
//!    on, so a load balancer stops sending; every open connection is asked to
//!    finish (HTTP/1: the response in flight goes out with `Connection: close`,
//!    idle ones close at once; h2: GOAWAY, streams in flight run on).
//! 2. The listeners stay open. A connection accepted now is told the gateway
//!    is going away instead of being refused: 503 `shutting_down` with
//!    `Connection: close` (h2: the 503, then GOAWAY); `/healthz` still answers.
//! 3. When every connection that was open at step 1 has finished — across all
//!    workers — or `shutdown_grace` has passed, the listeners close and what
//!    is left is dropped. Then the ledger and the event queue are flushed.
//!
//! The tracker is the process's, not a worker's: a worker with nothing left
//! in flight keeps its listener open until the others are done, because
//! closing one `SO_REUSEPORT` listener resets the connections in its backlog.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Default)]
pub struct Drain {
    draining: AtomicBool,
    /// Cancelled at step 1; every connection task watches it.
    begun: CancellationToken,
    /// The connections opened before step 1.
    serving: TaskTracker,
}

impl Drain {
    /// Step 1 (idempotent: every worker calls it).
    pub fn begin(&self) {
        if !self.draining.swap(true, Ordering::AcqRel) {
            tracing::info!(connections = self.serving.len(), "shutting down: draining in-flight requests");
        }
        self.serving.close();
        self.begun.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Resolves at step 1.
    pub async fn begun(&self) {
        self.begun.cancelled().await
    }

    /// Resolves when every connection opened before step 1 has finished.
    pub async fn drained(&self) {
        self.serving.wait().await
    }

    /// The tracker that step 3 waits for.
    pub fn serving(&self) -> &TaskTracker {
        &self.serving
    }
}
