//! The records of scheduled work, as stored (JSON in the record store) and,
//! with an `object` field added, as the API shows them.

use serde::{Deserialize, Serialize};

/// What a schedule does when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Sends `prompt` to `agent`, saves the answer as a note.
    #[default]
    Prompt,
    /// Runs `mission`'s steps in turn.
    Mission,
    /// Emits `reminder_triggered` with `text`; no model, no credits.
    Reminder,
}

/// What a schedule does about due times that passed while no replica ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// One catch-up run for all the missed due times, then on schedule.
    #[default]
    RunOnce,
    /// No catch-up: the next due time after now.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: ScheduleKind,
    pub cron: String,
    pub time_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub enabled: bool,
    pub missed: Missed,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Skipped,
}

impl TaskStatus {
    /// Whether the task has ended (it is never run again).
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Skipped)
    }
}

/// What started a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A schedule's due run (or `POST /v1/schedules/{id}/run`).
    Schedule,
    /// `POST /v1/tasks`: a one-off prompt.
    Prompt,
    /// A mission's run: its steps are tasks of their own.
    Mission,
    /// One step of a mission's run.
    Step,
    /// A reminder schedule's due time.
    Reminder,
}

/// Tokens a task's model calls used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

impl TaskUsage {
    pub fn add(&mut self, other: TaskUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub kind: TaskKind,
    pub status: TaskStatus,
    /// A short title (the schedule's or mission's name, or the prompt's start).
    pub title: String,
    /// Why it failed or was skipped (`insufficient_quota`, `upstream_error`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission_id: Option<String>,
    /// The mission run a step belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// A step's place in its mission (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// The due time a scheduled run is for (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_id: Option<String>,
    #[serde(default)]
    pub usage: TaskUsage,
    /// Micro-credits the task's model calls cost at their agents' prices.
    #[serde(default)]
    pub credits: u64,
    /// How many times a replica started it (a run interrupted by a crash is
    /// started once more).
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// How long after its due time (or its queueing) the first start came, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

impl Task {
    /// A new queued task of `kind`; the caller sets what else it names.
    pub fn queued(id: String, kind: TaskKind, title: String, created_at: i64) -> Task {
        Task {
            id,
            kind,
            status: TaskStatus::Queued,
            title,
            reason: None,
            error: None,
            schedule_id: None,
            mission_id: None,
            parent_id: None,
            step: None,
            due_at_ms: None,
            prompt: None,
            agent: None,
            note_id: None,
            usage: TaskUsage::default(),
            credits: 0,
            attempts: 0,
            created_at,
            started_at: None,
            late_ms: None,
            finished_at: None,
        }
    }
}

/// Where a note came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub title: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission_id: Option<String>,
    /// `task` (a run's answer) or `client` (`POST /v1/notes`).
    pub source: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A named goal with ordered steps one agent runs in turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mission {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub steps: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}
