//! One run: claiming it, holding its lease while it works, the model calls
//! (through [`crate::pipeline`], as the workspace), the note, the task's
//! end and the events, in the order seed 001's users see them:
//! `scheduled_trigger` (a schedule's run), `note_created`, then
//! `task_completed`, `task_failed` or `task_skipped` (and `mission.completed`
//! after a mission's last step; a reminder emits `reminder_triggered`).

use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use serde_json::{json, Value};

use crate::app::{App, RequestContext};
use crate::auth::Principal;
use crate::credits::{self, MeterError};
use crate::cron::CronSchedule;
use crate::error::Error;
use crate::events::{rfc3339_ms, EventType};
use crate::pipeline::{self, Answer, ModelCall};
use crate::request::Endpoint;
use crate::schedules::{
    member, note_id_for, plan, scheduled_task_id, split_member, Line, Note, Schedule, ScheduleKind, Schedules, Task,
    TaskKind, TaskStatus, TaskUsage, NOTES, SCHEDULES, TASKS,
};
use crate::scope::Scope;
use crate::store::StoreError;
use crate::usage::Outcome;

/// How many times a run is started before an interruption fails it.
pub const MAX_ATTEMPTS: u32 = 2;
/// The front door's name in usage records and `request.completed`.
const DOOR: &str = "scheduled_task";

pub(super) fn now_s(s: &Schedules) -> i64 {
    s.now_ms() / 1000
}

/// The task a schedule's run for `due` is.
pub fn task_for(schedule: &Schedule, due: i64, now_s: i64) -> Task {
    let kind = match schedule.kind {
        ScheduleKind::Prompt => TaskKind::Schedule,
        ScheduleKind::Mission => TaskKind::Mission,
        ScheduleKind::Reminder => TaskKind::Reminder,
    };
    let prompt = match schedule.kind {
        ScheduleKind::Reminder => schedule.text.clone(),
        _ => schedule.prompt.clone(),
    };
    let title = schedule.name.clone().unwrap_or_else(|| title_of(prompt.as_deref().unwrap_or(&schedule.id)));
    Task {
        schedule_id: Some(schedule.id.clone()),
        mission_id: schedule.mission.clone(),
        due_at_ms: Some(due),
        prompt,
        agent: schedule.agent.clone(),
        ..Task::queued(scheduled_task_id(&schedule.id, due), kind, title, now_s)
    }
}

