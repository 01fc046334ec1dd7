//! `/v1/tasks`, `/v1/notes` and `/v1/missions`: what runs did and what
//! clients ask to run.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::{agent, answer, checked_text, invalid, missing, name, not_found, page, paging, text, view, workspace};
use crate::api::management::parse;
use crate::api::openai::read_body;
use crate::api::Query;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::error::Error;
use crate::events::EventType;
use crate::scheduler::run::title_of;
use crate::schedules::{
    new_id, new_task_id, Mission, Note, Task, TaskKind, TaskStatus, MAX_STEPS, MISSIONS, NEVER, NOTES, TASKS,
};

/// An id of this workspace's `collection`, or a 404 (an id outside the
/// record id characters cannot exist).
async fn stored<T: serde::de::DeserializeOwned>(
    app: &App,
    ws: &str,
    collection: &str,
    what: &str,
    id: &str,
) -> Result<T, Error> {
    if crate::conversations::check_name(id).is_err() {
        return Err(not_found(what, id));
    }
    let found = app.schedules.get::<T>(ws, collection, id).await?;
    found.map(|v| v.record).ok_or_else(|| not_found(what, id))
}

fn queued(kind: TaskKind, title: String, prompt: Option<String>, agent: Option<String>, now_ms: i64) -> Task {
    Task { prompt, agent, ..Task::queued(new_task_id(now_ms), kind, title, now_ms / 1000) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskBody {
    prompt: Option<String>,
    agent: Option<String>,
    #[serde(alias = "name")]
    title: Option<String>,
}

/// `POST /v1/tasks`: a one-off prompt, run in the background (202).
pub async fn create_task(app: &App, ctx: &RequestContext, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let body: TaskBody = parse(&read_body(app, req).await?)?;
    let prompt = text("prompt", body.prompt)?;
    let agent = agent(app, ws, body.agent).await?;
    let title = name("title", body.title)?.unwrap_or_else(|| title_of(&prompt));
    let task = queued(TaskKind::Prompt, title, Some(prompt), agent, app.schedules.now_ms());
    app.schedules.enqueue(ws, &task).await?;
    Ok(answer(StatusCode::ACCEPTED, &view(&task, "task")))
}

pub async fn get_task(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let task: Task = stored(app, workspace(ctx)?, TASKS, "task", id).await?;
    Ok(answer(StatusCode::OK, &view(&task, "task")))
}

/// `GET /v1/tasks?schedule_id=&mission_id=&status=`.
pub async fn list_tasks(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let q = Query::parse(query);
    let (after, limit) = paging(&q)?;
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<TaskStatus>(json!(s))
                .map_err(|_| invalid("status", "must be queued, running, completed, failed or skipped"))?,
        ),
    };
    let (schedule, mission) = (q.get("schedule_id"), q.get("mission_id"));
    let keep = |t: &Task| {
        schedule.is_none_or(|s| t.schedule_id.as_deref() == Some(s))
            && mission.is_none_or(|m| t.mission_id.as_deref() == Some(m))
            && status.is_none_or(|s| t.status == s)
    };
    let (tasks, cursor, more) = app.schedules.page::<Task>(ws, TASKS, after, limit, keep).await?;
    Ok(page(tasks.iter().map(|t| view(t, "task")).collect(), cursor, more))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    title: Option<String>,
    content: Option<String>,
}

/// `POST /v1/notes`: a note written by a client.
pub async fn create_note(app: &App, ctx: &RequestContext, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let body: NoteBody = parse(&read_body(app, req).await?)?;
    let content = text("content", body.content)?;
    let title = name("title", body.title)?.unwrap_or_else(|| title_of(&content));
    let now = app.schedules.now_ms();
    let note = Note {
        id: new_id("note", now),
        title,
        content,
        task_id: None,
        schedule_id: None,
        mission_id: None,
        source: "client".into(),
        created_at: now / 1000,
    };
    app.schedules.put(ws, NOTES, &note.id, None, &note, app.schedules.expires_at()).await?;
    let data = json!({"note_id": note.id, "title": note.title, "task_id": null, "schedule_id": null});
    app.events.emit(&Arc::from(ws), EventType::NoteCreated, &data);
    Ok(answer(StatusCode::CREATED, &view(&note, "note")))
}

