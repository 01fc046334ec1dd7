//! Scheduled prompts, tasks, notes and missions (seed 001; DESIGN.md
//! "Scheduled prompts, tasks, missions"): the records and the rules that
//! make a due time run exactly once. What runs them — the model call through
//! the pipeline, the scheduler loop — is [`crate::scheduler`].
//!
//! **Records** ([`model`]) live in the shared record store
//! ([`crate::records`]), scoped by workspace: schedules and missions until
//! deleted, tasks and notes for `schedules.retention_days`.
//!
//! **Exactly once.** Each enabled schedule is on the [`Line::Due`] timeline
//! at its next due time. A replica that finds it due computes the run
//! ([`plan`]) and claims it with one compare-and-set that moves the schedule
//! to its following due time and puts the run on [`Line::Runs`]; of all the
//! replicas that saw that due time, only one moves it. The run's task id is
//! derived from (schedule, due time) ([`scheduled_task_id`]) and its note id
//! from the task's ([`note_id_for`]), each written only if absent — so
//! however often a run is retried, one due time has one task and one note.
//!
//! **Nothing lost.** A run holds its place on [`Line::Runs`] until its lease
//! ends and renews it while it works. A replica that dies mid-run stops
//! renewing; once the lease has run out another replica claims the run the
//! same way and starts it once more (the second attempt), or marks it
//! failed (`interrupted`) after two: never lost silently. A one-off task
//! (`POST /v1/tasks`) is queued the same way, on [`Line::Runs`] at once.
//!
//! **Missed runs.** A schedule found more than [`GRACE_MS`] past its due time
//! (no replica ran during that time) follows its [`Missed`] policy:
//! `run_once` runs one catch-up for all the missed times — the task names the
//! first of them — and `skip` none; either way the schedule moves on to its
//! next due time after now. Never a burst.
//!
//! **Time zones and DST** are [`crate::cron`]'s: a due time in a
//! spring-forward gap runs once just after it; a wall time in a fall-back
//! hour runs once, in its first pass.

pub mod model;
pub mod timeline;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::SchedulesConfig;
use crate::cron::CronSchedule;
use crate::records::{self, RecordStore};
use crate::store::StoreError;
pub use model::{Missed, Mission, Note, Schedule, ScheduleKind, Task, TaskKind, TaskStatus, TaskUsage};
pub use timeline::{Line, Timeline};

/// The record store's collections.
pub const SCHEDULES: &str = "schedule";
pub const TASKS: &str = "task";
pub const NOTES: &str = "note";
pub const MISSIONS: &str = "mission";

/// How late a due run may start and still count as on time; later, it was
/// missed (the gateway was down) and the schedule's [`Missed`] policy applies.
pub const GRACE_MS: i64 = 60_000;
/// `expires_at` of records kept until deleted (9999-12-31).
pub const NEVER: i64 = 253_402_300_799;
/// Most steps in a mission.
pub const MAX_STEPS: usize = 20;

/// A timeline member: the record's workspace and id.
pub fn member(workspace: &str, id: &str) -> String {
    format!("{workspace}/{id}")
}

/// A member's workspace and id.
pub fn split_member(member: &str) -> Option<(&str, &str)> {
    member.split_once('/')
}

/// The task of `schedule`'s run for `due_ms`: the same on every replica, so
/// a retried claim writes the same record. Starts with the due time, so a
/// workspace's tasks list in time order.
pub fn scheduled_task_id(schedule: &str, due_ms: i64) -> String {
    format!("task_{due_ms:012x}_{schedule}")
}

/// A task id for work that is not a due time (`POST /v1/tasks`, a mission's run).
pub fn new_task_id(now_ms: i64) -> String {
    new_id("task", now_ms)
}

/// The note of a task's answer: one per task, however often it runs.
pub fn note_id_for(task: &str) -> String {
    format!("note_{}", task.strip_prefix("task_").unwrap_or(task))
}

/// A new id of `kind` (`sch`, `msn`, `note`, `task`) that lists in creation
/// order: the time, then this process's counter (ids of one millisecond),
/// then random bits (ids of other replicas in the same millisecond).
pub fn new_id(kind: &str, now_ms: i64) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{kind}_{now_ms:012x}{n:08x}{:012x}", rand::random::<u64>() >> 16)
}

/// What a replica does with a schedule found due at `due` when it is `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Whether a run starts (for `due`).
    pub run: bool,
    /// Where the schedule moves: its first due time after now.
    pub next: Option<i64>,
}

/// The rule of the module doc: on time (within [`GRACE_MS`]) it runs; missed,
/// it runs once under `run_once`, not at all under `skip`; it moves past now.
pub fn plan(cron: &CronSchedule, due: i64, now: i64, missed: Missed) -> Plan {
    let on_time = now - due <= GRACE_MS;
    Plan { run: on_time || missed == Missed::RunOnce, next: cron.next_after(now.max(due)) }
}

/// The scheduled-work store: records, the timelines and this replica's wake-up.
#[derive(Clone)]
pub struct Schedules {
    pub records: Arc<dyn RecordStore>,
    pub timeline: Arc<dyn Timeline>,
    pub clock: Arc<dyn Clock>,
    pub config: SchedulesConfig,
    /// Wakes this replica's scheduler: work was queued here.
    pub wake: Arc<Notify>,
}

/// A record with the version its next save must name.
pub struct Versioned<T> {
    pub version: u64,
    pub record: T,
}

