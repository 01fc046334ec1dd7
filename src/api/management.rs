//! The management API for keys and workspaces (DESIGN.md, "Keys, scopes,
//! workspaces"), at `/v1/...` with seed 001's `/api/v1/keys/create` alias.
//!
//! Scopes: `full` manages keys of its own workspace (not `admin` keys);
//! `admin` manages keys of any workspace and workspaces themselves; `chat`
//! and `webhook` keys, and the config's static keys, manage nothing.
//! A key of another workspace is reported as not found, never as forbidden,
//! so a caller cannot probe which ids exist elsewhere.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::openai::read_body;
use crate::admin::{self, ManagementError};
use crate::app::{App, RequestContext};
use crate::auth::keys::NewKey;
use crate::body::Body;
use crate::error::{json_response, Error};
use crate::scope::Scope;
use crate::store::{KeyRecord, Workspace};

/// A key as the API shows it: never the plaintext (except once, at creation)
/// and never the hash.
#[derive(Serialize)]
struct KeyView<'a> {
    id: &'a str,
    object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    prefix: &'a str,
    name: &'a str,
    workspace: &'a str,
    scope: Scope,
    expires_at: Option<i64>,
    rpm: Option<u32>,
    tpm: Option<u32>,
    models: &'a Option<Vec<String>>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl<'a> KeyView<'a> {
    fn of(r: &'a KeyRecord, key: Option<&'a str>) -> Self {
        KeyView {
            id: &r.id,
            object: "api_key",
            key,
            prefix: &r.prefix,
            name: &r.name,
            workspace: &r.workspace,
            scope: r.scope,
            expires_at: r.expires_at,
            rpm: r.rpm,
            tpm: r.tpm,
            models: &r.models,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    json_response(status, serde_json::to_vec(value).expect("JSON serialises"))
}

/// The caller's workspace and scope, if it may manage keys at all.
fn manager(ctx: &RequestContext) -> Result<(&str, Scope), ManagementError> {
    match (ctx.principal.scope, ctx.principal.workspace.as_deref()) {
        (scope @ (Scope::Full | Scope::Admin), Some(ws)) => Ok((ws, scope)),
        _ => Err(ManagementError::InsufficientScope("manage keys")),
    }
}

pub(crate) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ManagementError> {
    crate::json::typed::parse_body(body).map_err(ManagementError::from)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    scope: Option<String>,
    workspace: Option<String>,
    expires_at: Option<i64>,
    rpm: Option<u32>,
    tpm: Option<u32>,
    models: Option<Vec<String>>,
}

/// Scope is checked before the body is read: a caller without the scope
/// cannot make the gateway buffer a body for nothing.
pub async fn create_key(app: &App, ctx: &RequestContext, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let (own, scope) = manager(ctx)?;
    let body = read_body(app, req).await?;
    let req: CreateKey = parse(&body)?;
    let key_scope = match req.scope.as_deref() {
        None => Scope::Chat,
        Some(s) => Scope::parse(s).ok_or_else(|| ManagementError::Invalid {
            param: "scope",
            message: format!("{s:?} is not one of chat, webhook, full, admin"),
        })?,
    };
    let workspace = match (scope, req.workspace) {
        (Scope::Admin, Some(ws)) => ws,
        // An admin works across workspaces: a key lands only where it is told to.
        (Scope::Admin, None) => {
            let message = "an admin key must name the workspace the new key belongs to".to_owned();
            return Err(ManagementError::Missing { param: "workspace", message }.into());
        }
        (_, Some(ws)) if ws != own => {
            return Err(ManagementError::InsufficientScope("create keys in another workspace").into())
        }
        (_, _) => own.to_owned(),
    };
    if key_scope == Scope::Admin && scope != Scope::Admin {
        return Err(ManagementError::InsufficientScope("create admin keys").into());
    }
    for model in req.models.iter().flatten() {
        if !app.agents.exists_in(&workspace, model).await.map_err(ManagementError::from)? {
            let message = format!("{model:?} is neither an agent nor a model alias");
            return Err(ManagementError::Invalid { param: "models", message }.into());
        }
    }
    let new = NewKey {
        name: req.name,
        workspace,
        scope: key_scope,
        expires_at: req.expires_at,
        rpm: req.rpm,
        tpm: req.tpm,
        models: req.models,
    };
    let issued = admin::create_key(&app.stores, new).await.map_err(ManagementError::from)?;
    tracing::info!(key = %issued.record.id, workspace = %issued.record.workspace, by = %ctx.principal.name, "key created");
    key_event(app, ctx, &issued.record, crate::events::EventType::KeyCreated);
    Ok(json(StatusCode::CREATED, &KeyView::of(&issued.record, Some(issued.plaintext.expose()))))
}

pub async fn list_keys(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let (own, scope) = manager(ctx)?;
    let query = super::Query::parse(query);
    let asked = query.get("workspace");
    let workspace = match (scope, asked) {
        (Scope::Admin, Some(ws)) => ws,
        (_, Some(ws)) if ws != own => {
            return Err(ManagementError::InsufficientScope("list another workspace's keys").into())
        }
        (_, _) => own,
    };
    let keys = admin::list_keys(&app.stores, workspace).await.map_err(ManagementError::from)?;
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<KeyView<'a>>,
    }
    Ok(json(StatusCode::OK, &List { object: "list", data: keys.iter().map(|k| KeyView::of(k, None)).collect() }))
}

