//! The gateway's shared state: what every handler and the pipeline read.
//!
//! Built once by the composition root ([`crate::gateway`]) and shared by
//! every worker; read-only after startup but for the atomics inside
//! `connections` and `drain`, so no field needs a lock. Every subsystem is
//! present (the store is never optional: the embedded one is the default),
//! so handlers never match on an absent one. The request path itself is
//! [`crate::routes`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use crate::agents::Agents;
use crate::auth::{Authenticator, Principal};
use crate::config::{PlanConfig, ServerConfig};
use crate::credits::Meter;
use crate::events::Events;
use crate::ids::RequestIds;
use crate::responses::Responses;
use crate::server::{Connections, Drain};
use crate::store::Stores;
use crate::usage::UsageSink;

pub struct App {
    pub server: ServerConfig,
    /// The CORS layer in front of every route (`[cors]`), `None` when off.
    pub cors: Option<tower_http::cors::CorsLayer>,
    /// What `/metrics` shows; counted by the router and the usage sink.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub metrics_config: crate::config::MetricsConfig,
    /// The config's catalog and the workspace agents behind their cache:
    /// every model id is resolved here.
    pub agents: Agents,
    /// Static keys, then the key store through its cache.
    pub auth: Authenticator,
    /// Keys and workspaces, for the management API.
    pub stores: Stores,
    /// The config's plans, for workspaces created through the API.
    pub plans: BTreeMap<String, PlanConfig>,
    /// Where usage records go: events (and a log line), or a test's recorder.
    pub usage: Arc<dyn UsageSink>,
    /// Rate limits and credits.
    pub meter: Arc<Meter>,
    /// Events, webhooks and their delivery.
    pub events: Arc<Events>,
    /// Stored Responses API responses, and how long they are kept.
    pub responses: Responses,
    /// Sessions and chats: named threads over the same turns.
    pub conversations: crate::conversations::Conversations,
    /// Scheduled prompts, tasks, notes and missions (run by `scheduler`).
    pub schedules: crate::schedules::Schedules,
    /// The process's client connections: the `max_connections` bound shared
    /// by every worker, and each connection's idle watchdog state.
    pub connections: Arc<Connections>,
    /// Shutdown's state, shared by every worker (see `server::drain`).
    pub drain: Drain,
    pub request_ids: RequestIds,
}

/// What the request path established before the handler runs.
pub struct RequestContext {
    pub request_id: HeaderValue,
    pub started: Instant,
    pub principal: Arc<Principal>,
}

impl RequestContext {
    /// Whose stored state (responses, sessions, chats) the caller reaches:
    /// its workspace, or `static:<key name>` for a static config key.
    pub fn store_scope(&self) -> String {
        match &self.principal.workspace {
            Some(ws) if self.principal.key_id.is_some() => ws.to_string(),
            _ => format!("static:{}", self.principal.name),
        }
    }
}
