//! `/v1/schedules`, `/v1/tasks`, `/v1/notes` and `/v1/missions` (seed 001,
//! whose `/api/v1/schedule`, `/tasks`, `/notes` and `/missions` paths are
//! aliases): the records of [`crate::schedules`], each in its caller's
//! workspace — another workspace's id is a 404, never a 403. Creating work
//! that runs (`POST /v1/tasks`, `/schedules/{id}/run`, `/missions/{id}/run`)
//! answers 202 with the queued task; the scheduler runs it.
//!
//! Every list is `?after=<last_id>&limit=` (oldest first; ids begin with
//! their creation time), with the filters each names.

mod schedules;
mod tasks;

use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::management::json;
use super::threads::limit;
use super::Query;
use crate::admin::ManagementError;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::error::Error;

pub use schedules::{create_schedule, delete_schedule, get_schedule, list_schedules, run_schedule, update_schedule};
pub use tasks::{
    create_mission, create_note, create_task, delete_mission, delete_note, get_mission, get_note, get_task,
    list_missions, list_notes, list_tasks, run_mission,
};

/// The longest prompt, reminder text, note or mission step.
const MAX_TEXT_BYTES: usize = 32 * 1024;
/// The longest name or title.
const MAX_NAME_CHARS: usize = 200;

/// The caller's workspace (the routes' access requires one).
fn workspace(ctx: &RequestContext) -> Result<&str, ManagementError> {
    ctx.principal.workspace.as_deref().ok_or(ManagementError::InsufficientScope("manage scheduled work"))
}

fn invalid(param: &'static str, message: impl Into<String>) -> Error {
    ManagementError::Invalid { param, message: message.into() }.into()
}

fn missing(param: &'static str, message: impl Into<String>) -> Error {
    ManagementError::Missing { param, message: message.into() }.into()
}

fn not_found(what: &str, id: &str) -> Error {
    ManagementError::NotFound(format!("{what} {id:?}")).into()
}

/// A required, non-empty text of at most [`MAX_TEXT_BYTES`].
fn text(param: &'static str, value: Option<String>) -> Result<String, Error> {
    let value = value.ok_or_else(|| missing(param, "it is required"))?;
    checked_text(param, value)
}

fn checked_text(param: &'static str, value: String) -> Result<String, Error> {
    if value.trim().is_empty() {
        return Err(invalid(param, "must not be empty"));
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid(param, format!("must be at most {MAX_TEXT_BYTES} bytes")));
    }
    Ok(value)
}

/// An optional name or title of at most [`MAX_NAME_CHARS`].
fn name(param: &'static str, value: Option<String>) -> Result<Option<String>, Error> {
    match value {
        Some(v) if v.chars().count() > MAX_NAME_CHARS => {
            Err(invalid(param, format!("must be at most {MAX_NAME_CHARS} characters")))
        }
        Some(v) if v.trim().is_empty() => Err(invalid(param, "must not be empty")),
        v => Ok(v),
    }
}

/// An agent the workspace may use; `None` takes the workspace's default,
/// which must then exist.
async fn agent(app: &App, ws: &str, agent: Option<String>) -> Result<Option<String>, Error> {
    match agent {
        Some(a) => {
            if !app.agents.exists_in(ws, &a).await? {
                return Err(invalid("agent", format!("no agent {a:?} in this workspace")));
            }
            Ok(Some(a))
        }
        None if app.agents.default_for(ws).await?.is_some() => Ok(None),
        None => Err(missing("agent", "the workspace has no default agent, so name one")),
    }
}

/// A record as the API shows it: its fields and `object`.
fn view(record: &impl Serialize, object: &str) -> Value {
    let mut value = serde_json::to_value(record).expect("a record serialises");
    if let Value::Object(map) = &mut value {
        map.insert("object".into(), Value::from(object));
    }
    value
}

fn answer(status: StatusCode, value: &Value) -> Response<Body> {
    json(status, value)
}

/// A list page: `last_id` is where the next page starts (`?after=`).
fn page(data: Vec<Value>, cursor: Option<String>, has_more: bool) -> Response<Body> {
    let body = serde_json::json!({"object": "list", "data": data, "has_more": has_more, "last_id": cursor});
    answer(StatusCode::OK, &body)
}

/// `?after=` and `?limit=` (20 by default, at most 100).
fn paging<'q>(q: &'q Query<'_>) -> Result<(Option<&'q str>, usize), Error> {
    Ok((q.get("after"), limit(q, 20, crate::records::MAX_LIST)?))
}