/// The key `id` as the caller may see it: another workspace's key is not
/// found (unless the caller is an admin), never forbidden.
async fn visible_key(app: &App, ctx: &RequestContext, id: &str) -> Result<KeyRecord, ManagementError> {
    let (own, scope) = manager(ctx)?;
    let not_found = || ManagementError::NotFound(format!("key {id:?}"));
    let record = app.stores.keys.key_by_id(id).await.map_err(ManagementError::from)?.ok_or_else(not_found)?;
    if scope != Scope::Admin && record.workspace != own {
        return Err(not_found());
    }
    Ok(record)
}

/// `GET /v1/keys/{id}`: one key (never its plaintext or hash), revoked ones too.
pub async fn get_key(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let record = visible_key(app, ctx, id).await?;
    Ok(json(StatusCode::OK, &KeyView::of(&record, None)))
}

pub async fn revoke_key(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let (_, scope) = manager(ctx)?;
    let stores = &app.stores;
    let record = visible_key(app, ctx, id).await?;
    if scope != Scope::Admin && record.scope == Scope::Admin {
        return Err(ManagementError::InsufficientScope("revoke admin keys").into());
    }
    admin::revoke_key(stores, id).await.map_err(ManagementError::from)?;
    app.auth.forget(&record.hash).await;
    tracing::info!(key = %record.id, workspace = %record.workspace, by = %ctx.principal.name, "key revoked");
    key_event(app, ctx, &record, crate::events::EventType::KeyRevoked);
    #[derive(Serialize)]
    struct Revoked<'a> {
        id: &'a str,
        object: &'static str,
        revoked: bool,
    }
    Ok(json(StatusCode::OK, &Revoked { id, object: "api_key", revoked: true }))
}

/// `key.created` / `key.revoked` in the key's workspace (never the key itself).
fn key_event(app: &App, ctx: &RequestContext, key: &KeyRecord, kind: crate::events::EventType) {
    let events = &app.events;
    #[derive(Serialize)]
    struct KeyData<'a> {
        key_id: &'a str,
        name: &'a str,
        prefix: &'a str,
        scope: Scope,
        by_key_id: Option<&'a str>,
    }
    let data = KeyData {
        key_id: &key.id,
        name: &key.name,
        prefix: &key.prefix,
        scope: key.scope,
        by_key_id: ctx.principal.key_id.as_deref(),
    };
    events.emit(&std::sync::Arc::from(key.workspace.as_str()), kind, &data);
}