impl Schedules {
    pub fn open(stores: &crate::store::Stores, clock: Arc<dyn Clock>, config: &SchedulesConfig) -> Schedules {
        Schedules {
            records: records::open(stores),
            timeline: timeline::open(stores),
            clock,
            config: config.clone(),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// When a task or note made now expires: by the store's clock (the
    /// system's), which is the one record expiry is checked against.
    pub fn expires_at(&self) -> i64 {
        self.config.expires_at(crate::store::now())
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        ws: &str,
        collection: &str,
        id: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(stored) = self.records.load(ws, collection, id).await? else { return Ok(None) };
        Ok(Some(Versioned { version: stored.version, record: records::decode(collection, id, &stored)? }))
    }

    /// Writes `record` as version `expected + 1` (`None`: only if absent);
    /// whether it was written.
    pub async fn put<T: Serialize>(
        &self,
        ws: &str,
        collection: &str,
        id: &str,
        expected: Option<u64>,
        record: &T,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.records.save(ws, collection, id, expected, &records::encode(record), expires_at).await
    }

    /// A page of a collection by id (oldest first), keeping what `keep` accepts;
    /// the cursor to continue after (the last id read, kept or not).
    pub async fn page<T: DeserializeOwned>(
        &self,
        ws: &str,
        collection: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> Result<(Vec<T>, Option<String>, bool), StoreError> {
        // A filter may reject most records: read a bounded number of pages.
        const MAX_READ_PAGES: usize = 10;
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_owned);
        for _ in 0..MAX_READ_PAGES {
            let page = self.records.list(ws, collection, cursor.as_deref(), records::MAX_LIST).await?;
            for (id, stored) in &page.records {
                cursor = Some(id.clone());
                let record: T = records::decode(collection, id, stored)?;
                if keep(&record) {
                    out.push(record);
                    if out.len() == limit {
                        let more = page.has_more || page.records.last().is_some_and(|(last, _)| last != id);
                        return Ok((out, cursor, more));
                    }
                }
            }
            if !page.has_more {
                return Ok((out, cursor, false));
            }
        }
        Ok((out, cursor, true))
    }

    /// Puts a schedule on the due timeline at its next due time after now,
    /// or takes it off (disabled, or a cron that never matches again).
    pub async fn sync_due(&self, ws: &str, schedule: &Schedule) -> Result<Option<i64>, StoreError> {
        let next = match (schedule.enabled, CronSchedule::parse(&schedule.cron, &schedule.time_zone)) {
            (true, Ok(cron)) => cron.next_after(self.now_ms()),
            _ => None,
        };
        self.timeline.put(Line::Due, &member(ws, &schedule.id), next).await?;
        Ok(next)
    }

    /// Deletes a schedule and takes it off the due timeline; whether it existed.
    pub async fn delete_schedule(&self, ws: &str, id: &str) -> Result<bool, StoreError> {
        self.timeline.put(Line::Due, &member(ws, id), None).await?;
        self.records.remove(ws, SCHEDULES, id).await
    }

    /// Stores a new queued task and queues it on the runs timeline, due now;
    /// whether it was new (a retried claim finds its task already there).
    pub async fn enqueue(&self, ws: &str, task: &Task) -> Result<bool, StoreError> {
        let fresh = self.put(ws, TASKS, &task.id, None, task, self.expires_at()).await?;
        if fresh {
            self.timeline.put(Line::Runs, &member(ws, &task.id), Some(self.now_ms())).await?;
            self.wake.notify_one();
        }
        Ok(fresh)
    }

    /// Changes a task with `change` under compare-and-set, retrying on a
    /// concurrent write; the task as written, `None` if it is gone.
    pub async fn change_task(
        &self,
        ws: &str,
        id: &str,
        mut change: impl FnMut(&mut Task),
    ) -> Result<Option<Task>, StoreError> {
        loop {
            let Some(Versioned { version, mut record }) = self.get::<Task>(ws, TASKS, id).await? else {
                return Ok(None);
            };
            change(&mut record);
            if self.put(ws, TASKS, id, Some(version), &record, self.expires_at()).await? {
                return Ok(Some(record));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_run_on_time_runs_and_a_missed_one_follows_its_policy() {
        let cron = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        let due = 1_780_000_000_000 / HOUR * HOUR;
        let on_time = plan(&cron, due, due + 300, Missed::Skip);
        assert_eq!(on_time, Plan { run: true, next: Some(due + HOUR) });
        // Five hours down: one catch-up, then the next hour after now.
        let late = due + 5 * HOUR + 10;
        assert_eq!(plan(&cron, due, late, Missed::RunOnce), Plan { run: true, next: Some(due + 6 * HOUR) });
        assert_eq!(plan(&cron, due, late, Missed::Skip), Plan { run: false, next: Some(due + 6 * HOUR) });
        // Just inside the grace period still counts as on time.
        assert!(plan(&cron, due, due + GRACE_MS, Missed::Skip).run);
        assert!(!plan(&cron, due, due + GRACE_MS + 1, Missed::Skip).run);
    }

    #[test]
    fn ids_are_derived_once_and_list_in_time_order() {
        assert_eq!(scheduled_task_id("sch_1", 255), "task_0000000000ff_sch_1");
        assert_eq!(note_id_for("task_0000000000ff_sch_1"), "note_0000000000ff_sch_1");
        assert!(scheduled_task_id("sch_9", 1000) < scheduled_task_id("sch_1", 1001));
        assert!(new_id("sch", 5) < new_id("sch", 6));
        assert_eq!(split_member(&member("acme", "task_1")), Some(("acme", "task_1")));
        for id in [new_task_id(1), new_id("note", 1), scheduled_task_id("sch_x", 1)] {
            assert!(crate::conversations::check_name(&id).is_ok(), "{id} is a valid record id");
        }
    }
}
