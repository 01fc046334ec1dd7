//! What the gateway serves: one table of method, path, the access each route
//! needs and its handler — the only place a route is written — and the
//! request path every route shares.
//!
//! Every request goes through [`handle`], in this order:
//! 1. **request id** — the client's `x-request-id` if it is sane, else a new
//!    one; echoed on every response and sent upstream.
//! 2. **route** — method + path from [`ROUTES`] through [`crate::router`];
//!    unknown → 404, wrong method → 405 with `Allow`.
//! 3. **auth** — every route not [`Access::Public`] authenticates the key
//!    (`Authorization: Bearer` or `X-API-Key`) into a principal: static
//!    config keys first, then the key store through a cache (no store round
//!    trip for a known key); 401 otherwise, 503 if the store cannot answer.
//! 4. **access** — the route's scopes (and whether it needs a workspace) are
//!    checked here, once; 403 `insufficient_scope` naming what was refused.
//!    Handlers still decide *which* workspace a key may touch.
//! 5. **handler** — for the model API, the adapter over [`crate::pipeline`]:
//!    read the body (bounded in size and time), parse, resolve, rewrite, admit,
//!    send, relay, account.
//! 6. **errors** — any typed error becomes the OpenAI error JSON, once
//!    ([`crate::error`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::admin::ManagementError;
use crate::api;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::error::Error;
use crate::request::Endpoint;
use crate::router::{Params, Router, Verb};
use crate::scope::Scope;

/// A handler's future; boxed once per request so one table can hold them all.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send + 'a>>;

/// A route's handler: the shared state, what the path established, the request.
pub type Handler = for<'a> fn(&'a App, &'a RequestContext, Call) -> Answer<'a>;

/// The request as a handler receives it.
pub struct Call {
    pub req: Request<Incoming>,
    pub params: Params,
}

impl Call {
    /// The path parameter `name` (see the route's pattern).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name)
    }

    pub fn query(&self) -> Option<&str> {
        self.req.uri().query()
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (health checks).
    Public,
    /// A key of one of `scopes`; `workspace` when the route acts inside one
    /// (the config's static keys have none, but for admin keys). `what` ends
    /// the 403 message: "This API key's scope may not {what}."
    Key { scopes: &'static [Scope], workspace: bool, what: &'static str },
}

impl Access {
    fn check(&self, scope: Scope, has_workspace: bool) -> Result<(), ManagementError> {
        match *self {
            Access::Public => Ok(()),
            Access::Key { scopes, workspace, what } => {
                if scopes.contains(&scope) && (has_workspace || !workspace) {
                    Ok(())
                } else {
                    Err(ManagementError::InsufficientScope(what))
                }
            }
        }
    }
}

const PUBLIC: Access = Access::Public;
const MODEL: Access =
    Access::Key { scopes: &[Scope::Chat, Scope::Full, Scope::Admin], workspace: false, what: "call the model API" };
/// Sessions act inside the key's own workspace (the path names it).
const SESSIONS: Access =
    Access::Key { scopes: &[Scope::Chat, Scope::Full, Scope::Admin], workspace: true, what: "use workspace sessions" };
const CREDITS: Access = Access::Key {
    scopes: &[Scope::Chat, Scope::Webhook, Scope::Full, Scope::Admin],
    workspace: true,
    what: "read credits",
};
const TOP_UP: Access = Access::Key { scopes: &[Scope::Admin], workspace: true, what: "top up credits" };
const KEYS: Access = Access::Key { scopes: &[Scope::Full, Scope::Admin], workspace: true, what: "manage keys" };
const RELOAD: Access = Access::Key { scopes: &[Scope::Admin], workspace: false, what: "reload the config" };
const WORKSPACES: Access = Access::Key { scopes: &[Scope::Admin], workspace: true, what: "manage workspaces" };
/// A workspace's own settings (`default_agent`): its `full` keys or an admin.
const WORKSPACE_SETTINGS: Access =
    Access::Key { scopes: &[Scope::Full, Scope::Admin], workspace: true, what: "change workspace settings" };
