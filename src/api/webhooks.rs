//! The webhooks API: register, list, delete, test, rotate a secret, and read
//! delivery attempts; and the event log (`GET /v1/events`).
//!
//! Who may: `webhook` and `full` keys manage their own workspace's webhooks
//! and read its events; `admin` keys any workspace's (`workspace` in the body
//! or `?workspace=`); `chat` keys and static config keys none. A webhook of
//! another workspace is reported as not found.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::management::{json, parse};
use super::openai::read_body;
use super::Query;
use crate::admin::ManagementError;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::error::Error;
use crate::events::{rfc3339_ms, sign, ssrf, EventQuery, EventType, Events, Webhook};
use crate::scope::Scope;
use crate::secret::Secret;

/// Most events per page of `GET /v1/events`.
const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 50;

/// The caller's workspace and whether it is an admin, if it may use this API.
fn caller(ctx: &RequestContext) -> Result<(&str, bool), ManagementError> {
    match (ctx.principal.scope, ctx.principal.workspace.as_deref()) {
        (Scope::Webhook | Scope::Full, Some(ws)) => Ok((ws, false)),
        (Scope::Admin, Some(ws)) => Ok((ws, true)),
        _ => Err(ManagementError::InsufficientScope("manage webhooks or read events")),
    }
}

/// The workspace asked for, if the caller may act on it.
fn workspace<'a>(ctx: &'a RequestContext, asked: Option<&'a str>) -> Result<&'a str, ManagementError> {
    let (own, admin) = caller(ctx)?;
    match asked {
        Some(ws) if ws != own && !admin => Err(ManagementError::InsufficientScope("act on another workspace")),
        Some(ws) => Ok(ws),
        None => Ok(own),
    }
}

/// The webhook `id`, if the caller may see it.
async fn owned_webhook(events: &Events, ctx: &RequestContext, id: &str) -> Result<Webhook, ManagementError> {
    let (own, admin) = caller(ctx)?;
    let not_found = || ManagementError::NotFound(format!("webhook {id:?}"));
    match events.webhooks.webhook(id).await? {
        Some(w) if admin || w.workspace == own => Ok(w),
        _ => Err(not_found()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    url: String,
    /// Event types, or `["*"]` (the default) for all.
    events: Option<Vec<String>>,
    secret: Option<String>,
    description: Option<String>,
    workspace: Option<String>,
}

#[derive(Serialize)]
struct WithSecret<'a, T: Serialize> {
    #[serde(flatten)]
    view: T,
    /// Shown here once; never listed again.
    secret: &'a str,
}

pub async fn create(app: &App, ctx: &RequestContext, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    caller(ctx)?;
    let events = &app.events;
    let body = read_body(app, req).await?;
    let req: CreateWebhook = parse(&body)?;
    let ws = workspace(ctx, req.workspace.as_deref())?.to_owned();
    let types = req.events.unwrap_or_else(|| vec!["*".to_owned()]);
    if types.is_empty() || types.len() > EventType::ALL.len() {
        let message = "list one or more event types, or \"*\" for all".to_owned();
        return Err(ManagementError::Invalid { param: "events", message }.into());
    }
    if let Some(bad) = types.iter().find(|t| *t != "*" && EventType::parse(t).is_none()) {
        let known: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let message = format!("{bad:?} is not an event type; known: {}, or \"*\"", known.join(", "));
        return Err(ManagementError::Invalid { param: "events", message }.into());
    }
    if req.description.as_ref().is_some_and(|d| d.len() > 512) {
        let message = "at most 512 bytes".to_owned();
        return Err(ManagementError::Invalid { param: "description", message }.into());
    }
    let allow_private = events.webhook_config.load().allow_private_targets;
    ssrf::check_url(&req.url, allow_private)
        .await
        .map_err(|e| ManagementError::Invalid { param: "url", message: e.to_string() })?;
    let secret = match req.secret {
        Some(s) => sign::normalize_secret(&s)
            .map_err(|e| ManagementError::Invalid { param: "secret", message: e.to_string() })?,
        None => sign::generate_secret(),
    };
    let webhook = Webhook {
        id: format!("wh_{}", hex::encode(rand::random::<[u8; 12]>())),
        workspace: ws,
        url: req.url,
        events: types,
        description: req.description,
        secret: Secret::new(secret),
        previous_secret: None,
        previous_until_ms: None,
        created_at: crate::store::now(),
        disabled_at: None,
        disabled_reason: None,
        failures: 0,
    };
    let max = events.webhook_config.load().max_per_workspace;
    events.webhooks.insert_webhook(&webhook, max).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            ManagementError::Conflict(format!("the workspace's limit of {max} webhooks is reached; a webhook"))
        }
        e => e.into(),
    })?;
    tracing::info!(webhook = %webhook.id, workspace = %webhook.workspace, by = %ctx.principal.name, "webhook registered");
    let secret = webhook.secret.expose();
    Ok(json(StatusCode::CREATED, &WithSecret { view: webhook.view(), secret }))
}

