//! Keys and workspaces on Redis: the hashes, strings and indexes of the
//! schema in the parent module's doc, and the [`KeyStore`] and
//! [`WorkspaceStore`] implementations over them. Separate from the parent,
//! which holds the connection and the bounded, counted call every store on
//! this Redis shares.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::future::try_join_all;

use super::RedisStore;
use crate::scope::Scope;
use crate::store::{KeyRecord, KeyStore, StoreError, Workspace, WorkspaceStore};

impl RedisStore {
    /// The record of key `id` in workspace `ws`, if written.
    async fn key_record(&self, ws: &str, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let name = self.key_name(ws, id);
        let fields: HashMap<String, String> = self.run(::redis::cmd("HGETALL").arg(&name).to_owned()).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        key_from_fields(&name, fields).map(Some)
    }

    /// The workspace holding key `id`, from the id index.
    async fn key_workspace(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.run(::redis::cmd("GET").arg(self.key_id_name(id)).to_owned()).await
    }
}

/// The hash fields of a key record; `None` fields are left out.
fn key_fields(key: &KeyRecord) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", key.id.clone()),
        ("hash", key.hash.clone()),
        ("prefix", key.prefix.clone()),
        ("name", key.name.clone()),
        ("workspace", key.workspace.clone()),
        ("scope", key.scope.as_str().to_owned()),
        ("created_at", key.created_at.to_string()),
    ];
    let optional = [
        ("expires_at", key.expires_at.map(|v| v.to_string())),
        ("rpm", key.rpm.map(|v| v.to_string())),
        ("tpm", key.tpm.map(|v| v.to_string())),
        ("models", key.models.as_ref().map(|m| serde_json::to_string(m).expect("strings serialise"))),
        ("last_used_at", key.last_used_at.map(|v| v.to_string())),
        ("revoked_at", key.revoked_at.map(|v| v.to_string())),
    ];
    fields.extend(optional.into_iter().filter_map(|(field, value)| Some((field, value?))));
    fields
}

/// Reads a key record from its hash fields; `Corrupt` names the Redis key.
fn key_from_fields(name: &str, mut fields: HashMap<String, String>) -> Result<KeyRecord, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("{name}: {what}"));
    let mut required = |field: &str| fields.remove(field).ok_or_else(|| corrupt(format!("no field {field}")));
    let (id, hash, prefix, key_name) = (required("id")?, required("hash")?, required("prefix")?, required("name")?);
    let (workspace, scope) = (required("workspace")?, required("scope")?);
    let scope = Scope::parse(&scope).ok_or_else(|| corrupt(format!("unknown scope {scope:?}")))?;
    let models = fields
        .remove("models")
        .map(|m| serde_json::from_str::<Vec<String>>(&m).map_err(|e| corrupt(format!("models: {e}"))))
        .transpose()?;
    Ok(KeyRecord {
        id,
        hash,
        prefix,
        name: key_name,
        workspace,
        scope,
        expires_at: number(name, &mut fields, "expires_at")?,
        rpm: number(name, &mut fields, "rpm")?,
        tpm: number(name, &mut fields, "tpm")?,
        models,
        created_at: number(name, &mut fields, "created_at")?.ok_or_else(|| corrupt("no field created_at".into()))?,
        last_used_at: number(name, &mut fields, "last_used_at")?,
        revoked_at: number(name, &mut fields, "revoked_at")?,
    })
}

/// Takes an optional decimal field out of a record's fields.
fn number<T: std::str::FromStr>(
    name: &str,
    fields: &mut HashMap<String, String>,
    field: &str,
) -> Result<Option<T>, StoreError> {
    let parse = |v: String| v.parse().map_err(|_| StoreError::Corrupt(format!("{name}: {field} is {v:?}")));
    fields.remove(field).map(parse).transpose()
}

#[async_trait]
impl KeyStore for RedisStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let conflict = || StoreError::Conflict(format!("key {}", key.id));
        let id_name = self.key_id_name(&key.id);
        if !self.claim(&id_name, &key.workspace).await? {
            return Err(conflict());
        }
        let location = serde_json::to_string(&[&key.workspace, &key.id]).expect("strings serialise");
        if !self.claim(&self.key_hash_name(&key.hash), &location).await? {
            // Best effort: if this fails the id stays claimed, and unused.
            let _ = self.run::<()>(::redis::cmd("DEL").arg(&id_name).to_owned()).await;
            return Err(conflict());
        }
        let list = self.workspace_keys_name(&key.workspace);
        self.run::<()>(::redis::cmd("ZADD").arg(list).arg(key.created_at).arg(&key.id).to_owned()).await?;
        let mut hset = ::redis::cmd("HSET");
        hset.arg(self.key_name(&key.workspace, &key.id));
        for (field, value) in key_fields(key) {
            hset.arg(field).arg(value);
        }
        self.run::<()>(hset).await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let name = self.key_hash_name(hash);
        let Some(location) = self.run::<Option<String>>(::redis::cmd("GET").arg(&name).to_owned()).await? else {
            return Ok(None);
        };
        let (ws, id) = serde_json::from_str::<(String, String)>(&location)
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?;
        match self.key_record(&ws, &id).await? {
            Some(key) if key.hash != hash => {
                Err(StoreError::Corrupt(format!("{name} points at key {id} of another hash")))
            }
            found => Ok(found),
        }
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        match self.key_workspace(id).await? {
            Some(ws) => self.key_record(&ws, id).await,
            None => Ok(None),
        }
    }

    async fn list_keys(&self, workspace: &str) -> Result<Vec<KeyRecord>, StoreError> {
        // Equal scores come back by id: the embedded order (created_at, id).
        let ids: Vec<String> =
            self.run(::redis::cmd("ZRANGE").arg(self.workspace_keys_name(workspace)).arg(0).arg(-1).to_owned()).await?;
        // Concurrent reads share one multiplexed connection: pipelined on the wire.
        let keys = try_join_all(ids.iter().map(|id| self.key_record(workspace, id))).await?;
        Ok(keys.into_iter().flatten().collect())
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let Some(ws) = self.key_workspace(id).await? else {
            return Ok(false);
        };
        Ok(self.script(&self.revoke_key, &self.key_name(&ws, id), at).await? == 1)
    }

    async fn touch_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError> {
        try_join_all(used.iter().map(|(id, at)| async move {
            if let Some(ws) = self.key_workspace(id).await? {
                self.script(&self.touch_key, &self.key_name(&ws, id), *at).await?;
            }
            Ok::<_, StoreError>(())
        }))
        .await?;
        Ok(())
    }
}

#[async_trait]
impl WorkspaceStore for RedisStore {
    async fn insert_workspace(&self, workspace: &Workspace) -> Result<(), StoreError> {
        // Listed first: a set member without a record is skipped by readers.
        self.run::<()>(::redis::cmd("SADD").arg(self.workspaces_name()).arg(&workspace.id).to_owned()).await?;
        let json = serde_json::to_string(workspace).expect("a workspace serialises");
        if self.claim(&self.workspace_name(&workspace.id), &json).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("workspace {}", workspace.id)))
        }
    }

    async fn workspace(&self, id: &str) -> Result<Option<Workspace>, StoreError> {
        let name = self.workspace_name(id);
        let json: Option<String> = self.run(::redis::cmd("GET").arg(&name).to_owned()).await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))).transpose()
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        let mut ids: Vec<String> = self.run(::redis::cmd("SMEMBERS").arg(self.workspaces_name()).to_owned()).await?;
        ids.sort();
        let found = try_join_all(ids.iter().map(|id| self.workspace(id))).await?;
        Ok(found.into_iter().flatten().collect())
    }
}
