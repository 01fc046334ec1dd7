//! Events, webhooks and deliveries on Redis, for N stateless replicas.
//!
//! Names (hash tags keep what one script touches in one Cluster slot):
//! - `{p}:ws:{W}:events` — workspace W's event log, a stream; trimmed on every
//!   append to `events.max_per_workspace` entries (`MAXLEN`) and to
//!   `events.retention` (`MINID`; stream ids are millisecond times).
//! - `{p}:ws:{W}:webhooks` (set of ids), `{p}:webhook:{W}:<id>` (hash),
//!   `{p}:webhook:{W}:<id>:attempts` (capped list), `{p}:webhookid:<id>` → W.
//! - `{p}:{deliveries}:queue` — the delivery stream, read by the consumer
//!   group `workers` (one consumer per replica process); `{p}:{deliveries}:retry`
//!   — a sorted set of deliveries waiting for their next attempt, by due time,
//!   moved back into the stream when due.
//!
//! At least once: a delivery is acknowledged (XACK + XDEL) only when it is
//! done, or atomically with its move to the retry set. One that a dead replica
//! claimed stays pending in the group and is taken over by any replica after
//! `webhooks.claim_idle_ms` (XAUTOCLAIM).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ::redis::{Pipeline, Script, Value};
use async_trait::async_trait;

use super::{Attempt, Delivery, DeliveryQueue, EventLog, EventPage, EventQuery, Next, WebhookStore};
use crate::config::{EventsConfig, WebhooksConfig};
use crate::events::{Event, Webhook};
use crate::secret::Secret;
use crate::store::redis::RedisStore;
use crate::store::StoreError;

const GROUP: &str = "workers";
/// How often (in claims) dead consumers are looked for.
const CONSUMER_SWEEP_EVERY: u64 = 1000;
/// A consumer idle this long (1 h) with nothing pending is a process that is gone.
const DEAD_CONSUMER_IDLE_MS: u64 = 3_600_000;
/// The most entries `GET /v1/events` reads to fill one filtered page.
const SCAN_CAP: usize = 10_000;

/// A workspace's webhook records; see `src/events/store/redis/list_webhooks.lua` (version 1).
const LIST_WEBHOOKS: &str = include_str!("redis/list_webhooks.lua");
/// Registers a webhook within the cap; see `src/events/store/redis/insert_webhook.lua` (version 1).
const INSERT_WEBHOOK: &str = include_str!("redis/insert_webhook.lua");
/// Removes a webhook whole; see `src/events/store/redis/delete_webhook.lua` (version 1).
const DELETE_WEBHOOK: &str = include_str!("redis/delete_webhook.lua");
/// Rotates a signing secret; see `src/events/store/redis/rotate_secret.lua` (version 1).
const ROTATE_SECRET: &str = include_str!("redis/rotate_secret.lua");
/// Counts an attempt's outcome; see `src/events/store/redis/count_attempt.lua` (version 1).
const COUNT_ATTEMPT: &str = include_str!("redis/count_attempt.lua");
/// Disables a webhook once; see `src/events/store/redis/disable_webhook.lua` (version 1).
const DISABLE_WEBHOOK: &str = include_str!("redis/disable_webhook.lua");
/// Moves due retries back into the stream (KEYS: retry set, queue); see
/// `src/events/store/redis/promote.lua` (version 1).
const PROMOTE: &str = include_str!("redis/promote.lua");
/// Acknowledges an entry and schedules its retry, only if this replica
/// still held it (KEYS: queue, retry set; ARGV: group, entry id, due, member);
/// see `src/events/store/redis/retry.lua` (version 1).
const RETRY: &str = include_str!("redis/retry.lua");

pub struct RedisEvents {
    store: Arc<RedisStore>,
    consumer: String,
    claim_idle_ms: u64,
    max_events: u64,
    max_age_ms: i64,
    attempts_kept: usize,
    /// Where the next XAUTOCLAIM scan starts.
    autoclaim_cursor: Mutex<String>,
    /// Claims since the group's dead consumers were last removed.
    claims: std::sync::atomic::AtomicU64,
    scripts: Scripts,
}

struct Scripts {
    list: Script,
    insert: Script,
    delete: Script,
    rotate: Script,
    count: Script,
    disable: Script,
    promote: Script,
    retry: Script,
}