const AGENTS: Access = Access::Key { scopes: &[Scope::Full, Scope::Admin], workspace: true, what: "manage agents" };
const WEBHOOKS: Access = Access::Key {
    scopes: &[Scope::Webhook, Scope::Full, Scope::Admin],
    workspace: true,
    what: "manage webhooks or read events",
};

/// One row of the table.
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

/// Wraps a handler body as a [`Handler`]: `handler!(|app, ctx, call| expr)`,
/// where `expr` is awaited.
macro_rules! handler {
    (|$app:ident, $ctx:ident, $call:ident| $body:expr) => {{
        #[allow(unused_variables)]
        fn handler<'a>($app: &'a App, $ctx: &'a RequestContext, $call: Call) -> Answer<'a> {
            Box::pin(async move { $body })
        }
        handler as Handler
    }};
}

const fn route(verb: Verb, path: &'static str, access: Access, handler: Handler) -> Route {
    Route { verb, path, access, handler }
}

use Verb::{Delete, Get, Post};

mod serve;
mod work;

pub use serve::handle;

/// Every table: the routes below and scheduled work's (`routes/work.rs`).
fn all_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().chain(work::ROUTES)
}

/// Everything the gateway serves, below `/v1` (and its alias roots).
pub static ROUTES: &[Route] = &[
    route(Get, "/metrics", PUBLIC, handler!(|app, ctx, call| Ok(api::metrics::metrics(app, call.req.headers()).await))),
    route(Get, "/healthz", PUBLIC, handler!(|app, ctx, call| Ok(api::health::healthz()))),
    route(
        Get,
        "/readyz",
        PUBLIC,
        handler!(|app, ctx, call| Ok(api::health::readyz(app.drain.is_draining(), &app.stores).await)),
    ),
    // The model API.
    route(
        Post,
        "/chat/completions",
        MODEL,
        handler!(|app, ctx, call| api::openai::model_call(app, ctx, Endpoint::Chat, call.req).await),
    ),
    route(
        Post,
        "/completions",
        MODEL,
        handler!(|app, ctx, call| api::openai::model_call(app, ctx, Endpoint::Completions, call.req).await),
    ),
    route(
        Post,
        "/embeddings",
        MODEL,
        handler!(|app, ctx, call| api::openai::model_call(app, ctx, Endpoint::Embeddings, call.req).await),
    ),
    route(Post, "/responses", MODEL, handler!(|app, ctx, call| api::responses_http::create(app, ctx, call.req).await)),
    route(
        Get,
        "/responses/{id}",
        MODEL,
        handler!(|app, ctx, call| api::responses_http::get(app, ctx, call.param("id")).await),
    ),
    route(
        Delete,
        "/responses/{id}",
        MODEL,
        handler!(|app, ctx, call| api::responses_http::delete(app, ctx, call.param("id")).await),
    ),
    route(
        Get,
        "/responses/{id}/input_items",
        MODEL,
        handler!(|app, ctx, call| api::responses_http::input_items(app, ctx, call.param("id"), call.query()).await),
    ),
    route(Get, "/models", MODEL, handler!(|app, ctx, call| api::models::list(&app.agents, &ctx.principal).await)),
    route(
        Get,
        "/models/{*id}",
        MODEL,
        handler!(|app, ctx, call| api::models::get(&app.agents, &ctx.principal, call.param("id")).await),
    ),
    // Seed 002's stateful chat.
    route(Post, "/chat", MODEL, handler!(|app, ctx, call| api::chat::post(app, ctx, call.req).await)),
    route(Get, "/chat", MODEL, handler!(|app, ctx, call| api::chat::list(app, ctx, call.query()).await)),
    route(
        Get,
        "/chat/{id}",
        MODEL,
        handler!(|app, ctx, call| api::chat::get(app, ctx, call.param("id"), call.query()).await),
    ),
    route(Delete, "/chat/{id}", MODEL, handler!(|app, ctx, call| api::chat::delete(app, ctx, call.param("id")).await)),
    // Seed 000's workspace sessions (and its singular `session` path).
    route(
        Post,
        "/workspaces/{ws}/sessions/{id}/messages",
        SESSIONS,
        handler!(|app, ctx, call| {
            let (ws, id) = (call.param("ws").to_owned(), call.param("id").to_owned());
            api::sessions::post_message(app, ctx, &ws, &id, call.req).await
        }),
    ),
    route(
        Post,
        "/workspaces/{ws}/session/{id}/messages",
        SESSIONS,
        handler!(|app, ctx, call| {
            let (ws, id) = (call.param("ws").to_owned(), call.param("id").to_owned());
            api::sessions::post_message(app, ctx, &ws, &id, call.req).await
        }),
    ),
    route(
        Get,
        "/workspaces/{ws}/sessions",
        SESSIONS,
        handler!(|app, ctx, call| api::sessions::list(app, ctx, call.param("ws"), call.query()).await),
    ),
    route(
        Get,
        "/workspaces/{ws}/sessions/{id}",
        SESSIONS,
        handler!(|app, ctx, call| api::sessions::get(app, ctx, call.param("ws"), call.param("id"), call.query()).await),
    ),
    route(
        Get,
        "/workspaces/{ws}/session/{id}",
        SESSIONS,
        handler!(|app, ctx, call| api::sessions::get(app, ctx, call.param("ws"), call.param("id"), call.query()).await),
    ),
    route(
        Delete,
        "/workspaces/{ws}/sessions/{id}",
        SESSIONS,
        handler!(|app, ctx, call| api::sessions::delete(app, ctx, call.param("ws"), call.param("id")).await),
    ),
    route(
        Delete,
        "/workspaces/{ws}/session/{id}",
        SESSIONS,
        handler!(|app, ctx, call| api::sessions::delete(app, ctx, call.param("ws"), call.param("id")).await),
    ),
    // Keys and workspaces.
    route(Post, "/keys", KEYS, handler!(|app, ctx, call| api::management::create_key(app, ctx, call.req).await)),
    // Seed 001's path for creating a key.
    route(Post, "/keys/create", KEYS, handler!(|app, ctx, call| api::management::create_key(app, ctx, call.req).await)),
    route(Get, "/keys", KEYS, handler!(|app, ctx, call| api::management::list_keys(app, ctx, call.query()).await)),
    route(
        Get,
        "/keys/{id}",
        KEYS,
        handler!(|app, ctx, call| api::management::get_key(app, ctx, call.param("id")).await),
    ),
    route(
        Delete,
        "/keys/{id}",
        KEYS,
        handler!(|app, ctx, call| api::management::revoke_key(app, ctx, call.param("id")).await),
    ),
    route(Post, "/admin/reload", RELOAD, handler!(|app, ctx, call| api::reload::reload(app))),
    route(Get, "/workspaces", WORKSPACES, handler!(|app, ctx, call| api::management::list_workspaces(app, ctx).await)),
    route(
        Post,
        "/workspaces",
        WORKSPACES,
        handler!(|app, ctx, call| api::management::create_workspace(app, ctx, call.req).await),
    ),
    route(
        Get,
        "/workspaces/{id}",
        WORKSPACES,
        handler!(|app, ctx, call| api::management::get_workspace(app, ctx, call.param("id")).await),
    ),
    route(
        Verb::Patch,
        "/workspaces/{id}",
        WORKSPACE_SETTINGS,
        handler!(|app, ctx, call| {
            let id = call.param("id").to_owned();
            api::management::update_workspace(app, ctx, &id, call.req).await
        }),
    ),
    // A workspace's own agents.
    route(Post, "/agents", AGENTS, handler!(|app, ctx, call| api::agents::create(app, ctx, call.req).await)),
    route(Get, "/agents", AGENTS, handler!(|app, ctx, call| api::agents::list(app, ctx, call.query()).await)),
    route(
        Get,
        "/agents/{id}",
        AGENTS,
        handler!(|app, ctx, call| api::agents::get(app, ctx, call.param("id"), call.query()).await),
    ),
    route(
        Verb::Patch,
        "/agents/{id}",
        AGENTS,
        handler!(|app, ctx, call| {
            let (id, query) = (call.param("id").to_owned(), call.query().map(str::to_owned));
            api::agents::update(app, ctx, &id, query.as_deref(), call.req).await
        }),
    ),
    route(
        Delete,
        "/agents/{id}",
        AGENTS,
        handler!(|app, ctx, call| api::agents::delete(app, ctx, call.param("id"), call.query()).await),
    ),
    // Credits and usage.
    route(Get, "/credits", CREDITS, handler!(|app, ctx, call| api::credits::get_credits(app, ctx, call.query()).await)),
    route(Post, "/credits/topup", TOP_UP, handler!(|app, ctx, call| api::credits::top_up(app, ctx, call.req).await)),
    route(Get, "/usage", CREDITS, handler!(|app, ctx, call| api::credits::get_usage(app, ctx, call.query()).await)),
    // Events and webhooks.
    route(
        Get,
        "/events",
        WEBHOOKS,
        handler!(|app, ctx, call| api::webhooks::list_events(app, ctx, call.query()).await),
    ),
    route(Post, "/webhooks", WEBHOOKS, handler!(|app, ctx, call| api::webhooks::create(app, ctx, call.req).await)),
    // Seed 001's path for registering an outgoing webhook.
    route(
        Post,
        "/webhooks/outgoing/register",
        WEBHOOKS,
        handler!(|app, ctx, call| api::webhooks::create(app, ctx, call.req).await),
    ),
    route(Get, "/webhooks", WEBHOOKS, handler!(|app, ctx, call| api::webhooks::list(app, ctx, call.query()).await)),
    route(
        Get,
        "/webhooks/{id}",
        WEBHOOKS,
        handler!(|app, ctx, call| api::webhooks::get(app, ctx, call.param("id")).await),
    ),
    route(
        Delete,
        "/webhooks/{id}",
        WEBHOOKS,
        handler!(|app, ctx, call| api::webhooks::delete(app, ctx, call.param("id")).await),
    ),
    route(
        Post,
        "/webhooks/{id}/test",
        WEBHOOKS,
        handler!(|app, ctx, call| api::webhooks::test(app, ctx, call.param("id")).await),
    ),
    route(
        Post,
        "/webhooks/{id}/rotate-secret",
        WEBHOOKS,
        handler!(|app, ctx, call| {
            let id = call.param("id").to_owned();
            api::webhooks::rotate_secret(app, ctx, &id, call.req).await
        }),
    ),
    route(
        Get,
        "/webhooks/{id}/deliveries",
        WEBHOOKS,
        handler!(|app, ctx, call| api::webhooks::deliveries(app, ctx, call.param("id"), call.query()).await),
    ),
];