/// A title from a prompt: its first line, at most 80 characters.
pub fn title_of(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

/// A schedule found due at `due`: claims the run (or the skip) and runs it.
pub async fn due(app: &App, due_member: &str, due: i64) -> Result<(), StoreError> {
    let s = &app.schedules;
    let Some((ws, id)) = split_member(due_member) else {
        return s.timeline.put(Line::Due, due_member, None).await;
    };
    let schedule = s.get::<Schedule>(ws, SCHEDULES, id).await?.map(|v| v.record);
    let cron = schedule.as_ref().filter(|s| s.enabled).and_then(|s| CronSchedule::parse(&s.cron, &s.time_zone).ok());
    let (Some(schedule), Some(cron)) = (schedule, cron) else {
        // Deleted or disabled since it was put there: off the timeline.
        return s.timeline.advance(Line::Due, due_member, due, None, None).await.map(drop);
    };
    let now = s.now_ms();
    let plan = plan(&cron, due, now, schedule.missed);
    let task = plan.run.then(|| task_for(&schedule, due, now / 1000));
    // Written before the claim, so the claim's winner always finds it (the
    // same id and content on every replica; only the first write lands).
    if let Some(task) = &task {
        s.put(ws, TASKS, &task.id, None, task, s.expires_at()).await?;
    }
    let until = now + s.config.lease.as_millis() as i64;
    let run_member = task.as_ref().map(|t| member(ws, &t.id));
    let run = run_member.as_deref().map(|m| (m, until));
    if !s.timeline.advance(Line::Due, due_member, due, plan.next, run).await? {
        return Ok(());
    }
    match task {
        Some(task) => execute(app, ws, &task.id, until).await,
        None => {
            tracing::info!(workspace = ws, schedule = id, due = %rfc3339_ms(due), "skipped a missed run (missed = skip)");
            Ok(())
        }
    }
}

/// A run on the runs timeline whose lease ended (its replica died) or that
/// waits for its first start: claims it and starts it, or fails it after
/// [`MAX_ATTEMPTS`].
pub async fn resume(app: &App, run_member: &str, at: i64) -> Result<(), StoreError> {
    let s = &app.schedules;
    let until = s.now_ms() + s.config.lease.as_millis() as i64;
    if !s.timeline.advance(Line::Runs, run_member, at, Some(until), None).await? {
        return Ok(());
    }
    let Some((ws, id)) = split_member(run_member) else {
        return release(s, run_member, until).await;
    };
    let task = match s.get::<Task>(ws, TASKS, id).await? {
        Some(t) if !t.record.status.is_final() => t.record,
        _ => return release(s, run_member, until).await,
    };
    if task.attempts >= MAX_ATTEMPTS {
        let error = format!("the run was interrupted {} times (its replica stopped mid-run)", task.attempts);
        let ended = finish(s, ws, id, Ended::failed("interrupted", error)).await?;
        if let Some(task) = ended {
            emit_end(app, ws, &task);
        }
        return release(s, run_member, until).await;
    }
    execute(app, ws, id, until).await
}

async fn release(s: &Schedules, run_member: &str, until: i64) -> Result<(), StoreError> {
    s.timeline.advance(Line::Runs, run_member, until, None, None).await.map(drop)
}

/// Starts the task (one more attempt), works on it while renewing its lease,
/// records how it ended and takes it off the runs timeline.
async fn execute(app: &App, ws: &str, id: &str, mut until: i64) -> Result<(), StoreError> {
    let s = &app.schedules;
    let started = s.now_ms();
    let Some(task) = s
        .change_task(ws, id, |t| {
            t.status = TaskStatus::Running;
            t.attempts += 1;
            t.started_at.get_or_insert(started / 1000);
            let since = t.due_at_ms.unwrap_or(t.created_at * 1000);
            t.late_ms.get_or_insert(started - since);
        })
        .await?
    else {
        return release(s, &member(ws, id), until).await;
    };
    let run_member = member(ws, id);
    let lease = s.config.lease;
    let work = perform(app, ws, &task);
    tokio::pin!(work);
    let ended = loop {
        tokio::select! {
            ended = &mut work => break ended,
            () = tokio::time::sleep(lease / 3) => {
                let next = s.now_ms() + lease.as_millis() as i64;
                match s.timeline.advance(Line::Runs, &run_member, until, Some(next), None).await {
                    Ok(true) => until = next,
                    Ok(false) => tracing::warn!(task = id, "a run's lease was taken over while it ran"),
                    Err(e) => tracing::warn!(task = id, error = %e, "could not renew a run's lease"),
                }
            }
        }
    };
    let ended = match ended {
        Ok(ended) => ended,
        Err(e) => Ended::failed("store_unavailable", e.to_string()),
    };
    if let Some(task) = finish(s, ws, id, ended).await? {
        emit_end(app, ws, &task);
    }
    release(s, &run_member, until).await
}

/// How a run ended.
#[derive(Clone)]
pub struct Ended {
    pub(super) status: TaskStatus,
    pub(super) reason: Option<String>,
    pub(super) error: Option<String>,
    pub(super) note_id: Option<String>,
    pub(super) usage: TaskUsage,
    pub(super) credits: u64,
}

impl Ended {
    pub(super) fn failed(reason: &str, error: String) -> Ended {
        Ended {
            status: TaskStatus::Failed,
            reason: Some(reason.to_owned()),
            error: Some(error),
            note_id: None,
            usage: TaskUsage::default(),
            credits: 0,
        }
    }

    pub(super) fn completed(note_id: Option<String>, usage: TaskUsage, credits: u64) -> Ended {
        Ended { status: TaskStatus::Completed, reason: None, error: None, note_id, usage, credits }
    }

    /// A model call's failure: a call that could not be paid skips the run.
    fn from_error(e: &Error, usage: TaskUsage, credits: u64) -> Ended {
        let (status, reason) = match e {
            Error::Meter(MeterError::InsufficientQuota { .. }) => (TaskStatus::Skipped, "insufficient_quota"),
            Error::Meter(MeterError::Limit(_)) => (TaskStatus::Failed, "rate_limit_exceeded"),
            Error::Meter(_) => (TaskStatus::Failed, "ledger_unavailable"),
            Error::Upstream(_) => (TaskStatus::Failed, "upstream_error"),
            Error::Catalog(_) => (TaskStatus::Failed, "model_not_found"),
            Error::Request(_) => (TaskStatus::Failed, "invalid_request"),
            _ => (TaskStatus::Failed, "internal_error"),
        };
        Ended { status, reason: Some(reason.to_owned()), error: Some(e.to_string()), note_id: None, usage, credits }
    }
}

/// Writes how the task ended; the task as written, `None` if it was
/// already final (another replica finished it) or is gone.
pub(super) async fn finish(s: &Schedules, ws: &str, id: &str, ended: Ended) -> Result<Option<Task>, StoreError> {
    let at = now_s(s);
    let mut was_final = false;
    let task = s
        .change_task(ws, id, |t| {
            was_final = t.status.is_final();
            if !was_final {
                t.status = ended.status;
                t.reason.clone_from(&ended.reason);
                t.error.clone_from(&ended.error);
                t.note_id = ended.note_id.clone().or(t.note_id.take());
                t.usage = ended.usage;
                t.credits = ended.credits;
                t.finished_at = Some(at);
            }
        })
        .await?;
    Ok(task.filter(|_| !was_final))
}

/// The event a task's end emits.
pub(super) fn emit_end(app: &App, ws: &str, task: &Task) {
    let kind = match task.status {
        TaskStatus::Completed => EventType::TaskCompleted,
        TaskStatus::Skipped => EventType::TaskSkipped,
        _ => EventType::TaskFailed,
    };
    let data = json!({
        "task_id": task.id,
        "title": task.title,
        "status": task.status,
        "kind": task.kind,
        "schedule_id": task.schedule_id,
        "mission_id": task.mission_id,
        "parent_id": task.parent_id,
        "note_id": task.note_id,
        "reason": task.reason,
        "error": task.error,
        "usage": task.usage,
        "credits": task.credits,
        "attempts": task.attempts,
    });
    app.events.emit(&Arc::from(ws), kind, &data);
}

/// The work of one task, by kind.
async fn perform(app: &App, ws: &str, task: &Task) -> Result<Ended, StoreError> {
    let workspace: Arc<str> = Arc::from(ws);
    if let (Some(schedule), Some(due)) = (&task.schedule_id, task.due_at_ms) {
        let data = json!({
            "schedule_id": schedule,
            "due_at": rfc3339_ms(due),
            "due_at_ms": due,
            "run_id": task.id,
            "task_id": task.id,
            "attempt": task.attempts,
        });
        app.events.emit(&workspace, EventType::ScheduledTrigger, &data);
    }
    match task.kind {
        TaskKind::Reminder => {
            let data = json!({"schedule_id": task.schedule_id, "task_id": task.id, "text": task.prompt});
            app.events.emit(&workspace, EventType::ReminderTriggered, &data);
            Ok(Ended::completed(None, TaskUsage::default(), 0))
        }
        TaskKind::Mission => super::mission::mission(app, ws, task).await,
        TaskKind::Schedule | TaskKind::Prompt | TaskKind::Step => {
            let prompt = task.prompt.clone().unwrap_or_default();
            let messages = vec![json!({"role": "user", "content": prompt})];
            prompt_task(app, ws, task, messages).await.map(|(ended, _)| ended)
        }
    }
}

/// One model call for a task and its note: how it ended and the answer.
/// A task whose note exists already (a retried run that got that far) is
/// done without calling the model again.
pub(super) async fn prompt_task(
    app: &App,
    ws: &str,
    task: &Task,
    messages: Vec<Value>,
) -> Result<(Ended, String), StoreError> {
    let s = &app.schedules;
    let note_id = note_id_for(&task.id);
    if let Some(note) = s.get::<Note>(ws, NOTES, &note_id).await? {
        return Ok((Ended::completed(Some(note_id), task.usage, task.credits), note.record.content));
    }
    let agent = match &task.agent {
        Some(agent) => Some(agent.clone()),
        None => app.agents.default_for(ws).await?,
    };
    let Some(agent) = agent else {
        let error = "the task names no agent and its workspace has no default agent".to_owned();
        return Ok((Ended::failed("no_agent", error), String::new()));
    };
    let (answer, usage, credits) = match call_model(app, ws, &task.id, &agent, messages).await {
        Ok(called) => called,
        Err(e) => return Ok((Ended::from_error(&e, TaskUsage::default(), 0), String::new())),
    };
    let note = Note {
        id: note_id.clone(),
        title: task.title.clone(),
        content: answer.clone(),
        task_id: Some(task.id.clone()),
        schedule_id: task.schedule_id.clone(),
        mission_id: task.mission_id.clone(),
        source: "task".to_owned(),
        created_at: now_s(s),
    };
    if s.put(ws, NOTES, &note.id, None, &note, s.expires_at()).await? {
        let data = json!({
            "note_id": note.id,
            "title": note.title,
            "task_id": note.task_id,
            "schedule_id": note.schedule_id,
            "mission_id": note.mission_id,
        });
        app.events.emit(&Arc::from(ws), EventType::NoteCreated, &data);
    }
    Ok((Ended::completed(Some(note_id), usage, credits), answer))
}

/// The model call of a task: a non-streamed chat completion through the
/// pipeline, as the workspace's scheduler (its own key in the limits, the
/// workspace's limits and credits). The answer's text, usage and cost.
async fn call_model(
    app: &App,
    ws: &str,
    task_id: &str,
    agent: &str,
    messages: Vec<Value>,
) -> Result<(String, TaskUsage, u64), Error> {
    let principal = Arc::new(Principal {
        key_id: Some(Arc::from(format!("scheduler:{ws}"))),
        name: Arc::from("scheduler"),
        workspace: Some(Arc::from(ws)),
        scope: Scope::Full,
        expires_at: None,
        revoked: false,
        models: None,
        rpm: None,
        tpm: None,
    });
    let target = app.agents.resolve(agent, &principal).await?;
    let body = json!({"model": agent, "messages": messages}).to_string();
    let ctx = RequestContext {
        request_id: HeaderValue::from_str(task_id).unwrap_or(HeaderValue::from_static("task")),
        started: Instant::now(),
        principal,
    };
    let call = ModelCall {
        endpoint: Endpoint::Chat,
        door: DOOR,
        body: body.into(),
        translates: false,
        target: Some(target.clone()),
    };
    let json = match pipeline::run(app, &ctx, call).await? {
        Answer::Whole { json, .. } => json,
        Answer::Stream { .. } => unreachable!("a task's call does not ask for a stream"),
    };
    let answer: Value = serde_json::from_slice(&json).unwrap_or(Value::Null);
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned();
    let tokens = |name: &str| answer["usage"][name].as_u64().unwrap_or(0);
    let usage = TaskUsage {
        input_tokens: tokens("prompt_tokens"),
        output_tokens: tokens("completion_tokens"),
        total_tokens: tokens("total_tokens"),
    };
    let cost = credits::charge(
        &target.price,
        Outcome::Completed,
        &crate::usage::Usage {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            estimated: false,
        },
    );
    Ok((text, usage, cost))
}
