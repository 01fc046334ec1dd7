//! The one task set every background job runs on, so shutdown can stop the
//! loops and wait for the work in hand.
//!
//! Two kinds of task:
//! - **loops** ([`Tasks::spawn_loop`]: ledger upkeep, the settle queue, the
//!   event drain's helpers, pruners) run until [`Tasks::shut_down`] cancels
//!   them at their next `.await`; shutdown cancels them only after the final
//!   flushes that need them are done;
//! - **work** ([`Tasks::spawn`]: one webhook delivery, one spill of the event
//!   queue) ends by itself and is waited for, up to the grace period.
//!
//! Every task is spawned on the control runtime (the handle given at
//! creation), never on a worker's, so a worker ending cannot cancel it.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
    handle: Handle,
}

impl Tasks {
    /// Tasks on the runtime running the caller (panics outside a runtime).
    pub fn on_current_runtime() -> Tasks {
        Tasks::on(Handle::current())
    }

    /// Tasks on `handle`'s runtime.
    pub fn on(handle: Handle) -> Tasks {
        Tasks { tracker: TaskTracker::new(), stop: CancellationToken::new(), handle }
    }

    /// Runs `work` until it ends; shutdown waits for it (bounded).
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn_on(work, &self.handle)
    }

    /// Runs a loop until shutdown cancels it (or it ends by itself: a queue's
    /// worker whose senders are gone).
    pub fn spawn_loop<F>(&self, name: &'static str, work: F)
    where
        F: Future + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn_on(
            async move {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    _ = work => tracing::debug!(task = name, "a background loop ended"),
                }
            },
            &self.handle,
        );
    }

    /// Cancels the loops without waiting (a gateway dropped without a
    /// shutdown: a test's replica going away).
    pub fn cancel(&self) {
        self.stop.cancel();
    }

    /// Resolves once shutdown began.
    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    /// How many tasks are running (for tests and the shutdown log).
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Cancels the loops and waits up to `grace` for every task to end;
    /// `false` if some work was still running when the grace ran out.
    pub async fn shut_down(&self, grace: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(running = self.tracker.len(), "background work still running at the end of shutdown");
                false
            }
        }
    }
}

/// Runs `pass` every `every`, forever, logging what each pass did (`what`
/// names it: "pruned expired stored responses"). For the composition root's
/// upkeep loops (pruners), spawned with [`Tasks::spawn_loop`]; a pass cut
/// short by shutdown loses nothing.
pub async fn every<F, Fut, E>(every: Duration, what: &'static str, mut pass: F) -> std::convert::Infallible
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, E>>,
    E: std::fmt::Display,
{
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match pass().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "{what}"),
            Err(e) => tracing::warn!(error = %e, "{what}: the pass failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loops_are_cancelled_and_work_is_waited_for() {
        let tasks = Tasks::on_current_runtime();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tasks.spawn_loop("forever", std::future::pending::<()>());
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = done_tx.send(());
        });
        assert_eq!(tasks.len(), 2);
        assert!(tasks.shut_down(Duration::from_secs(5)).await, "both end within the grace");
        assert!(done_rx.await.is_ok(), "the work ran to its end");
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_work_that_outlives_the_grace() {
        let tasks = Tasks::on_current_runtime();
        tasks.spawn(std::future::pending());
        assert!(!tasks.shut_down(Duration::from_millis(20)).await);
    }
}