fn admin_only(ctx: &RequestContext) -> Result<(), ManagementError> {
    match (ctx.principal.scope, &ctx.principal.workspace) {
        (Scope::Admin, Some(_)) => Ok(()),
        _ => Err(ManagementError::InsufficientScope("manage workspaces")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWorkspace {
    id: String,
    name: Option<String>,
    plan: Option<String>,
    /// IANA name; the monthly credit refresh follows it (default UTC).
    time_zone: Option<String>,
    /// `credits.low` fires below this many micro-credits (default: a share
    /// of the plan's allowance, `events.low_credits_percent`).
    low_credits_threshold: Option<u64>,
}

pub async fn create_workspace(
    app: &App,
    ctx: &RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    admin_only(ctx)?;
    let body = read_body(app, req).await?;
    let req: CreateWorkspace = parse(&body)?;
    let plan = req.plan.as_deref().unwrap_or("default");
    let (name, time_zone) = (req.name.as_deref(), req.time_zone.as_deref());
    let low = req.low_credits_threshold;
    let ws: Workspace =
        admin::create_workspace_with(&app.stores, &app.plans.load(), &req.id, name, plan, time_zone, low)
            .await
            .map_err(ManagementError::from)?;
    Ok(json(StatusCode::CREATED, &WorkspaceView::of(&ws, None)))
}

/// `GET /v1/workspaces`: every workspace, by id (admin keys).
pub async fn list_workspaces(app: &App, ctx: &RequestContext) -> Result<Response<Body>, Error> {
    admin_only(ctx)?;
    let all = app.stores.workspaces.list_workspaces().await.map_err(ManagementError::from)?;
    let store = app.agents.store();
    // Read from the store, not the cache: an admin's list shows a change at once.
    let defaults = futures_util::future::try_join_all(all.iter().map(|ws| store.default_agent(&ws.id)))
        .await
        .map_err(ManagementError::from)?;
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<WorkspaceView<'a>>,
    }
    let data = all.iter().zip(defaults).map(|(ws, default)| WorkspaceView::of(ws, default)).collect();
    Ok(json(StatusCode::OK, &List { object: "list", data }))
}

pub async fn get_workspace(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    admin_only(ctx)?;
    let ws = app.stores.workspaces.workspace(id).await.map_err(ManagementError::from)?;
    let ws = ws.ok_or_else(|| ManagementError::NotFound(format!("workspace {id:?}")))?;
    let default_agent = app.agents.store().default_agent(id).await.map_err(ManagementError::from)?;
    Ok(json(StatusCode::OK, &WorkspaceView::of(&ws, default_agent)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchWorkspace {
    /// The agent a session uses when its message names none; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    default_agent: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `PATCH /v1/workspaces/{id}` with `{"default_agent": "..." | null}`: an
/// admin for any workspace, a `full` key for its own (another is not found).
/// The agent must resolve in that workspace (a config model or agent, or
/// one of its agents).
pub async fn update_workspace(
    app: &App,
    ctx: &RequestContext,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let (own, scope) = match (ctx.principal.scope, ctx.principal.workspace.as_deref()) {
        (scope @ (Scope::Full | Scope::Admin), Some(ws)) => (ws, scope),
        _ => return Err(ManagementError::InsufficientScope("change workspace settings").into()),
    };
    let not_found = || ManagementError::NotFound(format!("workspace {id:?}"));
    if scope != Scope::Admin && id != own {
        return Err(not_found().into());
    }
    let body = read_body(app, req).await?;
    let patch: PatchWorkspace = parse(&body)?;
    let ws = app.stores.workspaces.workspace(id).await.map_err(ManagementError::from)?.ok_or_else(not_found)?;
    let Some(default_agent) = patch.default_agent else {
        let message = "the only setting to change is default_agent (an agent id, or null)".to_owned();
        return Err(ManagementError::Missing { param: "default_agent", message }.into());
    };
    if let Some(agent) = &default_agent {
        if !app.agents.exists_in(id, agent).await.map_err(ManagementError::from)? {
            let message = format!("{agent:?} is not an agent or model of workspace {id:?}");
            return Err(ManagementError::Invalid { param: "default_agent", message }.into());
        }
    }
    let store = app.agents.store();
    store.set_default_agent(id, default_agent.as_deref()).await.map_err(ManagementError::from)?;
    app.agents.forget_default(id).await;
    tracing::info!(workspace = %id, default_agent = ?default_agent, by = %ctx.principal.name, "workspace updated");
    Ok(json(StatusCode::OK, &WorkspaceView::of(&ws, default_agent)))
}

#[derive(Serialize)]
struct WorkspaceView<'a> {
    #[serde(flatten)]
    workspace: &'a Workspace,
    /// Kept beside the workspace's agents (`agents::store`), shown here.
    default_agent: Option<String>,
    object: &'static str,
}

impl<'a> WorkspaceView<'a> {
    fn of(workspace: &'a Workspace, default_agent: Option<String>) -> Self {
        WorkspaceView { workspace, default_agent, object: "workspace" }
    }
}
