//! Workspace agents on Redis, shared by every replica.
//!
//! # Schema
//!
//! `P` is the store's prefix and `W` a workspace id (workspace ids are
//! `[a-z0-9_-]`, so they read as written and cannot move the hash tag). The
//! workspace is the hash tag: a workspace's agent keys share one Cluster
//! slot, where the scripts below reach all of them.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:agents:{W}` | hash | agent id → its record as JSON |
//! | `P:agents:{W}:ids` | sorted set | the same ids, all scored 0 (so ordered by id, for cursor pages) |
//! | `P:agents:{W}:default` | string | the workspace's default agent id |
//!
//! # One round trip each
//!
//! Inserting, replacing, deleting and listing are one script each
//! (`src/agents/store/redis/*.lua`, versioned in their headers): the hash and
//! the id set change together, a delete clears a default naming the agent,
//! and an insert refuses a taken id or a full workspace, all atomically.
//! A read of one agent is `HGET`, of the ids `ZRANGE`, of the default `GET`.
//!
//! # When Redis is unreachable
//!
//! Every call fails with [`StoreError::Unavailable`] once the store's command
//! timeout has passed (see [`crate::store::redis`]).

use std::sync::Arc;

use ::redis::Script;
use async_trait::async_trait;

use super::{AgentRecord, AgentStore, Inserted, MAX_AGENTS};
use crate::store::redis::RedisStore;
use crate::store::StoreError;

/// Stores a new agent; see `src/agents/store/redis/insert.lua` (version 1).
const INSERT: &str = include_str!("redis/insert.lua");
/// Replaces an agent; see `src/agents/store/redis/replace.lua` (version 1).
const REPLACE: &str = include_str!("redis/replace.lua");
/// Deletes an agent (and a default naming it); see `src/agents/store/redis/delete.lua` (version 1).
const DELETE: &str = include_str!("redis/delete.lua");
/// One page by id; see `src/agents/store/redis/list.lua` (version 1).
const LIST: &str = include_str!("redis/list.lua");

pub struct RedisAgents {
    store: Arc<RedisStore>,
    insert: Script,
    replace: Script,
    delete: Script,
    list: Script,
}

impl RedisAgents {
    pub fn new(store: Arc<RedisStore>) -> RedisAgents {
        RedisAgents {
            store,
            insert: Script::new(INSERT),
            replace: Script::new(REPLACE),
            delete: Script::new(DELETE),
            list: Script::new(LIST),
        }
    }

    fn agents_name(&self, ws: &str) -> String {
        format!("{}:agents:{{{ws}}}", self.store.prefix())
    }

    fn ids_name(&self, ws: &str) -> String {
        format!("{}:agents:{{{ws}}}:ids", self.store.prefix())
    }

    fn default_name(&self, ws: &str) -> String {
        format!("{}:agents:{{{ws}}}:default", self.store.prefix())
    }
}

#[async_trait]
impl AgentStore for RedisAgents {
    async fn insert(&self, agent: &AgentRecord) -> Result<Inserted, StoreError> {
        let ws = &agent.workspace;
        let keys = [self.agents_name(ws), self.ids_name(ws)];
        let args = [agent.id.clone(), agent.to_json(), MAX_AGENTS.to_string()];
        match self.store.eval::<i64>(&self.insert, &keys, &args).await? {
            1 => Ok(Inserted::Created),
            0 => Ok(Inserted::Exists),
            _ => Ok(Inserted::Full),
        }
    }

    async fn get(&self, workspace: &str, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let name = self.agents_name(workspace);
        let json: Option<String> = self.store.query(::redis::cmd("HGET").arg(&name).arg(id).to_owned()).await?;
        json.map(|j| AgentRecord::from_json(&format!("{name} {id}"), &j)).transpose()
    }

    async fn list(&self, workspace: &str, after: Option<&str>, limit: usize) -> Result<Vec<AgentRecord>, StoreError> {
        let name = self.agents_name(workspace);
        let keys = [name.clone(), self.ids_name(workspace)];
        let args = [after.unwrap_or_default().to_owned(), limit.min(MAX_AGENTS).to_string()];
        let flat: Vec<String> = self.store.eval(&self.list, &keys, &args).await?;
        flat.chunks_exact(2).map(|pair| AgentRecord::from_json(&format!("{name} {}", pair[0]), &pair[1])).collect()
    }

    async fn ids(&self, workspace: &str) -> Result<Vec<String>, StoreError> {
        self.store.query(::redis::cmd("ZRANGE").arg(self.ids_name(workspace)).arg(0).arg(-1).to_owned()).await
    }

    async fn replace(&self, agent: &AgentRecord) -> Result<bool, StoreError> {
        let keys = [self.agents_name(&agent.workspace)];
        let args = [agent.id.clone(), agent.to_json()];
        Ok(self.store.eval::<i64>(&self.replace, &keys, &args).await? == 1)
    }

    async fn delete(&self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        let keys = [self.agents_name(workspace), self.ids_name(workspace), self.default_name(workspace)];
        Ok(self.store.eval::<i64>(&self.delete, &keys, &[id.to_owned()]).await? == 1)
    }

    async fn default_agent(&self, workspace: &str) -> Result<Option<String>, StoreError> {
        self.store.query(::redis::cmd("GET").arg(self.default_name(workspace)).to_owned()).await
    }

    async fn set_default_agent(&self, workspace: &str, agent: Option<&str>) -> Result<(), StoreError> {
        let name = self.default_name(workspace);
        let cmd = match agent {
            Some(agent) => ::redis::cmd("SET").arg(name).arg(agent).to_owned(),
            None => ::redis::cmd("DEL").arg(name).to_owned(),
        };
        self.store.query::<()>(cmd).await
    }
}
