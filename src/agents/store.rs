//! Workspace agents as data: the records behind `/v1/agents`, one trait with
//! an embedded and a Redis backend (like every store, `crate::store`).
//!
//! An agent belongs to one workspace and is looked up only inside it, so two
//! workspaces may each have an agent `support` and neither can see the
//! other's. A workspace also has at most one *default agent* (the agent its
//! sessions use when a message names none); it is kept here, beside the
//! agents, so deleting an agent clears a default naming it in the same step.
//!
//! Records are whole JSON documents: an update replaces the record (last
//! writer wins; the API reads, merges and writes). Every operation is one
//! round trip on either backend.
//!
//! When the backend is down every call fails with
//! [`StoreError::Unavailable`]: the API answers 503, and resolving a model
//! the config does not know answers 503 `store_unavailable` rather than a
//! misleading 404 (fail-closed; config models and agents never touch this
//! store, so they keep working).

pub mod embedded;
pub mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::TargetSpec;
use crate::config::Price;
use crate::memory::MemoryPolicy;
use crate::store::StoreError;

/// The most agents one workspace may hold: lists stay one bounded read.
pub const MAX_AGENTS: usize = 1000;

/// One workspace agent as stored and as the API shows it (it holds no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// 1–128 characters of `[A-Za-z0-9._-]`; unique within the workspace and
    /// never a config model or agent id.
    pub id: String,
    pub workspace: String,
    /// A configured provider.
    pub provider: String,
    pub upstream_model: String,
    /// The config model alias the provider and upstream model were taken
    /// from, when the agent was made from one (shown, not resolved again).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub instructions: Option<String>,
    /// Sampling parameters applied only where a request leaves them unset.
    #[serde(default)]
    pub defaults: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub caps: Caps,
    #[serde(default)]
    pub price: Price,
    #[serde(default)]
    pub memory: Option<MemoryPolicy>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the gateway bounds on every call to the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    /// Ceiling on `max_tokens` / `max_completion_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

impl AgentRecord {
    /// What its target is built from (by the same code as config agents').
    pub fn spec(&self) -> TargetSpec<'_> {
        TargetSpec {
            id: &self.id,
            is_agent: true,
            workspace: Some(&self.workspace),
            provider: &self.provider,
            upstream_model: &self.upstream_model,
            alias: self.model.as_deref(),
            instructions: self.instructions.as_deref(),
            defaults: &self.defaults,
            max_tokens_cap: self.caps.max_tokens,
            price: self.price,
            memory: self.memory,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an agent serialises")
    }

    pub(crate) fn from_json(what: &str, json: &str) -> Result<AgentRecord, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
    }
}

/// What [`AgentStore::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    /// The workspace has an agent of that id already.
    Exists,
    /// The workspace holds [`MAX_AGENTS`] agents already.
    Full,
}

#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Stores a new agent in its workspace, unless the id is taken or the
    /// workspace is full.
    async fn insert(&self, agent: &AgentRecord) -> Result<Inserted, StoreError>;
    async fn get(&self, workspace: &str, id: &str) -> Result<Option<AgentRecord>, StoreError>;
    /// Up to `limit` agents with ids after `after`, by id.
    async fn list(&self, workspace: &str, after: Option<&str>, limit: usize) -> Result<Vec<AgentRecord>, StoreError>;
    /// Every agent id of the workspace, by id (`/v1/models` lists ids only).
    async fn ids(&self, workspace: &str) -> Result<Vec<String>, StoreError>;
    /// Replaces an existing agent; `false` when there is none (deleted meanwhile).
    async fn replace(&self, agent: &AgentRecord) -> Result<bool, StoreError>;
    /// Deletes an agent, and the workspace's default if it named it;
    /// `false` when there was no such agent.
    async fn delete(&self, workspace: &str, id: &str) -> Result<bool, StoreError>;
    /// The workspace's default agent id (a workspace or a config agent).
    async fn default_agent(&self, workspace: &str) -> Result<Option<String>, StoreError>;
    /// Sets (`Some`) or clears (`None`) the workspace's default agent.
    async fn set_default_agent(&self, workspace: &str, agent: Option<&str>) -> Result<(), StoreError>;
}

/// The agent store of the configured backend.
pub fn open(stores: &crate::store::Stores) -> std::sync::Arc<dyn AgentStore> {
    match &stores.backend {
        crate::store::Backend::Embedded(s) => std::sync::Arc::new(embedded::EmbeddedAgents::new(s.clone())),
        crate::store::Backend::Redis(s) => std::sync::Arc::new(redis::RedisAgents::new(s.clone())),
    }
}
