//! Reloading the config without a restart (SIGHUP, `tollgate reload`,
//! `POST /v1/admin/reload`).
//!
//! A reload reads and validates the whole file first, builds what the new
//! config needs (providers, the catalog and its routes), and only then swaps
//! it in, part by part ([`crate::app::App::reload`]), each an atomic
//! pointer swap (`arc-swap`): a request
//! that started before holds its target (and so the old provider and its
//! pool) to its end, a request that starts after sees the new. Connections
//! and open streams are not touched. An invalid file changes nothing: the
//! error is returned (and logged) and the old config stays in force.
//!
//! **What reloads**: providers, models, agents and their targets, prices,
//! `[routing]`, static keys, plans, the log level, `[cors]`, the metrics
//! token, the webhook delivery settings read per attempt, and the TLS
//! certificate and key (re-read from their files). A provider whose
//! settings did not change keeps its connection pool; a target that stays
//! keeps its breaker. **What needs a restart** (named in the answer and the
//! log when it changed): the listener address and workers, the other
//! `[server]` bounds, TLS turned on or off, `[store]`, `[events]`,
//! `[credits]`, `[responses]`, `[schedules]`, `[workspaces]` (seeded at
//! start), `[tracing]`, `metrics.enabled`, and the webhook worker's own bounds
//! (`allow_private_targets`, `max_in_flight`, `claim_idle_ms`).

pub mod remote;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::agents::Catalog;
use crate::config::{Config, ConfigError};
use crate::upstream::Provider;

/// Where a reload reads the config from.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The config file; `None`: the embedded default (a reload re-reads it).
    pub path: Option<PathBuf>,
    /// `serve --listen`, which overrides the file's `server.listen`.
    pub listen: Option<SocketAddr>,
}

impl Source {
    /// The file `config` was read from (its `origin`), if it is one.
    pub fn of(config: &Config) -> Source {
        let path = PathBuf::from(&config.origin);
        Source { path: path.is_file().then_some(path), listen: None }
    }

    /// Reads and validates the config, with the same override as at start.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::from_file(path)?,
            None => Config::embedded_default()?,
        };
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        Ok(config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Provider(String),
}

/// What a reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    /// Where the config came from.
    pub origin: String,
    /// Sections that changed and need a restart to take effect (the rest of
    /// the new config is in force).
    pub restart_needed: Vec<&'static str>,
}

/// The new config's providers; one whose settings did not change is the
/// same provider, connection pool and all.
pub fn providers(old: &Config, new: &Config, catalog: &Catalog) -> Result<HashMap<String, Arc<Provider>>, ReloadError> {
    let workers = old.server.workers;
    new.providers
        .iter()
        .map(|(name, config)| {
            let kept = (old.providers.get(name) == Some(config)).then(|| catalog.provider(name)).flatten();
            let provider = match kept {
                Some(p) => p,
                None => Arc::new(Provider::from_config(name, config, workers).map_err(ReloadError::Provider)?),
            };
            Ok((name.clone(), provider))
        })
        .collect()
}

/// Sections whose change a running gateway cannot take.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    // Debug output compares every field (secrets print as `*****`, so a
    // changed store password alone is not noticed: say so in the README).
    let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let (os, ns) = (&old.server, &new.server);
    let mut out = Vec::new();
    if os.listen != ns.listen {
        out.push("server.listen");
    }
    if os.workers != ns.workers {
        out.push("server.workers");
    }
    if os.tls.is_some() != ns.tls.is_some() {
        out.push("server.tls_cert / server.tls_key (TLS on or off)");
    }
    let without_tls = |s: &crate::config::ServerConfig| {
        let mut s = s.clone();
        (s.tls, s.listen, s.workers) = (None, ([0, 0, 0, 0], 0).into(), 0);
        s
    };
    if differs(&without_tls(os), &without_tls(ns)) {
        out.push("server (timeouts and bounds)");
    }
    for (name, changed) in [
        ("store", differs(&old.store, &new.store)),
        ("events", differs(&old.events, &new.events)),
        ("credits", differs(&old.credits, &new.credits)),
        ("responses", differs(&old.responses, &new.responses)),
        ("schedules", differs(&old.schedules, &new.schedules)),
        ("workspaces", differs(&old.workspaces, &new.workspaces)),
        ("metrics.enabled", old.metrics.enabled != new.metrics.enabled),
        ("log.json", old.log.json != new.log.json),
        ("tracing", old.tracing != new.tracing),
    ] {
        if changed {
            out.push(name);
        }
    }
    let (ow, nw) = (&old.webhooks, &new.webhooks);
    if ow.allow_private_targets != nw.allow_private_targets || ow.max_in_flight != nw.max_in_flight {
        out.push("webhooks.allow_private_targets / max_in_flight");
    }
    if ow.claim_idle != nw.claim_idle {
        out.push("webhooks.claim_idle_ms");
    }
    out
}