pub async fn list(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let query = Query::parse(query);
    let ws = workspace(ctx, query.get("workspace"))?;
    let hooks = app.events.webhooks.list_webhooks(ws).await.map_err(ManagementError::from)?;
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<crate::events::webhook::WebhookView<'a>>,
    }
    Ok(json(StatusCode::OK, &List { object: "list", data: hooks.iter().map(Webhook::view).collect() }))
}

pub async fn get(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let webhook = owned_webhook(&app.events, ctx, id).await?;
    Ok(json(StatusCode::OK, &webhook.view()))
}

pub async fn delete(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let events = &app.events;
    let webhook = owned_webhook(events, ctx, id).await?;
    events.webhooks.delete_webhook(&webhook.id).await.map_err(ManagementError::from)?;
    tracing::info!(webhook = %webhook.id, by = %ctx.principal.name, "webhook deleted");
    #[derive(Serialize)]
    struct Deleted<'a> {
        id: &'a str,
        object: &'static str,
        deleted: bool,
    }
    Ok(json(StatusCode::OK, &Deleted { id, object: "webhook", deleted: true }))
}

/// Queues a `webhook.test` event to this webhook only (not logged).
pub async fn test(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    let events = &app.events;
    let webhook = owned_webhook(events, ctx, id).await?;
    if webhook.disabled_at.is_some() {
        let message = "the webhook is disabled; register it again to receive events".to_owned();
        return Err(ManagementError::Invalid { param: "id", message }.into());
    }
    #[derive(Serialize)]
    struct TestData<'a> {
        webhook_id: &'a str,
        message: &'static str,
    }
    let data = TestData { webhook_id: &webhook.id, message: "a test event from tollgate" };
    let event = events.factory.event(Arc::from(webhook.workspace.as_str()), EventType::WebhookTest, &data);
    events.queue.enqueue(&webhook, &event).await.map_err(ManagementError::from)?;
    events.bus.deliveries_queued.notify_one();
    #[derive(Serialize)]
    struct Queued<'a> {
        object: &'static str,
        webhook_id: &'a str,
        event_id: &'a str,
        status: &'static str,
    }
    let queued = Queued { object: "webhook.test", webhook_id: &webhook.id, event_id: &event.id, status: "queued" };
    Ok(json(StatusCode::ACCEPTED, &queued))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    secret: Option<String>,
}

