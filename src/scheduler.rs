//! What runs scheduled work (the rules are [`crate::schedules`]'): one loop
//! per replica that finds due schedules and runs waiting for a replica, and
//! the run itself ([`run`]) — a model call through the same
//! [`crate::pipeline`] as a chat request, as the schedule's workspace.
//!
//! The loop asks the store every `schedules.poll_ms` (250 ms by default) for
//! what is due now — a due run starts within that of its time — and at once
//! when work was queued on this replica. Each due schedule or waiting run is
//! claimed and run on its own task, at most `schedules.max_concurrent_runs`
//! at a time (1,000 by default: a run spends its time waiting on the
//! upstream, not on this replica's CPU); what does not fit waits for the next
//! look (or another replica). A replica with `schedules.run = false` runs none of it.

mod mission;
pub mod run;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::app::App;
use crate::schedules::Line;
use crate::store::StoreError;
use crate::tasks::Tasks;

/// The most due schedules (and runs) one look reads.
const MAX_BATCH: usize = 4096;

/// The scheduler loop (see the module doc); runs until shutdown cancels it.
pub async fn run_loop(app: Arc<App>, tasks: Tasks) -> Infallible {
    let permits = Arc::new(Semaphore::new(app.schedules.config.max_concurrent_runs));
    // Members this replica is claiming or running: not spawned twice.
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        for line in [Line::Due, Line::Runs] {
            if let Err(e) = look(&app, &tasks, line, &permits, &busy).await {
                tracing::warn!(error = %e, line = line.as_str(), "could not read the scheduler's timeline");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(app.schedules.config.poll) => {}
            () = app.schedules.wake.notified() => {}
        }
    }
}

/// Claims and runs what is due on `line`, as far as permits allow.
async fn look(
    app: &Arc<App>,
    tasks: &Tasks,
    line: Line,
    permits: &Arc<Semaphore>,
    busy: &Arc<Mutex<HashSet<String>>>,
) -> Result<(), StoreError> {
    let now = app.schedules.now_ms();
    // Members this replica is already working on stay at the head of the
    // timeline until their claim moves them: read past them, up to what the
    // free permits can start.
    let free = permits.available_permits();
    if free == 0 {
        return Ok(());
    }
    let limit = (free + busy.lock().expect("not poisoned").len()).min(MAX_BATCH);
    for (member, at) in app.schedules.timeline.upto(line, now, limit).await? {
        let Ok(permit) = permits.clone().try_acquire_owned() else { break };
        if !busy.lock().expect("not poisoned").insert(member.clone()) {
            continue;
        }
        let (app, busy) = (app.clone(), busy.clone());
        tasks.spawn(async move {
            let result = match line {
                Line::Due => run::due(&app, &member, at).await,
                Line::Runs => run::resume(&app, &member, at).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, member = %member, "a scheduled run could not be claimed or recorded");
            }
            busy.lock().expect("not poisoned").remove(&member);
            drop(permit);
        });
    }
    Ok(())
}
