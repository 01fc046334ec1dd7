//! The delivery queue on Redis: a stream read by one consumer group, a
//! sorted set of deliveries waiting to be retried, each webhook's capped
//! list of attempts. Separate from the event log that fills it and from the
//! webhook records; see the parent module for the names and the
//! at-least-once rules.

use std::collections::{BTreeMap, HashMap};

use ::redis::{Pipeline, Value};
use async_trait::async_trait;

use super::{entries, integer, pairs, string, RedisEvents, GROUP};
use crate::events::store::{Attempt, Delivery, DeliveryQueue, Finished, Next};
use crate::events::{Event, Webhook};
use crate::store::StoreError;

/// How often (in claims) dead consumers are looked for.
const CONSUMER_SWEEP_EVERY: u64 = 1000;
/// A consumer idle this long (1 h) with nothing pending is a process that is gone.
const DEAD_CONSUMER_IDLE_MS: u64 = 3_600_000;

impl RedisEvents {
    /// Every process joins the group as a consumer of its own; one that is
    /// gone leaves its name behind. Names idle for [`DEAD_CONSUMER_IDLE_MS`]
    /// with nothing pending are removed (one with pending deliveries stays
    /// until XAUTOCLAIM has taken them over: removing it would drop them).
    /// Removing a live but quiet replica's name is harmless: its next
    /// XREADGROUP creates it again.
    async fn remove_dead_consumers(&self, queue: &str) -> Result<(), StoreError> {
        let info: Value =
            self.store.query(::redis::cmd("XINFO").arg("CONSUMERS").arg(queue).arg(GROUP).to_owned()).await?;
        let Value::Array(consumers) = info else { return Ok(()) };
        for consumer in consumers {
            let fields = match consumer {
                Value::Array(flat) => {
                    pairs(flat.iter().map(|v| string(v).or_else(|| integer(v)).unwrap_or_default()).collect())
                }
                Value::Map(kv) => {
                    kv.iter().filter_map(|(k, v)| Some((string(k)?, string(v).or_else(|| integer(v))?))).collect()
                }
                _ => continue,
            };
            let (Some(name), Some(pending), Some(idle)) =
                (fields.get("name"), fields.get("pending"), fields.get("idle"))
            else {
                continue;
            };
            let idle: u64 = idle.parse().unwrap_or(0);
            if name != &self.consumer && pending == "0" && idle >= DEAD_CONSUMER_IDLE_MS {
                let del = ::redis::cmd("XGROUP").arg("DELCONSUMER").arg(queue).arg(GROUP).arg(name).to_owned();
                self.store.query::<Value>(del).await?;
            }
        }
        Ok(())
    }
}

fn delivery(id: String, mut f: HashMap<String, String>) -> Option<Delivery> {
    Some(Delivery {
        webhook: f.remove("webhook")?,
        workspace: f.remove("workspace")?,
        event_id: f.remove("event_id")?,
        event_type: f.remove("event_type")?,
        body: f.remove("body")?,
        attempts: f.remove("attempts")?.parse().ok()?,
        queued_at_ms: f.remove("queued_at")?.parse().ok()?,
        handle: id,
    })
}

#[async_trait]
impl DeliveryQueue for RedisEvents {
    async fn enqueue(&self, webhook: &Webhook, event: &Event) -> Result<(), StoreError> {
        let mut call = self.deliveries();
        Self::add_delivery(&mut call, webhook, event, &event.to_json());
        self.store.invoke::<i64>(&call).await.map(drop)
    }

