//! `[store]`: where durable state lives (an embedded SQLite file or Redis)
//! and how long keys read from it are trusted. Separate because it is about
//! where state lives, not what the gateway serves or charges.

use std::time::Duration;

use super::raw::RawStore;
use super::{ConfigError, Validator};

/// Where durable state lives (see `store`).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// How long a key looked up in the store is trusted before it is read
    /// again: the bound on how long a revocation takes on other replicas.
    pub key_cache_ttl: Duration,
    /// While the store cannot answer, a key read from it within this long is
    /// still served (stale-if-error); zero turns it off.
    pub key_stale_if_error: Duration,
}

#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// A SQLite file.
    Embedded { path: std::path::PathBuf },
    Redis {
        urls: Vec<String>,
        cluster: bool,
        /// Prefix of every Redis key, so deployments can share a Redis.
        prefix: String,
        connect_timeout: Duration,
        command_timeout: Duration,
    },
}

impl Validator<'_> {
    pub(super) fn store(&self, s: RawStore) -> Result<StoreConfig, ConfigError> {
        let backend = match s.backend.as_deref().unwrap_or("embedded") {
            "embedded" => {
                if !s.urls.is_empty() || s.cluster.is_some() || s.prefix.is_some() {
                    return Err(self.err("store", "urls, cluster and prefix are settings of backend = \"redis\""));
                }
                let path = s.path.unwrap_or_else(|| "data/tollgate.db".into());
                if path.trim().is_empty() {
                    return Err(self.err("store.path", "must not be empty"));
                }
                StoreBackend::Embedded { path: path.into() }
            }
            "redis" => {
                if s.path.is_some() {
                    return Err(self.err("store.path", "is a setting of backend = \"embedded\""));
                }
                let cluster = s.cluster.unwrap_or(false);
                match (cluster, s.urls.len()) {
                    (_, 0) => return Err(self.err("store.urls", "needs at least one redis:// URL")),
                    (false, n) if n > 1 => {
                        return Err(
                            self.err("store.urls", "standalone Redis takes one URL (set cluster = true for several)")
                        )
                    }
                    _ => {}
                }
                for (i, url) in s.urls.iter().enumerate() {
                    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                        return Err(self.err(format!("store.urls.{i}"), format!("{url:?} is not a redis:// URL")));
                    }
                }
                let prefix = s.prefix.unwrap_or_else(|| "tollgate".into());
                if prefix.is_empty() || prefix.contains(['{', '}']) {
                    return Err(self.err("store.prefix", "must be non-empty, without braces"));
                }
                StoreBackend::Redis {
                    urls: s.urls,
                    cluster,
                    prefix,
                    connect_timeout: self.millis("store.connect_timeout_ms", s.connect_timeout_ms, 2_000)?,
                    command_timeout: self.millis("store.command_timeout_ms", s.command_timeout_ms, 1_000)?,
                }
            }
            other => return Err(self.err("store.backend", format!("{other:?} is not \"embedded\" or \"redis\""))),
        };
        Ok(StoreConfig {
            backend,
            key_cache_ttl: self.millis("store.key_cache_ttl_ms", s.key_cache_ttl_ms, 5_000)?,
            key_stale_if_error: Duration::from_millis(s.key_stale_if_error_ms.unwrap_or(600_000)),
        })
    }
}
