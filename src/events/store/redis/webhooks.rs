//! Webhook records on Redis: a hash per webhook, a set of ids per workspace
//! and an id → workspace index, each change one script. Separate from the
//! event log, which reads them to fan each event out, and from the delivery
//! queue.

use std::collections::HashMap;

use ::redis::Value;
use async_trait::async_trait;

use super::{pairs, RedisEvents};
use crate::events::store::WebhookStore;
use crate::events::Webhook;
use crate::secret::Secret;
use crate::store::StoreError;

impl RedisEvents {
    pub(super) async fn webhooks_of(&self, ws: &str) -> Result<Vec<Webhook>, StoreError> {
        let records: Vec<Vec<String>> =
            self.store.eval(&self.scripts.list, &[self.set_name(ws)], &[self.record_prefix(ws)]).await?;
        let mut hooks = records.into_iter().map(|r| webhook_from_fields(pairs(r))).collect::<Result<Vec<_>, _>>()?;
        hooks.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(hooks)
    }

    async fn workspace_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.store.query(::redis::cmd("GET").arg(self.index_name(id)).to_owned()).await
    }
}

fn webhook_from_fields(mut f: HashMap<String, String>) -> Result<Webhook, StoreError> {
    let mut take = |name: &str| f.remove(name).filter(|v| !v.is_empty());
    let id = take("id").ok_or_else(|| StoreError::Corrupt("a webhook without an id".into()))?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("webhook {id}: {what}"));
    let num = |v: Option<String>, what: &str| v.map(|v| v.parse::<i64>().map_err(|_| corrupt(what))).transpose();
    let events = serde_json::from_str(&take("events").unwrap_or_default()).map_err(|_| corrupt("events"))?;
    Ok(Webhook {
        workspace: take("workspace").ok_or_else(|| corrupt("workspace"))?,
        url: take("url").ok_or_else(|| corrupt("url"))?,
        events,
        description: take("description"),
        secret: Secret::new(take("secret").ok_or_else(|| corrupt("secret"))?),
        previous_secret: take("previous_secret").map(Secret::new),
        previous_until_ms: num(take("previous_until_ms"), "previous_until_ms")?,
        created_at: num(take("created_at"), "created_at")?.unwrap_or(0),
        disabled_at: num(take("disabled_at"), "disabled_at")?,
        disabled_reason: take("disabled_reason"),
        failures: num(take("failures"), "failures")?.unwrap_or(0).max(0) as u64,
        id,
    })
}

#[async_trait]
impl WebhookStore for RedisEvents {
    async fn insert_webhook(&self, w: &Webhook, max: usize) -> Result<(), StoreError> {
        let index = ::redis::cmd("SET").arg(self.index_name(&w.id)).arg(&w.workspace).arg("NX").to_owned();
        if matches!(self.store.query::<Value>(index).await?, Value::Nil) {
            return Err(StoreError::Conflict(format!("webhook {}", w.id)));
        }
        let mut args = vec![max.to_string(), w.id.clone()];
        let mut field = |k: &str, v: String| args.extend([k.to_owned(), v]);
        field("id", w.id.clone());
        field("workspace", w.workspace.clone());
        field("url", w.url.clone());
        field("events", serde_json::to_string(&w.events).expect("strings serialise"));
        field("description", w.description.clone().unwrap_or_default());
        field("secret", w.secret.expose().clone());
        field("created_at", w.created_at.to_string());
        field("failures", "0".into());
        let keys = [self.set_name(&w.workspace), format!("{}{}", self.record_prefix(&w.workspace), w.id)];
        match self.store.eval::<i64>(&self.scripts.insert, &keys, &args).await? {
            1 => Ok(()),
            _ => {
                let _ = self.store.query::<Value>(::redis::cmd("DEL").arg(self.index_name(&w.id)).to_owned()).await;
                Err(StoreError::Conflict(format!("webhook {}", w.id)))
            }
        }
    }

    async fn webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        let Some(ws) = self.workspace_of(id).await? else { return Ok(None) };
        let name = format!("{}{id}", self.record_prefix(&ws));
        let fields: HashMap<String, String> = self.store.query(::redis::cmd("HGETALL").arg(name).to_owned()).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        webhook_from_fields(fields).map(Some)
    }

    async fn list_webhooks(&self, ws: &str) -> Result<Vec<Webhook>, StoreError> {
        self.webhooks_of(ws).await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let Some(ws) = self.workspace_of(id).await? else { return Ok(false) };
        let keys = [self.set_name(&ws), format!("{}{id}", self.record_prefix(&ws)), self.attempts_name(&ws, id)];
        let n: i64 = self.store.eval(&self.scripts.delete, &keys, &[id.to_owned()]).await?;
        self.store.query::<Value>(::redis::cmd("DEL").arg(self.index_name(id)).to_owned()).await?;
        Ok(n > 0)
    }

    async fn rotate_secret(&self, id: &str, secret: &str, previous_until_ms: i64) -> Result<bool, StoreError> {
        let Some(ws) = self.workspace_of(id).await? else { return Ok(false) };
        let keys = [format!("{}{id}", self.record_prefix(&ws))];
        let n: i64 =
            self.store.eval(&self.scripts.rotate, &keys, &[secret.to_owned(), previous_until_ms.to_string()]).await?;
        Ok(n > 0)
    }

    async fn count_attempt(&self, id: &str, success: bool) -> Result<u64, StoreError> {
        let Some(ws) = self.workspace_of(id).await? else { return Ok(0) };
        let keys = [format!("{}{id}", self.record_prefix(&ws))];
        let n: i64 = self.store.eval(&self.scripts.count, &keys, &[if success { "1" } else { "0" }.into()]).await?;
        Ok(n.max(0) as u64)
    }

    async fn disable_webhook(&self, id: &str, reason: &str, at: i64) -> Result<bool, StoreError> {
        let Some(ws) = self.workspace_of(id).await? else { return Ok(false) };
        let keys = [format!("{}{id}", self.record_prefix(&ws))];
        let n: i64 = self.store.eval(&self.scripts.disable, &keys, &[at.to_string(), reason.to_owned()]).await?;
        Ok(n > 0)
    }
}