impl RedisEvents {
    pub async fn new(store: Arc<RedisStore>, events: &EventsConfig, w: &WebhooksConfig) -> Result<Self, StoreError> {
        let this = RedisEvents {
            consumer: format!("tollgate-{}", hex::encode(rand::random::<[u8; 8]>())),
            claim_idle_ms: w.claim_idle.as_millis() as u64,
            max_events: events.max_per_workspace,
            max_age_ms: events.max_age.as_millis() as i64,
            attempts_kept: w.attempts_kept,
            autoclaim_cursor: Mutex::new("0-0".into()),
            claims: Default::default(),
            scripts: Scripts {
                list: Script::new(LIST_WEBHOOKS),
                insert: Script::new(INSERT_WEBHOOK),
                delete: Script::new(DELETE_WEBHOOK),
                rotate: Script::new(ROTATE_SECRET),
                count: Script::new(COUNT_ATTEMPT),
                disable: Script::new(DISABLE_WEBHOOK),
                promote: Script::new(PROMOTE),
                retry: Script::new(RETRY),
            },
            store,
        };
        let create =
            ::redis::cmd("XGROUP").arg("CREATE").arg(this.queue()).arg(GROUP).arg("0").arg("MKSTREAM").to_owned();
        match this.store.query::<Value>(create).await {
            Ok(_) => {}
            Err(StoreError::Unavailable(e)) if e.contains("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        Ok(this)
    }

    fn p(&self) -> &str {
        self.store.prefix()
    }
    fn log_name(&self, ws: &str) -> String {
        format!("{}:ws:{{{ws}}}:events", self.p())
    }
    fn set_name(&self, ws: &str) -> String {
        format!("{}:ws:{{{ws}}}:webhooks", self.p())
    }
    fn record_prefix(&self, ws: &str) -> String {
        format!("{}:webhook:{{{ws}}}:", self.p())
    }
    fn attempts_name(&self, ws: &str, id: &str) -> String {
        format!("{}:webhook:{{{ws}}}:{id}:attempts", self.p())
    }
    fn index_name(&self, id: &str) -> String {
        format!("{}:webhookid:{id}", self.p())
    }
    fn queue(&self) -> String {
        format!("{}:{{deliveries}}:queue", self.p())
    }
    fn retry_set(&self) -> String {
        format!("{}:{{deliveries}}:retry", self.p())
    }

    async fn webhooks_of(&self, ws: &str) -> Result<Vec<Webhook>, StoreError> {
        let records: Vec<Vec<String>> =
            self.store.eval(&self.scripts.list, &[self.set_name(ws)], &[self.record_prefix(ws)]).await?;
        let mut hooks = records.into_iter().map(|r| webhook_from_fields(pairs(r))).collect::<Result<Vec<_>, _>>()?;
        hooks.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(hooks)
    }

    async fn workspace_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.store.query(::redis::cmd("GET").arg(self.index_name(id)).to_owned()).await
    }

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

    fn xadd_delivery(&self, pipe: &mut Pipeline, hook: &Webhook, event: &Event, body: &str) {
        pipe.cmd("XADD")
            .arg(self.queue())
            .arg("*")
            .arg(&[("webhook", hook.id.as_str()), ("workspace", &hook.workspace), ("event_id", &event.id)])
            .arg(&[("event_type", event.kind.as_str()), ("body", body), ("attempts", "0")])
            .arg("queued_at")
            .arg(event.timestamp_ms)
            .ignore();
    }
}

/// `[f1, v1, f2, v2, ...]` → map.
fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut map = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(k, v);
    }
    map
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

/// Stream entries `[[id, [f, v, ...]], ...]` from a reply.
fn entries(v: &Value) -> Vec<(String, HashMap<String, String>)> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else { return None };
            let [id, Value::Array(fields)] = parts.as_slice() else { return None };
            let id = string(id)?;
            let flat: Vec<String> = fields.iter().filter_map(string).collect();
            Some((id, pairs(flat)))
        })
        .collect()
}

