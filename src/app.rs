//! The gateway's shared state and its request pipeline.
//!
//! Every request goes through [`App::handle`], in this order:
//! 1. **request id** — the client's `x-request-id` if it is sane, else a new
//!    one; echoed on every response and sent upstream.
//! 2. **route** — method + path from [`crate::router`]; unknown → 404, wrong
//!    method → 405.
//! 3. **auth** — every route not listed public authenticates the key
//!    (`Authorization: Bearer` or `X-API-Key`) into a [`Principal`]: static
//!    config keys first, then the key store through a cache (no store round
//!    trip for a known key); 401 otherwise, 503 if the store cannot answer.
//! 4. **handler** — for the model API ([`crate::api::openai`]): read the body
//!    (bounded in size and time, 413/408), parse and validate it (400), resolve the
//!    model for the caller (404/403), rewrite it for the agent, check the rate
//!    limits and reserve the worst-case credits in one ledger step (429), send
//!    it upstream with retries, relay the answer (SSE as it arrives), record
//!    its usage and settle its credits (never blocking the response).
//! 5. **errors** — any typed error becomes the OpenAI error JSON here, once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use crate::agents::Catalog;
use crate::api::management::{self, ManagementError};
use crate::api::{self, request::Endpoint};
use crate::auth::{Authenticator, Principal};
use crate::body::Body;
use crate::config::{Config, ServerConfig};
use crate::credits::Meter;
use crate::error::{Error, Origin};
use crate::router::{self, Route};
use crate::store::{KeyStore, Scope, Stores};
use crate::upstream::Provider;
use crate::usage::{LogUsageSink, UsageSink};

/// Shared, read-only after startup (but for the atomics inside `connections`
/// and `drain`): no field needs a lock.
pub struct App {
    pub server: ServerConfig,
    pub catalog: Catalog,
    /// Static keys, then the key store through its cache.
    pub auth: Authenticator,
    /// Keys and workspaces, for the management API; `None` serves static
    /// keys only (embedding, tests).
    pub stores: Option<Stores>,
    /// The config's plans, for workspaces created through the API.
    pub plans: std::collections::BTreeMap<String, crate::config::PlanConfig>,
    /// Where usage records go (a log line now; events later).
    pub usage: Arc<dyn UsageSink>,
    /// Rate limits and credits; `None` meters nothing (no store).
    pub meter: Option<Arc<Meter>>,
    /// Events, webhooks and their delivery; `None` emits nothing (no store).
    pub events: Option<Arc<crate::events::Events>>,
    /// The process's client connections: the `max_connections` bound shared
    /// by every worker, and each connection's idle watchdog state.
    pub connections: Arc<crate::server::Connections>,
    /// Shutdown's state, shared by every worker (see `server::drain`).
    pub drain: crate::server::Drain,
    /// Stored responses: retention and how much history a continuation loads.
    pub responses: crate::config::ResponsesConfig,
    request_ids: RequestIds,
}

/// What the pipeline established before the handler runs.
pub struct RequestContext {
    pub request_id: HeaderValue,
    pub started: Instant,
    pub principal: Arc<Principal>,
}

impl App {
    pub fn new(config: &Config) -> Result<App, String> {
        let mut providers = HashMap::new();
        for (name, provider) in &config.providers {
            providers.insert(name.clone(), Arc::new(Provider::from_config(name, provider, config.server.workers)?));
        }
        Ok(App {
            server: config.server.clone(),
            catalog: Catalog::new(config, &providers),
            auth: Authenticator::new(&config.keys, config.store.key_cache_ttl)
                .with_stale_if_error(config.store.key_stale_if_error),
            stores: None,
            plans: config.plans.clone(),
            usage: Arc::new(LogUsageSink),
            meter: None,
            events: None,
            connections: crate::server::Connections::new(config.server.max_connections),
            drain: crate::server::Drain::default(),
            responses: config.responses.clone(),
            request_ids: RequestIds::new(),
        })
    }

    /// Adds the key store (without it, only the config's static keys work).
    pub fn with_key_store(mut self, store: Arc<dyn KeyStore>) -> App {
        self.auth = self.auth.with_store(store);
        self
    }

    /// Adds the stores: store-backed keys and the management API.
    pub fn with_stores(self, stores: Stores) -> App {
        let mut app = self.with_key_store(stores.keys.clone());
        app.stores = Some(stores);
        app
    }

    /// Adds rate limits and credits (see [`crate::credits`]).
    pub fn with_meter(mut self, meter: Arc<Meter>) -> App {
        self.meter = Some(meter);
        self
    }

    /// Adds events and webhooks (see [`crate::events`]).
    pub fn with_events(mut self, events: Arc<crate::events::Events>) -> App {
        self.events = Some(events);
        self
    }

    /// Replaces the usage sink (credits, events, or a test's recorder).
    pub fn with_usage_sink(mut self, sink: Arc<dyn UsageSink>) -> App {
        self.usage = sink;
        self
    }

