//! Durable state: one trait per concern, each with two backends.
//!
//! - [`embedded`]: a local SQLite file (WAL), the default — no other process.
//! - [`redis`]: standalone Redis or Redis Cluster, for N stateless replicas.
//!
//! Handlers and the auth layer depend on these traits only. Keys and workspaces
//! live here; the ledger (`credits`), the event log (`events::store`) and the
//! stored responses (`responses`) sit beside them as further traits on the
//! same backends, and [`Stores`] carries the ones every request may need.
//!
//! Timestamps are Unix seconds (UTC). Records are never deleted: a revoked key
//! keeps its row with `revoked_at` set, for audit.

pub mod embedded;
pub mod redis;
pub mod stats;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::scope::Scope;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A record with the same id (or key hash) already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The backend returned data the gateway cannot read.
    #[error("the store holds unreadable data: {0}")]
    Corrupt(String),
}

/// An API key as stored: never the plaintext, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `key_` + 24 lowercase hex characters.
    pub id: String,
    /// Lowercase hex SHA-256 of the plaintext key.
    pub hash: String,
    /// The first characters of the key (`tg_1a2b3c4d`), to recognise it in lists.
    pub prefix: String,
    pub name: String,
    pub workspace: String,
    pub scope: Scope,
    pub expires_at: Option<i64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Agents and model aliases the key may use; `None` means all.
    pub models: Option<Vec<String>>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A tenant: keys, balances and (later) webhooks belong to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    /// The plan's name (plans are defined in config).
    pub plan: String,
    /// IANA time zone for monthly refreshes; `None` means UTC.
    pub time_zone: Option<String>,
    /// `credits.low` fires when a metered balance falls below this many
    /// micro-credits; `None` uses `events.low_credits_percent` of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_credits_threshold: Option<u64>,
    pub created_at: i64,
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key; `Conflict` if its id or hash is taken.
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// The key with this SHA-256 (hex), revoked or not.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError>;
    async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// A workspace's keys, revoked ones included, oldest first.
    async fn list_keys(&self, workspace: &str) -> Result<Vec<KeyRecord>, StoreError>;
    /// Sets `revoked_at`; `Ok(false)` when there is no such key or it was
    /// already revoked (the first revocation time is kept).
    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// Records last-used times, batched by the caller (never per request).
    async fn touch_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError>;
}

#[async_trait]
pub trait WorkspaceStore: Send + Sync + 'static {
    /// Stores a new workspace; `Conflict` if the id is taken.
    async fn insert_workspace(&self, workspace: &Workspace) -> Result<(), StoreError>;
    async fn workspace(&self, id: &str) -> Result<Option<Workspace>, StoreError>;
    /// All workspaces, by id.
    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError>;
}

/// The configured backend's stores.
#[derive(Clone)]
pub struct Stores {
    pub keys: std::sync::Arc<dyn KeyStore>,
    pub workspaces: std::sync::Arc<dyn WorkspaceStore>,
    /// The backend itself, for subsystems whose hot path is backend-specific
    /// (the credit ledger's one-script admission on Redis).
    pub backend: Backend,
}

/// The concrete backend behind [`Stores`].
#[derive(Clone)]
pub enum Backend {
    Embedded(std::sync::Arc<embedded::EmbeddedStore>),
    Redis(std::sync::Arc<redis::RedisStore>),
}

impl Stores {
    /// Latency and failures of every call to the backend (`/metrics`).
    pub fn stats(&self) -> &std::sync::Arc<stats::OpStats> {
        match &self.backend {
            Backend::Embedded(s) => &s.stats,
            Backend::Redis(s) => &s.stats,
        }
    }

    /// The stores of an open embedded file.
    pub fn embedded(store: std::sync::Arc<embedded::EmbeddedStore>) -> Stores {
        Stores { keys: store.clone(), workspaces: store.clone(), backend: Backend::Embedded(store) }
    }

    /// The stores of an open Redis connection.
    pub fn redis(store: std::sync::Arc<redis::RedisStore>) -> Stores {
        Stores { keys: store.clone(), workspaces: store.clone(), backend: Backend::Redis(store) }
    }

    /// Opens the configured backend. Call it on the runtime that lives as long
    /// as the process: the Redis connection's driver task runs there.
    pub async fn open(config: &crate::config::StoreConfig) -> Result<Stores, StoreError> {
        use crate::config::StoreBackend;
        use std::sync::Arc;
        match &config.backend {
            StoreBackend::Embedded { path } => Ok(Stores::embedded(Arc::new(embedded::EmbeddedStore::open(path)?))),
            StoreBackend::Redis { urls, cluster, prefix, connect_timeout, command_timeout } => {
                let timeouts = redis::Timeouts { connect: *connect_timeout, response: *command_timeout };
                Ok(Stores::redis(Arc::new(redis::RedisStore::connect(urls, *cluster, prefix, timeouts).await?)))
            }
        }
    }
}

impl Stores {
    /// One cheap round trip to the backend (`SELECT 1`, `PING`): whether it
    /// answers now, within the store's own timeout. What `/readyz` asks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.ping().await,
            Backend::Redis(s) => s.ping().await,
        }
    }
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