fn integer(v: &Value) -> Option<String> {
    match v {
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
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
impl EventLog for RedisEvents {
    async fn append(&self, events: &[Event]) -> Result<usize, StoreError> {
        let mut by_workspace: Vec<(&str, Vec<&Event>)> = Vec::new();
        for e in events {
            match by_workspace.iter_mut().find(|(ws, _)| *ws == &*e.workspace) {
                Some((_, list)) => list.push(e),
                None => by_workspace.push((&e.workspace, vec![e])),
            }
        }
        let mut queued = 0;
        for (ws, list) in by_workspace {
            let hooks = self.webhooks_of(ws).await?;
            let mut log = Pipeline::new();
            let mut deliveries = Pipeline::new();
            let mut fanned_out = 0;
            // Stream ids are Redis's own clock (milliseconds), so the cut-off
            // is wall-clock time, not the events' (possibly injected) clock.
            let now_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let min_id = now_ms - self.max_age_ms;
            for event in list {
                let json = event.to_json();
                for hook in hooks.iter().filter(|h| h.wants(event.kind.as_str())) {
                    self.xadd_delivery(&mut deliveries, hook, event, &json);
                    fanned_out += 1;
                }
                log.cmd("XADD")
                    .arg(self.log_name(ws))
                    .arg("MAXLEN")
                    .arg(self.max_events)
                    .arg("*")
                    .arg(&[("id", event.id.as_str()), ("type", event.kind.as_str()), ("json", json.as_str())])
                    .ignore();
            }
            log.cmd("XTRIM").arg(self.log_name(ws)).arg("MINID").arg(min_id.max(0)).ignore();
            // Deliveries first: a failure between the two writes may lose a log
            // line, never a delivery (the batch is retried whole on error).
            if fanned_out > 0 {
                self.store.pipeline::<()>(deliveries).await?;
            }
            self.store.pipeline::<()>(log).await?;
            queued += fanned_out;
        }
        Ok(queued)
    }

    async fn list_events(&self, ws: &str, q: &EventQuery) -> Result<EventPage, StoreError> {
        let name = self.log_name(ws);
        let mut page = EventPage::default();
        let mut cursor = q.after.clone();
        let mut scanned = 0;
        let batch = (q.limit + 1).max(100);
        loop {
            let (cmd, start, end) = if q.ascending { ("XRANGE", "-", "+") } else { ("XREVRANGE", "+", "-") };
            let start = cursor.as_ref().map_or(start.to_owned(), |c| format!("({c}"));
            let reply: Value = self
                .store
                .query(::redis::cmd(cmd).arg(&name).arg(start).arg(end).arg("COUNT").arg(batch).to_owned())
                .await
                .map_err(|e| match e {
                    StoreError::Unavailable(m) if m.contains("Invalid stream ID") => StoreError::Conflict(m),
                    e => e,
                })?;
            let got = entries(&reply);
            let exhausted = got.len() < batch;
            for (id, mut fields) in got {
                scanned += 1;
                let wanted = q.types.is_empty() || fields.get("type").is_some_and(|t| q.types.contains(t));
                if wanted {
                    if page.events.len() == q.limit {
                        // One more match exists: the page ends at the last one taken.
                        return Ok(page);
                    }
                    let json = fields.remove("json").unwrap_or_default();
                    let raw = serde_json::value::RawValue::from_string(json)
                        .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))?;
                    page.events.push(raw);
                    page.next_cursor = Some(id.clone());
                }
                cursor = Some(id);
                if scanned >= SCAN_CAP {
                    // Stop reading; the client resumes from here.
                    page.next_cursor = cursor;
                    return Ok(page);
                }
            }
            if exhausted {
                page.next_cursor = None;
                return Ok(page);
            }
        }
    }

    async fn prune(&self, _min_ms: i64, _max_count: u64) -> Result<u64, StoreError> {
        // Trimmed on every append (MAXLEN, MINID).
        Ok(0)
    }
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

#[async_trait]
impl DeliveryQueue for RedisEvents {
    async fn enqueue(&self, webhook: &Webhook, event: &Event) -> Result<(), StoreError> {
        let mut pipe = Pipeline::new();
        self.xadd_delivery(&mut pipe, webhook, event, &event.to_json());
        self.store.pipeline(pipe).await
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

    async fn finish(&self, d: &Delivery, next: Next, attempt: Option<&Attempt>) -> Result<(), StoreError> {
        let queue = self.queue();
        match next {
            Next::Done => {
                let mut pipe = Pipeline::new();
                pipe.cmd("XACK").arg(&queue).arg(GROUP).arg(&d.handle).ignore();
                pipe.cmd("XDEL").arg(&queue).arg(&d.handle).ignore();
                self.store.pipeline::<()>(pipe).await?;
            }
            Next::Retry { at_ms, attempts } => {
                let member = serde_json::json!({
                    "webhook": d.webhook, "workspace": d.workspace, "event_id": d.event_id,
                    "event_type": d.event_type, "body": d.body, "attempts": attempts.to_string(),
                    "queued_at": d.queued_at_ms.to_string(),
                    // Unique per attempt, so two waits of one delivery never merge.
                    "entry": d.handle,
                })
                .to_string();
                let args = [GROUP.to_owned(), d.handle.clone(), at_ms.to_string(), member];
                let _: i64 = self.store.eval(&self.scripts.retry, &[queue, self.retry_set()], &args).await?;
            }
        }
        if let Some(a) = attempt {
            let name = self.attempts_name(&d.workspace, &d.webhook);
            let mut pipe = Pipeline::new();
            pipe.cmd("LPUSH").arg(&name).arg(serde_json::to_string(a).expect("an attempt serialises")).ignore();
            pipe.cmd("LTRIM").arg(&name).arg(0).arg(self.attempts_kept as i64 - 1).ignore();
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
