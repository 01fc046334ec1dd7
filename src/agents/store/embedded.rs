//! Workspace agents in the embedded SQLite file: table `agents` (one JSON
//! record per workspace and id, primary key `(workspace, id)`, so a list by
//! id is an index range) and `default_agents` (one row per workspace that
//! has one). Each call is one job on the store's thread, one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{AgentRecord, AgentStore, Inserted, MAX_AGENTS};
use crate::store::embedded::{sql, EmbeddedStore};
use crate::store::StoreError;

pub struct EmbeddedAgents {
    store: Arc<EmbeddedStore>,
}

impl EmbeddedAgents {
    pub fn new(store: Arc<EmbeddedStore>) -> EmbeddedAgents {
        EmbeddedAgents { store }
    }
}

#[async_trait]
impl AgentStore for EmbeddedAgents {
    async fn insert(&self, agent: &AgentRecord) -> Result<Inserted, StoreError> {
        let (ws, id, json) = (agent.workspace.clone(), agent.id.clone(), agent.to_json());
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let count: i64 = tx
                    .query_row("SELECT COUNT(*) FROM agents WHERE workspace = ?1", [&ws], |r| r.get(0))
                    .map_err(sql)?;
                let exists = tx
                    .query_row("SELECT 1 FROM agents WHERE workspace = ?1 AND id = ?2", [&ws, &id], |_| Ok(()))
                    .optional()
                    .map_err(sql)?
                    .is_some();
                let outcome = if exists {
                    Inserted::Exists
                } else if count as usize >= MAX_AGENTS {
                    Inserted::Full
                } else {
                    tx.execute("INSERT INTO agents (workspace, id, record) VALUES (?1, ?2, ?3)", params![ws, id, json])
                        .map_err(sql)?;
                    Inserted::Created
                };
                tx.commit().map_err(sql)?;
                Ok(outcome)
            })
            .await
    }

    async fn get(&self, workspace: &str, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let (ws, id) = (workspace.to_owned(), id.to_owned());
        self.store
            .call(move |conn| {
                let json: Option<String> = conn
                    .prepare_cached("SELECT record FROM agents WHERE workspace = ?1 AND id = ?2")
                    .map_err(sql)?
                    .query_row([&ws, &id], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                json.map(|j| AgentRecord::from_json(&format!("agent {ws}/{id}"), &j)).transpose()
            })
            .await
    }

    async fn list(&self, workspace: &str, after: Option<&str>, limit: usize) -> Result<Vec<AgentRecord>, StoreError> {
        let (ws, after) = (workspace.to_owned(), after.unwrap_or_default().to_owned());
        let limit = limit.min(MAX_AGENTS) as i64;
        self.store
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, record FROM agents WHERE workspace = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                    )
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![ws, after, limit], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(sql)?;
                rows.map(|row| {
                    let (id, json) = row.map_err(sql)?;
                    AgentRecord::from_json(&format!("agent {ws}/{id}"), &json)
                })
                .collect()
            })
            .await
    }

    async fn ids(&self, workspace: &str) -> Result<Vec<String>, StoreError> {
        let ws = workspace.to_owned();
        self.store
            .call(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT id FROM agents WHERE workspace = ?1 ORDER BY id").map_err(sql)?;
                let rows = stmt.query_map([&ws], |r| r.get(0)).map_err(sql)?;
                rows.collect::<rusqlite::Result<Vec<String>>>().map_err(sql)
            })
            .await
    }

    async fn replace(&self, agent: &AgentRecord) -> Result<bool, StoreError> {
        let (ws, id, json) = (agent.workspace.clone(), agent.id.clone(), agent.to_json());
        self.store
            .call(move |conn| {
                let changed = conn
                    .prepare_cached("UPDATE agents SET record = ?3 WHERE workspace = ?1 AND id = ?2")
                    .map_err(sql)?
                    .execute(params![ws, id, json])
                    .map_err(sql)?;
                Ok(changed == 1)
            })
            .await
    }

    async fn delete(&self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        let (ws, id) = (workspace.to_owned(), id.to_owned());
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let deleted =
                    tx.execute("DELETE FROM agents WHERE workspace = ?1 AND id = ?2", [&ws, &id]).map_err(sql)?;
                if deleted == 1 {
                    tx.execute("DELETE FROM default_agents WHERE workspace = ?1 AND agent = ?2", [&ws, &id])
                        .map_err(sql)?;
                }
                tx.commit().map_err(sql)?;
                Ok(deleted == 1)
            })
            .await
    }

    async fn default_agent(&self, workspace: &str) -> Result<Option<String>, StoreError> {
        let ws = workspace.to_owned();
        self.store
            .call(move |conn| {
                conn.prepare_cached("SELECT agent FROM default_agents WHERE workspace = ?1")
                    .map_err(sql)?
                    .query_row([&ws], |r| r.get(0))
                    .optional()
                    .map_err(sql)
            })
            .await
    }

    async fn set_default_agent(&self, workspace: &str, agent: Option<&str>) -> Result<(), StoreError> {
        let (ws, agent) = (workspace.to_owned(), agent.map(str::to_owned));
        self.store
            .call(move |conn| {
                match agent {
                    Some(agent) => conn.execute(
                        "INSERT INTO default_agents (workspace, agent) VALUES (?1, ?2) \
                         ON CONFLICT (workspace) DO UPDATE SET agent = excluded.agent",
                        [&ws, &agent],
                    ),
                    None => conn.execute("DELETE FROM default_agents WHERE workspace = ?1", [&ws]),
                }
                .map_err(sql)?;
                Ok(())
            })
            .await
    }
}