pub async fn get_note(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let note: Note = stored(app, workspace(ctx)?, NOTES, "note", id).await?;
    Ok(answer(StatusCode::OK, &view(&note, "note")))
}

pub async fn delete_note(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    if crate::conversations::check_name(id).is_err() || !app.schedules.records.remove(ws, NOTES, id).await? {
        return Err(not_found("note", id));
    }
    Ok(answer(StatusCode::OK, &json!({"id": id, "object": "note.deleted", "deleted": true})))
}

/// `GET /v1/notes?schedule_id=&task_id=&mission_id=`.
pub async fn list_notes(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let q = Query::parse(query);
    let (after, limit) = paging(&q)?;
    let (schedule, task, mission) = (q.get("schedule_id"), q.get("task_id"), q.get("mission_id"));
    let keep = |n: &Note| {
        schedule.is_none_or(|s| n.schedule_id.as_deref() == Some(s))
            && task.is_none_or(|t| n.task_id.as_deref() == Some(t))
            && mission.is_none_or(|m| n.mission_id.as_deref() == Some(m))
    };
    let (notes, cursor, more) = app.schedules.page::<Note>(ws, NOTES, after, limit, keep).await?;
    Ok(page(notes.iter().map(|n| view(n, "note")).collect(), cursor, more))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MissionBody {
    #[serde(alias = "title")]
    name: Option<String>,
    goal: Option<String>,
    agent: Option<String>,
    steps: Option<Vec<String>>,
}

/// `POST /v1/missions` (`mission_created`).
pub async fn create_mission(app: &App, ctx: &RequestContext, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let body: MissionBody = parse(&read_body(app, req).await?)?;
    let name = name("name", body.name)?.ok_or_else(|| missing("name", "a mission needs a name"))?;
    let goal = body.goal.map(|g| checked_text("goal", g)).transpose()?;
    let steps = body.steps.ok_or_else(|| missing("steps", "a mission needs its steps (prompts, in order)"))?;
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(invalid("steps", format!("must hold 1 to {MAX_STEPS} prompts")));
    }
    let steps = steps.into_iter().map(|s| checked_text("steps", s)).collect::<Result<Vec<_>, _>>()?;
    let agent = agent(app, ws, body.agent).await?;
    let now = app.schedules.now_ms();
    let mission =
        Mission { id: new_id("msn", now), name, goal, agent, steps, created_at: now / 1000, updated_at: now / 1000 };
    app.schedules.put(ws, MISSIONS, &mission.id, None, &mission, NEVER).await?;
    let data = json!({"mission_id": mission.id, "name": mission.name, "steps": mission.steps.len()});
    app.events.emit(&Arc::from(ws), EventType::MissionCreated, &data);
    Ok(answer(StatusCode::CREATED, &view(&mission, "mission")))
}

pub async fn get_mission(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let mission: Mission = stored(app, workspace(ctx)?, MISSIONS, "mission", id).await?;
    Ok(answer(StatusCode::OK, &view(&mission, "mission")))
}

pub async fn list_missions(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let q = Query::parse(query);
    let (after, limit) = paging(&q)?;
    let (missions, cursor, more) = app.schedules.page::<Mission>(ws, MISSIONS, after, limit, |_| true).await?;
    Ok(page(missions.iter().map(|m| view(m, "mission")).collect(), cursor, more))
}

pub async fn delete_mission(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    if crate::conversations::check_name(id).is_err() || !app.schedules.records.remove(ws, MISSIONS, id).await? {
        return Err(not_found("mission", id));
    }
    Ok(answer(StatusCode::OK, &json!({"id": id, "object": "mission.deleted", "deleted": true})))
}

/// `POST /v1/missions/{id}/run`: its steps in turn, in the background (202).
pub async fn run_mission(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let ws = workspace(ctx)?;
    let mission: Mission = stored(app, ws, MISSIONS, "mission", id).await?;
    let mut task = queued(TaskKind::Mission, mission.name.clone(), None, mission.agent.clone(), app.schedules.now_ms());
    task.mission_id = Some(mission.id);
    app.schedules.enqueue(ws, &task).await?;
    Ok(answer(StatusCode::ACCEPTED, &view(&task, "task")))
}
