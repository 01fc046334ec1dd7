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
//!
//! One type, [`RedisEvents`], implements the three stores, each in a file of
//! its own: `log` (the event log), `webhooks` (the webhook records), `queue`
//! (the delivery queue). This file holds what they share: the key names, the
//! scripts (`redis/*.lua`) and the parsing of Redis replies.

mod log;
mod queue;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ::redis::{Script, ScriptInvocation, Value};

use crate::config::{EventsConfig, WebhooksConfig};
use crate::events::{Event, Webhook};
use crate::store::redis::RedisStore;
use crate::store::StoreError;

const GROUP: &str = "workers";

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
/// Acknowledges a batch of entries, deleting the done ones and moving those to
/// retry into the retry set if this replica still held them (KEYS: queue,
/// retry set; ARGV: group, then entry id, due, member per delivery); see
/// `src/events/store/redis/finish.lua` (version 1).
const FINISH: &str = include_str!("redis/finish.lua");
/// Appends a batch of one workspace's events and trims its log (KEYS: the
/// log); see `src/events/store/redis/append.lua` (version 1).
const APPEND: &str = include_str!("redis/append.lua");
/// Adds a batch of deliveries to the delivery stream (KEYS: the stream); see
/// `src/events/store/redis/enqueue.lua` (version 1).
const ENQUEUE: &str = include_str!("redis/enqueue.lua");

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
    finish: Script,
    append: Script,
    enqueue: Script,
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
                finish: Script::new(FINISH),
                append: Script::new(APPEND),
                enqueue: Script::new(ENQUEUE),
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

    /// A call of the enqueue script for the delivery stream, deliveries to
    /// be added with [`RedisEvents::add_delivery`].
    fn deliveries(&self) -> ScriptInvocation<'_> {
        let mut call = self.scripts.enqueue.prepare_invoke();
        call.key(self.queue());
        call
    }

    /// Adds one delivery of `event` (its JSON is `body`) to `hook` to an
    /// enqueue call (see `enqueue.lua` for the order of the values).
    fn add_delivery(call: &mut ScriptInvocation<'_>, hook: &Webhook, event: &Event, body: &str) {
        call.arg(hook.id.as_str())
            .arg(hook.workspace.as_str())
            .arg(event.id.as_str())
            .arg(event.kind.as_str())
            .arg(body)
            .arg(event.timestamp_ms);
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
