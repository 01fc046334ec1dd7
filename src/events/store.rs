//! What the event subsystem needs from durable state: the event log, the
//! webhooks, and the delivery queue. Each is a trait with an embedded (SQLite)
//! and a Redis implementation, on the same backend as the other stores.

pub mod embedded;
pub mod redis;

use async_trait::async_trait;
use serde::Serialize;

use super::{Event, Webhook};
use crate::store::StoreError;

/// A page request on a workspace's event log.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events of these types (empty: all).
    pub types: Vec<String>,
    /// The previous page's `next_cursor`: the page starts after it.
    pub after: Option<String>,
    pub limit: usize,
    /// Oldest first; default newest first.
    pub ascending: bool,
}

/// One page of events, each as its stored JSON.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub events: Vec<Box<serde_json::value::RawValue>>,
    /// Where the next page starts; `None` when this page reached the end.
    pub next_cursor: Option<String>,
}

/// Appends events and trims the log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Logs `events` and queues one delivery per enabled webhook of the
    /// event's workspace whose types match. Returns the deliveries queued.
    async fn append(&self, events: &[Event]) -> Result<usize, StoreError>;
    /// A page of a workspace's events, in a stable order: events appended
    /// while a client pages never shift or repeat what it already saw.
    async fn list_events(&self, workspace: &str, query: &EventQuery) -> Result<EventPage, StoreError>;
    /// Deletes events older than `min_ms` and beyond `max_count` per
    /// workspace; how many were deleted (Redis: trimmed on append, 0 here).
    async fn prune(&self, min_ms: i64, max_count: u64) -> Result<u64, StoreError>;
}

/// Webhook endpoints.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Stores a new webhook unless its workspace already has `max`;
    /// `Conflict` then.
    async fn insert_webhook(&self, webhook: &Webhook, max: usize) -> Result<(), StoreError>;
    async fn webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError>;
    /// A workspace's webhooks, oldest first.
    async fn list_webhooks(&self, workspace: &str) -> Result<Vec<Webhook>, StoreError>;
    /// Deletes a webhook (its queued deliveries are dropped when claimed).
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;
    /// Replaces the secret; the old one keeps signing until `previous_until_ms`.
    async fn rotate_secret(&self, id: &str, secret: &str, previous_until_ms: i64) -> Result<bool, StoreError>;
    /// Counts one attempt's result: a success resets the run of failures, a
    /// failure extends it. Returns the run's length after this attempt.
    async fn count_attempt(&self, id: &str, success: bool) -> Result<u64, StoreError>;
    /// Disables the webhook; `false` if it was already disabled or is gone
    /// (so only one replica reports `webhook.disabled`).
    async fn disable_webhook(&self, id: &str, reason: &str, at: i64) -> Result<bool, StoreError>;
}

/// One event to deliver to one webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook: String,
    pub workspace: String,
    pub event_id: String,
    pub event_type: String,
    /// The exact bytes to POST (and sign).
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When it was first queued (Unix ms).
    pub queued_at_ms: i64,
    /// The backend's handle on the queue entry (row id, stream entry id).
    pub handle: String,
}

/// What becomes of a claimed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered, given up, or its webhook is gone: leave the queue.
    Done,
    /// Try again at this time (Unix ms), with `attempts` made so far.
    Retry { at_ms: i64, attempts: u32 },
}

/// What the worker decided for one claimed delivery, waiting to be written
/// (with the others decided meanwhile) by [`DeliveryQueue::finish`].
#[derive(Debug, Clone)]
pub struct Finished {
    pub delivery: Delivery,
    pub next: Next,
    /// The attempt to record; `None` for a delivery put back or dropped
    /// without one.
    pub attempt: Option<Attempt>,
}

/// One delivery attempt, for `GET /v1/webhooks/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Attempt {
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix ms when it started.
    pub at_ms: i64,
    /// The receiver's HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// What went wrong (network error, timeout, refused target), if anything.
    pub error: Option<String>,
    pub latency_ms: u64,
    /// `delivered`, `retrying`, `failed` (gave up), `disabled`.
    pub result: String,
}

/// The durable queue of deliveries. At least once: a claimed delivery that is
/// never finished (its replica died) is claimed again.
#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Queues one delivery of `event` to `webhook` (the test endpoint).
    async fn enqueue(&self, webhook: &Webhook, event: &Event) -> Result<(), StoreError>;
    /// Claims up to `max` due deliveries for this replica.
    async fn claim(&self, max: usize, now_ms: i64) -> Result<Vec<Delivery>, StoreError>;
    /// Removes or reschedules claimed deliveries and records their attempts,
    /// the whole batch in one store write (one transaction; on Redis one
    /// script call and one pipeline).
    async fn finish(&self, batch: &[Finished]) -> Result<(), StoreError>;
    /// A webhook's latest attempts, newest first.
    async fn attempts(&self, webhook: &Webhook, limit: usize) -> Result<Vec<Attempt>, StoreError>;
    /// Deliveries still queued (due or not); for tests, the benchmark and shutdown logs.
    async fn pending(&self) -> Result<u64, StoreError>;
}