/// The table compiled once.
fn router() -> &'static Router<&'static Route> {
    static ROUTER: OnceLock<Router<&'static Route>> = OnceLock::new();
    ROUTER.get_or_init(|| Router::new(all_routes().map(|r| (r.verb, r.path, r))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn the_table_compiles_and_every_pattern_is_reachable() {
        let router = router();
        for r in all_routes() {
            let path = format!("/v1{}", r.path.replace("{*id}", "a/b").replace("{id}", "x1"));
            let method = match r.verb {
                Verb::Get => Method::GET,
                Verb::Post => Method::POST,
                Verb::Patch => Method::PATCH,
                Verb::Delete => Method::DELETE,
            };
            let (found, _) = router.find(&method, &path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(std::ptr::eq(*found, r), "{method} {path} reaches its own row");
        }
    }

    #[test]
    fn access_is_checked_once_with_the_routes_words() {
        assert!(MODEL.check(Scope::Chat, false).is_ok(), "static chat keys call models");
        assert!(MODEL.check(Scope::Webhook, true).is_err());
        assert!(KEYS.check(Scope::Full, true).is_ok());
        assert!(KEYS.check(Scope::Chat, true).is_err());
        assert!(WORKSPACES.check(Scope::Admin, false).is_err(), "a route inside workspaces needs one");
        let Err(e) = WEBHOOKS.check(Scope::Chat, true) else { panic!("chat keys manage no webhooks") };
        assert_eq!(e.to_string(), "This API key's scope may not manage webhooks or read events.");
    }
}
