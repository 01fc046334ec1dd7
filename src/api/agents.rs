//! `/v1/agents`: a workspace's own agents, as data (issue 12, DESIGN.md
//! "Agents"). Config agents remain, global and read-only; these belong to
//! one workspace and resolve only for its keys ([`crate::agents::Agents`]).
//!
//! Scopes: `full` manages its own workspace's agents; `admin` any
//! workspace's, naming it with `?workspace=` (reads, `PATCH`, `DELETE`) or
//! `workspace` in the create body. An agent id of another workspace is
//! reported as not found, never as forbidden. Every change emits
//! `agent.created` / `agent.updated` / `agent.deleted` in the agent's
//! workspace and drops this replica's cached answer at once; other replicas
//! see it within `store.key_cache_ttl_ms`.

mod body;

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use super::management::{json, parse};
use super::openai::read_body;
use super::Query;
use crate::admin::ManagementError;
use crate::agents::store::{AgentRecord, Inserted, MAX_AGENTS};
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::error::Error;
use crate::events::EventType;
use crate::scope::Scope;
use crate::store::now;

pub use body::{valid_id, AgentBody};

/// A list page's default and largest size.
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

/// An agent as the API shows it: the record (it holds no secret) and its type.
#[derive(Serialize)]
struct AgentView<'a> {
    #[serde(flatten)]
    agent: &'a AgentRecord,
    object: &'static str,
}

fn view(agent: &AgentRecord) -> AgentView<'_> {
    AgentView { agent, object: "agent" }
}

/// The caller's workspace and whether it is an admin, if it may manage agents.
fn caller(ctx: &RequestContext) -> Result<(&str, bool), ManagementError> {
    match (ctx.principal.scope, ctx.principal.workspace.as_deref()) {
        (scope @ (Scope::Full | Scope::Admin), Some(ws)) => Ok((ws, scope == Scope::Admin)),
        _ => Err(ManagementError::InsufficientScope("manage agents")),
    }
}

/// The workspace an agent id is looked up in: an admin's `?workspace=`, else
/// the caller's own. A non-admin naming another workspace finds nothing
/// there (404, as for an id of another workspace), never a 403.
fn id_workspace(ctx: &RequestContext, query: Option<&str>, id: &str) -> Result<String, ManagementError> {
    let (own, admin) = caller(ctx)?;
    let query = Query::parse(query);
    match query.get("workspace") {
        Some(ws) if admin => Ok(ws.to_owned()),
        Some(ws) if ws != own => Err(not_found(id)),
        _ => Ok(own.to_owned()),
    }
}

fn not_found(id: &str) -> ManagementError {
    ManagementError::NotFound(format!("agent {id:?}"))
}

/// An admin acting on a workspace not its own: it must exist.
async fn existing_workspace(app: &App, ws: &str) -> Result<(), ManagementError> {
    match app.stores.workspaces.workspace(ws).await? {
        Some(_) => Ok(()),
        None => Err(ManagementError::NotFound(format!("workspace {ws:?}"))),
    }
}

/// The agent `id` of `ws`; an id outside the character set cannot exist.
async fn stored(app: &App, ws: &str, id: &str) -> Result<AgentRecord, ManagementError> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    app.agents.store().get(ws, id).await?.ok_or_else(|| not_found(id))
}

/// `POST /v1/agents`. Scope is checked before the body is read.
pub async fn create(app: &App, ctx: &RequestContext, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let (own, admin) = caller(ctx)?;
    let body = read_body(app, req).await?;
    let mut req: AgentBody = parse(&body)?;
    let workspace = match (admin, req.workspace.take()) {
        (true, Some(ws)) => ws,
        // An admin works across workspaces: an agent lands only where it is told to.
        (true, None) => {
            let message = "an admin key must name the workspace the agent belongs to".to_owned();
            return Err(ManagementError::Missing { param: "workspace", message }.into());
        }
        (false, Some(ws)) if ws != own => {
            return Err(ManagementError::InsufficientScope("create agents in another workspace").into())
        }
        (false, _) => own.to_owned(),
    };
    if workspace != own {
        existing_workspace(app, &workspace).await?;
    }
    let agent = req.create(&app.agents.catalog(), workspace, now())?;
    if app.agents.catalog().get(&agent.id).is_some() {
        let what = format!("The id {:?} of a configured model or agent", agent.id);
        return Err(ManagementError::Conflict(what).into());
    }
    match app.agents.store().insert(&agent).await.map_err(ManagementError::from)? {
        Inserted::Created => {}
        Inserted::Exists => return Err(ManagementError::Conflict(format!("Agent {:?}", agent.id)).into()),
        Inserted::Full => {
            let message = format!("the workspace holds {MAX_AGENTS} agents, the most it may (delete one first)");
            return Err(ManagementError::Invalid { param: "id", message }.into());
        }
    }
    // A cached "no such agent" from before must not outlive the creation here.
    app.agents.forget(&agent.workspace, &agent.id).await;
    tracing::info!(agent = %agent.id, workspace = %agent.workspace, by = %ctx.principal.name, "agent created");
    agent_event(app, ctx, &agent, EventType::AgentCreated);
    Ok(json(StatusCode::CREATED, &view(&agent)))
}

