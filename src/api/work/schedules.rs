//! `/v1/schedules` (and seed 001's `/api/v1/schedule`): cron schedules of a
//! prompt, a mission or a reminder, with their next run times.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::Value;

use super::{agent, answer, checked_text, invalid, missing, name, not_found, page, paging, view, workspace};
use crate::api::management::parse;
use crate::api::openai::read_body;
use crate::api::Query;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::cron::CronSchedule;
use crate::error::Error;
use crate::scheduler::run::task_for;
use crate::schedules::{
    new_id, new_task_id, Missed, Mission, Schedule, ScheduleKind, Versioned, MISSIONS, NEVER, SCHEDULES,
};

/// How many next run times a schedule's response shows.
const NEXT_RUNS: usize = 5;

/// `POST` and `PATCH`: every field optional; `POST` checks what it needs.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    name: Option<String>,
    kind: Option<ScheduleKind>,
    #[serde(alias = "cron_expression")]
    cron: Option<String>,
    #[serde(alias = "timezone")]
    time_zone: Option<String>,
    prompt: Option<String>,
    agent: Option<String>,
    #[serde(alias = "mission_id")]
    mission: Option<String>,
    text: Option<String>,
    enabled: Option<bool>,
    missed: Option<Missed>,
}

/// A schedule as the API shows it: the record, `next_run_at` and the next
/// few run times in its zone (none while disabled).
fn schedule_view(app: &App, schedule: &Schedule) -> Value {
    let mut value = view(schedule, "schedule");
    let runs = match (schedule.enabled, CronSchedule::parse(&schedule.cron, &schedule.time_zone)) {
        (true, Ok(cron)) => {
            cron.next_runs(app.schedules.now_ms(), NEXT_RUNS).into_iter().map(|ms| cron.local_time(ms)).collect()
        }
        _ => Vec::new(),
    };
    value["next_run_at"] = runs.first().cloned().map_or(Value::Null, Value::from);
    value["next_runs"] = Value::from(runs);
    value
}

/// Checks a schedule as a whole (after a create or a change): the cron in
/// its zone, and what its kind needs.
async fn check(app: &App, ws: &str, s: &mut Schedule) -> Result<(), Error> {
    CronSchedule::parse(&s.cron, &s.time_zone).map_err(|e| invalid(e.param(), e.to_string()))?;
    s.name = name("name", s.name.take())?;
    match s.kind {
        ScheduleKind::Prompt => {
            let prompt = s.prompt.take().ok_or_else(|| missing("prompt", "a prompt schedule needs a prompt"))?;
            s.prompt = Some(checked_text("prompt", prompt)?);
            s.agent = agent(app, ws, s.agent.take()).await?;
        }
        ScheduleKind::Mission => {
            let id = s.mission.as_deref().ok_or_else(|| missing("mission", "a mission schedule names its mission"))?;
            if app.schedules.get::<Mission>(ws, MISSIONS, id).await?.is_none() {
                return Err(invalid("mission", format!("no mission {id:?} in this workspace")));
            }
        }
        ScheduleKind::Reminder => {
            let text = s.text.take().ok_or_else(|| missing("text", "a reminder needs its text"))?;
            s.text = Some(checked_text("text", text)?);
        }
    }
    Ok(())
}

async fn default_zone(app: &App, ws: &str) -> Result<String, Error> {
    let workspace = app.stores.workspaces.workspace(ws).await?;
    Ok(workspace.and_then(|w| w.time_zone).unwrap_or_else(|| "UTC".to_owned()))
}

/// `POST /v1/schedules`.
pub async fn create_schedule(app: &App, ctx: &RequestContext, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let body: ScheduleBody = parse(&read_body(app, req).await?)?;
    let now = app.schedules.now_ms();
    let cron = body.cron.ok_or_else(|| missing("cron", "a schedule needs a cron expression"))?;
    let time_zone = match body.time_zone {
        Some(zone) => zone,
        None => default_zone(app, ws).await?,
    };
    let mut schedule = Schedule {
        id: new_id("sch", now),
        name: body.name,
        kind: body.kind.unwrap_or_default(),
        cron,
        time_zone,
        prompt: body.prompt,
        agent: body.agent,
        mission: body.mission,
        text: body.text,
        enabled: body.enabled.unwrap_or(true),
        missed: body.missed.unwrap_or_default(),
        created_at: now / 1000,
        updated_at: now / 1000,
    };
    check(app, ws, &mut schedule).await?;
    app.schedules.put(ws, SCHEDULES, &schedule.id, None, &schedule, NEVER).await?;
    app.schedules.sync_due(ws, &schedule).await?;
    Ok(answer(StatusCode::CREATED, &schedule_view(app, &schedule)))
}

async fn stored(app: &App, ws: &str, id: &str) -> Result<Versioned<Schedule>, Error> {
    if crate::conversations::check_name(id).is_err() {
        return Err(not_found("schedule", id));
    }
    app.schedules.get(ws, SCHEDULES, id).await?.ok_or_else(|| not_found("schedule", id))
}

pub async fn get_schedule(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let schedule = stored(app, workspace(ctx)?, id).await?.record;
    Ok(answer(StatusCode::OK, &schedule_view(app, &schedule)))
}

pub async fn list_schedules(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let q = Query::parse(query);
    let (after, limit) = paging(&q)?;
    let (schedules, cursor, more) = app.schedules.page::<Schedule>(ws, SCHEDULES, after, limit, |_| true).await?;
    Ok(page(schedules.iter().map(|s| schedule_view(app, s)).collect(), cursor, more))
}

/// `PATCH /v1/schedules/{id}`: changes the fields present; the due time
/// follows a changed cron, zone or `enabled` at once.
pub async fn update_schedule(
    app: &App,
    ctx: &RequestContext,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let body: ScheduleBody = parse(&read_body(app, req).await?)?;
    loop {
        let Versioned { version, record: mut s } = stored(app, ws, id).await?;
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = body.$field.clone() { s.$field = v; })* };
        }
        macro_rules! set_some {
            ($($field:ident),*) => { $(if let Some(v) = body.$field.clone() { s.$field = Some(v); })* };
        }
        set!(kind, cron, time_zone, enabled, missed);
        set_some!(name, prompt, agent, mission, text);
        s.updated_at = app.schedules.now_ms() / 1000;
        check(app, ws, &mut s).await?;
        if app.schedules.put(ws, SCHEDULES, id, Some(version), &s, NEVER).await? {
            app.schedules.sync_due(ws, &s).await?;
            return Ok(answer(StatusCode::OK, &schedule_view(app, &s)));
        }
    }
}

pub async fn delete_schedule(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    if crate::conversations::check_name(id).is_err() || !app.schedules.delete_schedule(ws, id).await? {
        return Err(not_found("schedule", id));
    }
    let body = serde_json::json!({"id": id, "object": "schedule.deleted", "deleted": true});
    Ok(answer(StatusCode::OK, &body))
}

/// `POST /v1/schedules/{id}/run`: a run now, beside the schedule's own.
pub async fn run_schedule(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let schedule = stored(app, ws, id).await?.record;
    let now = app.schedules.now_ms();
    let mut task = task_for(&schedule, now, now / 1000);
    task.id = new_task_id(now);
    app.schedules.enqueue(ws, &task).await?;
    Ok(answer(StatusCode::ACCEPTED, &view(&task, "task")))
}