    async fn claim(&self, max: usize, now_ms: i64) -> Result<Vec<Delivery>, StoreError> {
        let (queue, retry) = (self.queue(), self.retry_set());
        if self.claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % CONSUMER_SWEEP_EVERY == 0 {
            self.remove_dead_consumers(&queue).await?;
        }
        let _: i64 = self
            .store
            .eval(&self.scripts.promote, &[retry, queue.clone()], &[now_ms.to_string(), "1000".into()])
            .await?;
        let mut claimed = Vec::new();
        // A dead replica's deliveries first: they have waited longest.
        let start = self.autoclaim_cursor.lock().expect("cursor lock").clone();
        let reply: Value = self
            .store
            .query(
                ::redis::cmd("XAUTOCLAIM")
                    .arg(&queue)
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(self.claim_idle_ms)
                    .arg(start)
                    .arg("COUNT")
                    .arg(max)
                    .to_owned(),
            )
            .await?;
        if let Value::Array(parts) = &reply {
            if let Some(next) = parts.first().and_then(string) {
                *self.autoclaim_cursor.lock().expect("cursor lock") = next;
            }
            if let Some(list) = parts.get(1) {
                claimed.extend(entries(list));
            }
        }
        if claimed.len() < max {
            let reply: Value = self
                .store
                .query(
                    ::redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(GROUP)
                        .arg(&self.consumer)
                        .arg("COUNT")
                        .arg(max - claimed.len())
                        .arg("STREAMS")
                        .arg(&queue)
                        .arg(">")
                        .to_owned(),
                )
                .await?;
            if let Value::Array(streams) = &reply {
                for stream in streams {
                    if let Value::Array(parts) = stream {
                        if let Some(list) = parts.get(1) {
                            claimed.extend(entries(list));
                        }
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(claimed.len());
        for (id, fields) in claimed {
            match delivery(id.clone(), fields) {
                Some(d) => out.push(d),
                None => {
                    tracing::error!(entry = %id, "an unreadable delivery in the queue; dropped");
                    let mut pipe = Pipeline::new();
                    pipe.cmd("XACK").arg(&queue).arg(GROUP).arg(&id).ignore();
                    pipe.cmd("XDEL").arg(&queue).arg(&id).ignore();
                    self.store.pipeline::<()>(pipe).await?;
                }
            }
        }
        Ok(out)
    }

    async fn finish(&self, batch: &[Finished]) -> Result<(), StoreError> {
        let mut call = self.scripts.finish.prepare_invoke();
        call.key(self.queue()).key(self.retry_set()).arg(GROUP);
        for f in batch {
            let d = &f.delivery;
            match f.next {
                Next::Done => call.arg(&d.handle).arg("").arg(""),
                Next::Retry { at_ms, attempts } => {
                    let member = serde_json::json!({
                        "webhook": d.webhook, "workspace": d.workspace, "event_id": d.event_id,
                        "event_type": d.event_type, "body": d.body, "attempts": attempts.to_string(),
                        "queued_at": d.queued_at_ms.to_string(),
                        // Unique per attempt, so two waits of one delivery never merge.
                        "entry": d.handle,
                    })
                    .to_string();
                    call.arg(&d.handle).arg(at_ms).arg(member)
                }
            };
        }
        let _: i64 = self.store.invoke(&call).await?;
        // Each webhook's attempts, newest first, in one LPUSH and one LTRIM;
        // one pipeline per workspace (its lists share a Cluster slot).
        let mut lists: BTreeMap<&str, BTreeMap<&str, Vec<String>>> = BTreeMap::new();
        for f in batch {
            if let Some(a) = &f.attempt {
                let json = serde_json::to_string(a).expect("an attempt serialises");
                let d = &f.delivery;
                lists.entry(&d.workspace).or_default().entry(&d.webhook).or_default().push(json);
            }
        }
        for (workspace, webhooks) in lists {
            let mut pipe = Pipeline::new();
            for (webhook, attempts) in webhooks {
                let name = self.attempts_name(workspace, webhook);
                pipe.cmd("LPUSH").arg(&name).arg(attempts).ignore();
                pipe.cmd("LTRIM").arg(&name).arg(0).arg(self.attempts_kept as i64 - 1).ignore();
            }
            self.store.pipeline::<()>(pipe).await?;
        }
        Ok(())
    }

    async fn attempts(&self, webhook: &Webhook, limit: usize) -> Result<Vec<Attempt>, StoreError> {
        let name = self.attempts_name(&webhook.workspace, &webhook.id);
        let list: Vec<String> =
            self.store.query(::redis::cmd("LRANGE").arg(name).arg(0).arg(limit as i64 - 1).to_owned()).await?;
        list.iter()
            .map(|json| serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("attempt: {e}"))))
            .collect()
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        let mut pipe = Pipeline::new();
        pipe.cmd("XLEN").arg(self.queue());
        pipe.cmd("ZCARD").arg(self.retry_set());
        let (queued, waiting): (u64, u64) = self.store.pipeline(pipe).await?;
        Ok(queued + waiting)
    }
}