    /// Runs one request through the pipeline described in the module doc.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let request_id = self.request_ids.for_request(req.headers());
        // Kept for the error log line; both clones are cheap (no copy of the path).
        let method = req.method().clone();
        let uri = req.uri().clone();
        let path = uri.path();
        let result = match router::route(&method, path) {
            Ok(route) => self.dispatch(route, req, request_id.clone(), started).await,
            Err(e) => Err(e.into()),
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                log_error(&error, &request_id, &method, path, started);
                error.to_response()
            }
        };
        if method == Method::HEAD {
            *response.body_mut() = Body::empty();
        }
        response.headers_mut().insert("x-request-id", request_id);
        response
    }

    async fn dispatch(
        &self,
        route: Route,
        req: Request<Incoming>,
        request_id: HeaderValue,
        started: Instant,
    ) -> Result<Response<Body>, Error> {
        if route.is_public() {
            return Ok(match route {
                Route::Health => api::health::healthz(),
                Route::Ready => api::health::readyz(self.drain.is_draining()),
                _ => unreachable!("only the routes listed in Route::is_public get here"),
            });
        }
        let principal = self.auth.authenticate(req.headers(), crate::store::now()).await?;
        let ctx = RequestContext { request_id, started, principal };
        let model_api = matches!(
            route,
            Route::ChatCompletions
                | Route::Completions
                | Route::Embeddings
                | Route::ListModels
                | Route::GetModel(_)
                | Route::CreateResponse
                | Route::GetResponse(_)
                | Route::DeleteResponse(_)
                | Route::ResponseInputItems(_)
        );
        if model_api && ctx.principal.scope == Scope::Webhook {
            return Err(ManagementError::InsufficientScope("call the model API").into());
        }
        match route {
            Route::ChatCompletions => api::openai::model_call(self, &ctx, Endpoint::Chat, req).await,
            Route::Completions => api::openai::model_call(self, &ctx, Endpoint::Completions, req).await,
            Route::Embeddings => api::openai::model_call(self, &ctx, Endpoint::Embeddings, req).await,
            Route::CreateResponse => api::responses_http::create(self, &ctx, req).await,
            Route::GetResponse(id) => api::responses_http::get(self, &ctx, &id).await,
            Route::DeleteResponse(id) => api::responses_http::delete(self, &ctx, &id).await,
            Route::ResponseInputItems(id) => api::responses_http::input_items(self, &ctx, &id, req.uri().query()).await,
            Route::ListModels => Ok(api::models::list(&self.catalog, &ctx.principal)),
            Route::GetModel(id) => api::models::get(&self.catalog, &ctx.principal, &id),
            Route::CreateKey => management::create_key(self, &ctx, req).await,
            Route::ListKeys => management::list_keys(self, &ctx, req.uri().query()).await,
            Route::RevokeKey(id) => management::revoke_key(self, &ctx, &id).await,
            Route::CreateWorkspace => management::create_workspace(self, &ctx, req).await,
            Route::GetWorkspace(id) => management::get_workspace(self, &ctx, &id).await,
            Route::GetCredits => api::credits::get_credits(self, &ctx, req.uri().query()).await,
            Route::TopUpCredits => api::credits::top_up(self, &ctx, req).await,
            Route::GetUsage => api::credits::get_usage(self, &ctx, req.uri().query()).await,
            Route::ListEvents => api::webhooks::list_events(self, &ctx, req.uri().query()).await,
            Route::CreateWebhook => api::webhooks::create(self, &ctx, req).await,
            Route::ListWebhooks => api::webhooks::list(self, &ctx, req.uri().query()).await,
            Route::GetWebhook(id) => api::webhooks::get(self, &ctx, &id).await,
            Route::DeleteWebhook(id) => api::webhooks::delete(self, &ctx, &id).await,
            Route::TestWebhook(id) => api::webhooks::test(self, &ctx, &id).await,
            Route::RotateWebhookSecret(id) => api::webhooks::rotate_secret(self, &ctx, &id, req).await,
            Route::WebhookDeliveries(id) => api::webhooks::deliveries(self, &ctx, &id, req.uri().query()).await,
            Route::Health | Route::Ready => unreachable!("public routes are answered above"),
        }
    }
}

fn log_error(error: &Error, request_id: &HeaderValue, method: &Method, path: &str, started: Instant) {
    let request_id = request_id.to_str().unwrap_or_default();
    let ms = started.elapsed().as_millis() as u64;
    match (error.origin(), error) {
        (Origin::Client, _) => {
            tracing::info!(target: "tollgate::access", request_id, %method, path, ms, error = %error, "request refused")
        }
        (_, Error::Upstream(e)) => tracing::warn!(
            target: "tollgate::access",
            request_id, %method, path, ms, code = e.code(), detail = e.detail(), "upstream failed"
        ),
        _ => {
            tracing::error!(target: "tollgate::access", request_id, %method, path, ms, error = %error, "request failed")
        }
    }
}

/// Request ids: the client's if it sent a sane one, else `req_` + a random
/// per-process prefix + a counter (unique across replicas, no syscall per id).
struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        RequestIds { prefix: rand::random(), counter: AtomicU64::new(0) }
    }

    fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(id) = headers.get("x-request-id") {
            let bytes = id.as_bytes();
            if (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
                return id.clone();
            }
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("req_{:016x}{:08x}", self.prefix, n)).expect("hex is a valid header value")
    }
}