/// `GET /v1/agents?after=&limit=`: a workspace's agents by id, a page at a time.
pub async fn list(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let (own, admin) = caller(ctx)?;
    let query = Query::parse(query);
    let workspace = match query.get("workspace") {
        Some(ws) if admin => ws,
        Some(ws) if ws != own => {
            return Err(ManagementError::InsufficientScope("list another workspace's agents").into())
        }
        _ => own,
    };
    if workspace != own {
        existing_workspace(app, workspace).await?;
    }
    let limit = match query.get("limit") {
        None => DEFAULT_PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(
                    ManagementError::Invalid { param: "limit", message: format!("must be 1 to {MAX_PAGE}") }.into()
                )
            }
        },
    };
    let after = query.get("after");
    if after.is_some_and(|a| !valid_id(a)) {
        let message = "pass the next_cursor of the previous page (an agent id)".to_owned();
        return Err(ManagementError::Invalid { param: "after", message }.into());
    }
    // One more than asked says whether another page follows.
    let mut agents = app.agents.store().list(workspace, after, limit + 1).await.map_err(ManagementError::from)?;
    let has_more = agents.len() > limit;
    agents.truncate(limit);
    #[derive(Serialize)]
    struct Page<'a> {
        object: &'static str,
        data: Vec<AgentView<'a>>,
        has_more: bool,
        next_cursor: Option<&'a str>,
    }
    let next_cursor = has_more.then(|| agents.last().map(|a| a.id.as_str())).flatten();
    Ok(json(StatusCode::OK, &Page { object: "list", data: agents.iter().map(view).collect(), has_more, next_cursor }))
}

/// `GET /v1/agents/{id}`.
pub async fn get(app: &App, ctx: &RequestContext, id: &str, query: Option<&str>) -> Result<Response<Body>, Error> {
    let ws = id_workspace(ctx, query, id)?;
    let agent = stored(app, &ws, id).await?;
    Ok(json(StatusCode::OK, &view(&agent)))
}

/// `PATCH /v1/agents/{id}`: the fields present replace the agent's; the
/// next call to it uses them (at once on this replica).
pub async fn update(
    app: &App,
    ctx: &RequestContext,
    id: &str,
    query: Option<&str>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let ws = id_workspace(ctx, query, id)?;
    let body = read_body(app, req).await?;
    let patch: AgentBody = parse(&body)?;
    let current = stored(app, &ws, id).await?;
    let agent = patch.update(&app.agents.catalog(), current, now())?;
    if !app.agents.store().replace(&agent).await.map_err(ManagementError::from)? {
        return Err(not_found(id).into()); // deleted meanwhile
    }
    app.agents.forget(&ws, id).await;
    tracing::info!(agent = %agent.id, workspace = %ws, by = %ctx.principal.name, "agent updated");
    agent_event(app, ctx, &agent, EventType::AgentUpdated);
    Ok(json(StatusCode::OK, &view(&agent)))
}

/// `DELETE /v1/agents/{id}`: the id is unknown afterwards (at once on this
/// replica); a workspace default naming it is cleared.
pub async fn delete(app: &App, ctx: &RequestContext, id: &str, query: Option<&str>) -> Result<Response<Body>, Error> {
    let ws = id_workspace(ctx, query, id)?;
    let agent = stored(app, &ws, id).await?;
    if !app.agents.store().delete(&ws, id).await.map_err(ManagementError::from)? {
        return Err(not_found(id).into());
    }
    app.agents.forget(&ws, id).await;
    app.agents.forget_default(&ws).await;
    tracing::info!(agent = %id, workspace = %ws, by = %ctx.principal.name, "agent deleted");
    agent_event(app, ctx, &agent, EventType::AgentDeleted);
    #[derive(Serialize)]
    struct Deleted<'a> {
        id: &'a str,
        object: &'static str,
        deleted: bool,
    }
    Ok(json(StatusCode::OK, &Deleted { id, object: "agent", deleted: true }))
}

/// `agent.*` in the agent's workspace: its id and public fields (an agent
/// holds no secret), and which key made the change.
fn agent_event(app: &App, ctx: &RequestContext, agent: &AgentRecord, kind: EventType) {
    #[derive(Serialize)]
    struct AgentData<'a> {
        agent_id: &'a str,
        agent: &'a AgentRecord,
        by_key_id: Option<&'a str>,
    }
    let data = AgentData { agent_id: &agent.id, agent, by_key_id: ctx.principal.key_id.as_deref() };
    app.events.emit(&Arc::from(agent.workspace.as_str()), kind, &data);
}