/// A new secret; the old one keeps signing for `webhooks.secret_grace_ms`.
pub async fn rotate_secret(
    app: &App,
    ctx: &RequestContext,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let events = &app.events;
    let webhook = owned_webhook(events, ctx, id).await?;
    let body = read_body(app, req).await?;
    let req: Rotate = if body.iter().all(u8::is_ascii_whitespace) { Rotate::default() } else { parse(&body)? };
    let secret = match req.secret {
        Some(s) => sign::normalize_secret(&s)
            .map_err(|e| ManagementError::Invalid { param: "secret", message: e.to_string() })?,
        None => sign::generate_secret(),
    };
    let until = events.clock.now_ms() + events.webhook_config.load().secret_grace.as_millis() as i64;
    if !events.webhooks.rotate_secret(&webhook.id, &secret, until).await.map_err(ManagementError::from)? {
        return Err(ManagementError::NotFound(format!("webhook {id:?}")).into());
    }
    tracing::info!(webhook = %webhook.id, by = %ctx.principal.name, "webhook secret rotated");
    #[derive(Serialize)]
    struct Rotated<'a> {
        id: &'a str,
        object: &'static str,
        secret: &'a str,
        previous_secret_expires_at: i64,
    }
    let rotated = Rotated { id, object: "webhook", secret: &secret, previous_secret_expires_at: until / 1000 };
    Ok(json(StatusCode::OK, &rotated))
}

/// The webhook's latest delivery attempts, newest first.
pub async fn deliveries(
    app: &App,
    ctx: &RequestContext,
    id: &str,
    query: Option<&str>,
) -> Result<Response<Body>, Error> {
    let events = &app.events;
    let webhook = owned_webhook(events, ctx, id).await?;
    let kept = events.webhook_config.load().attempts_kept;
    let limit = page_limit(&Query::parse(query), kept.min(DEFAULT_PAGE), kept)?;
    let attempts = events.queue.attempts(&webhook, limit).await.map_err(ManagementError::from)?;
    #[derive(Serialize)]
    struct View<'a> {
        object: &'static str,
        #[serde(flatten)]
        attempt: &'a crate::events::Attempt,
        timestamp: String,
    }
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        webhook_id: &'a str,
        data: Vec<View<'a>>,
    }
    let data = attempts
        .iter()
        .map(|a| View { object: "webhook.delivery_attempt", attempt: a, timestamp: rfc3339_ms(a.at_ms) })
        .collect();
    Ok(json(StatusCode::OK, &List { object: "list", webhook_id: &webhook.id, data }))
}

fn page_limit(query: &Query<'_>, default: usize, max: usize) -> Result<usize, ManagementError> {
    match query.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ManagementError::Invalid { param: "limit", message: format!("must be 1 to {max}") }),
        },
    }
}

/// `GET /v1/events?type=&after=&limit=&order=`: a workspace's event log.
pub async fn list_events(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let query = Query::parse(query);
    let ws = workspace(ctx, query.get("workspace"))?;
    let events = &app.events;
    let types: Vec<String> = query
        .get("type")
        .map(|t| t.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(bad) = types.iter().find(|t| EventType::parse(t).is_none()) {
        let message = format!("{bad:?} is not an event type");
        return Err(ManagementError::Invalid { param: "type", message }.into());
    }
    let ascending = match query.get("order") {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            let message = format!("{other:?}: use asc (oldest first) or desc (newest first)");
            return Err(ManagementError::Invalid { param: "order", message }.into());
        }
    };
    let after = query.get("after").map(str::to_owned);
    if after
        .as_deref()
        .is_some_and(|c| c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
    {
        let message = "pass the next_cursor of the previous page".to_owned();
        return Err(ManagementError::Invalid { param: "after", message }.into());
    }
    let limit = page_limit(&query, DEFAULT_PAGE, MAX_PAGE)?;
    let q = EventQuery { types, after, limit, ascending };
    let page = events.log.list_events(ws, &q).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            ManagementError::Invalid { param: "after", message: "not a cursor of this log".into() }
        }
        e => e.into(),
    })?;
    #[derive(Serialize)]
    struct Page<'a> {
        object: &'static str,
        data: &'a [Box<serde_json::value::RawValue>],
        has_more: bool,
        next_cursor: Option<&'a str>,
    }
    let page = Page {
        object: "list",
        data: &page.events,
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor.as_deref(),
    };
    Ok(json(StatusCode::OK, &page))
}
