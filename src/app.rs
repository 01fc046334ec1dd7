//! The gateway's shared state: what every handler and the pipeline read.
//!
//! Built once by the composition root ([`crate::gateway`]) and shared by
//! every worker; read-only after startup but for the atomics inside
//! `connections` and `drain` and the parts a config reload swaps
//! ([`crate::reload`]: `ArcSwap` pointers, read without a lock), so no
//! field needs a lock. Every subsystem is
//! present (the store is never optional: the embedded one is the default),
//! so handlers never match on an absent one. The request path itself is
//! [`crate::routes`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;

use crate::agents::Agents;
use crate::auth::{Authenticator, Principal};
use crate::config::Config;
use crate::config::{PlanConfig, ServerConfig};
use crate::credits::Meter;
use crate::events::Events;
use crate::ids::RequestIds;
use crate::reload::{ReloadError, Reloaded};
use crate::responses::Responses;
use crate::server::{Connections, Drain};
use crate::store::Stores;
use crate::usage::UsageSink;

pub struct App {
    /// `[server]` as the gateway started (a reload does not change it).
    pub server: ServerConfig,
    /// The config in force: the one started with, or the last reloaded.
    pub config: ArcSwap<crate::config::Config>,
    /// Where a reload reads the config from.
    pub reload_source: crate::reload::Source,
    /// The listener's TLS certificate and key (a reload re-reads them).
    pub tls: ArcSwapOption<rustls::ServerConfig>,
    /// The CORS layer in front of every route (`[cors]`), `None` when off.
    pub cors: ArcSwapOption<tower_http::cors::CorsLayer>,
    /// What `/metrics` shows; counted by the router and the usage sink.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub metrics_config: ArcSwap<crate::config::MetricsConfig>,
    /// The config's catalog and the workspace agents behind their cache:
    /// every model id is resolved here.
    pub agents: Agents,
    /// Static keys, then the key store through its cache.
    pub auth: Authenticator,
    /// Keys and workspaces, for the management API.
    pub stores: Stores,
    /// The config's plans, for workspaces created through the API.
    pub plans: ArcSwap<BTreeMap<String, PlanConfig>>,
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

impl App {
    /// Reads the config from [`App::reload_source`] and applies it (SIGHUP,
    /// the admin route); the verdict is logged. See [`crate::reload`].
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = self.reload_source.load().map_err(ReloadError::from).and_then(|config| self.apply(config));
        match &result {
            Ok(done) if done.restart_needed.is_empty() => tracing::info!(config = %done.origin, "config reloaded"),
            Ok(done) => tracing::warn!(
                config = %done.origin,
                restart_needed = ?done.restart_needed,
                "config reloaded; these changes take effect only after a restart"
            ),
            Err(e) => tracing::error!(error = %e, "config reload refused; the previous config stays in force"),
        }
        result
    }

    /// Applies a validated config: builds everything first, then swaps.
    fn apply(&self, new: Config) -> Result<Reloaded, ReloadError> {
        let old = self.config.load_full();
        let current = self.agents.catalog();
        let providers = crate::reload::providers(&old, &new, &current)?;
        let catalog = crate::agents::Catalog::new(&new, &providers, Some(&current));
        if new.log.level != old.log.level {
            crate::telemetry::set_level(&new.log.level)
                .map_err(|e| ReloadError::Provider(format!("log.level: {e}")))?;
        }
        // Everything is built: from here on nothing fails.
        self.agents.replace_catalog(catalog);
        self.auth.replace_static_keys(&new.keys);
        self.meter.terms.replace_plans(new.plans.clone());
        self.plans.store(Arc::new(new.plans.clone()));
        self.cors.store(new.cors.layer.clone().map(Arc::new));
        // Counting on or off is fixed at start; the scrape token reloads.
        let metrics = crate::config::MetricsConfig { enabled: old.metrics.enabled, ..new.metrics.clone() };
        self.metrics_config.store(Arc::new(metrics));
        // The delivery worker's own bounds are fixed at start (see `reload`).
        let w = &old.webhooks;
        let webhooks = crate::config::WebhooksConfig {
            allow_private_targets: w.allow_private_targets,
            max_in_flight: w.max_in_flight,
            claim_idle: w.claim_idle,
            ..new.webhooks.clone()
        };
        self.events.webhook_config.store(Arc::new(webhooks));
        if let (Some(_), Some(tls)) = (&old.server.tls, &new.server.tls) {
            self.tls.store(Some(tls.server.clone()));
        }
        let restart_needed = crate::reload::restart_needed(&old, &new);
        let origin = new.origin.clone();
        self.config.store(Arc::new(new));
        Ok(Reloaded { origin, restart_needed })
    }
}
