//! Events: what happened in a workspace, logged and delivered to webhooks.
//!
//! The flow, and why each step is where it is:
//! 1. **emit** ([`EventBus::emit`]) — a request (or the management API, the
//!    ledger, the worker) builds an [`Event`] and hands it to a bounded
//!    in-memory queue. It never waits: when the queue is full the event is
//!    written to the store by a task of its own ("spill") instead of being
//!    dropped, so overload costs store writes, not requests or events.
//! 2. **drain** ([`bus::EventBus::drain`]) — one task on the control runtime takes the
//!    queue in batches and appends each batch to the [`EventLog`], which in the
//!    same step queues one delivery per matching webhook (embedded: one SQLite
//!    transaction; Redis: the workspace's stream, then the delivery stream).
//! 3. **deliver** ([`worker`]) — claims due deliveries from the durable
//!    [`DeliveryQueue`], signs and POSTs them, and marks one done only after a
//!    2xx (at least once; receivers deduplicate by `webhook-id`, the event id).
//!
//! What a kill -9 loses: events still in the in-memory queue (at most
//! what arrived while the last batch was being written). Everything appended
//! — the log and the delivery queue — survives, and a restarted gateway (or,
//! on Redis, any other replica) delivers what was pending.

pub mod bus;
pub mod credits_watch;
pub mod sign;
pub mod sink;
pub mod ssrf;
pub mod store;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

pub use bus::EventBus;
pub use store::{Attempt, Delivery, DeliveryQueue, EventLog, EventPage, EventQuery, WebhookStore};
pub use webhook::Webhook;

/// The event types tollgate emits (seeds 001 and 002 and DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventType {
    #[serde(rename = "request.completed")]
    RequestCompleted,
    #[serde(rename = "agent.execution.started")]
    AgentExecutionStarted,
    #[serde(rename = "agent.execution.completed")]
    AgentExecutionCompleted,
    #[serde(rename = "tool.invoked")]
    ToolInvoked,
    #[serde(rename = "ai_message")]
    AiMessage,
    #[serde(rename = "key.created")]
    KeyCreated,
    #[serde(rename = "key.revoked")]
    KeyRevoked,
    #[serde(rename = "agent.created")]
    AgentCreated,
    #[serde(rename = "agent.updated")]
    AgentUpdated,
    #[serde(rename = "agent.deleted")]
    AgentDeleted,
    #[serde(rename = "credits.low")]
    CreditsLow,
    #[serde(rename = "credits.exhausted")]
    CreditsExhausted,
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
    /// Sent by `POST /v1/webhooks/{id}/test` to that webhook only.
    #[serde(rename = "webhook.test")]
    WebhookTest,
    /// A schedule's due run started (seed 001).
    #[serde(rename = "scheduled_trigger")]
    ScheduledTrigger,
    #[serde(rename = "note_created")]
    NoteCreated,
    #[serde(rename = "task_completed")]
    TaskCompleted,
    #[serde(rename = "task_failed")]
    TaskFailed,
    /// A due run that could not start (`insufficient_quota`).
    #[serde(rename = "task_skipped")]
    TaskSkipped,
    #[serde(rename = "mission_created")]
    MissionCreated,
    #[serde(rename = "mission.completed")]
    MissionCompleted,
    #[serde(rename = "reminder_triggered")]
    ReminderTriggered,
}

impl EventType {
    pub const ALL: [EventType; 22] = [
        EventType::RequestCompleted,
        EventType::AgentExecutionStarted,
        EventType::AgentExecutionCompleted,
        EventType::ToolInvoked,
        EventType::AiMessage,
        EventType::KeyCreated,
        EventType::KeyRevoked,
        EventType::AgentCreated,
        EventType::AgentUpdated,
        EventType::AgentDeleted,
        EventType::CreditsLow,
        EventType::CreditsExhausted,
        EventType::WebhookDisabled,
        EventType::WebhookTest,
        EventType::ScheduledTrigger,
        EventType::NoteCreated,
        EventType::TaskCompleted,
        EventType::TaskFailed,
        EventType::TaskSkipped,
        EventType::MissionCreated,
        EventType::MissionCompleted,
        EventType::ReminderTriggered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RequestCompleted => "request.completed",
            EventType::AgentExecutionStarted => "agent.execution.started",
            EventType::AgentExecutionCompleted => "agent.execution.completed",
            EventType::ToolInvoked => "tool.invoked",
            EventType::AiMessage => "ai_message",
            EventType::KeyCreated => "key.created",
            EventType::KeyRevoked => "key.revoked",
            EventType::AgentCreated => "agent.created",
            EventType::AgentUpdated => "agent.updated",
            EventType::AgentDeleted => "agent.deleted",
            EventType::CreditsLow => "credits.low",
            EventType::CreditsExhausted => "credits.exhausted",
            EventType::WebhookDisabled => "webhook.disabled",
            EventType::WebhookTest => "webhook.test",
            EventType::ScheduledTrigger => "scheduled_trigger",
            EventType::NoteCreated => "note_created",
            EventType::TaskCompleted => "task_completed",
            EventType::TaskFailed => "task_failed",
            EventType::TaskSkipped => "task_skipped",
            EventType::MissionCreated => "mission_created",
            EventType::MissionCompleted => "mission.completed",
            EventType::ReminderTriggered => "reminder_triggered",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One thing that happened in a workspace.
#[derive(Debug, Clone)]
pub struct Event {
    /// `evt_...`, unique across replicas; also the deliveries' `webhook-id`.
    pub id: String,
    pub kind: EventType,
    /// Unix milliseconds.
    pub timestamp_ms: i64,
    pub workspace: Arc<str>,
    /// The event's `data` object, serialised once when the event is built.
    pub data: Box<RawValue>,
}

/// The JSON an event is logged and delivered as:
/// `{"id","type","timestamp","workspace","data"}` (DESIGN.md's
/// `{"type","timestamp","data"}` plus the id and workspace).
#[derive(Serialize)]
struct Wire<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    workspace: &'a str,
    data: &'a RawValue,
}

impl Event {
    /// The delivered body and the event log's item, byte for byte.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Wire {
            id: &self.id,
            kind: self.kind.as_str(),
            timestamp: rfc3339_ms(self.timestamp_ms),
            workspace: &self.workspace,
            data: &self.data,
        })
        .expect("an event serialises")
    }
}

/// `2026-01-04T10:30:00.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Builds events with fresh ids; shared by every emitter of a process.
pub struct EventFactory {
    ids: crate::ids::Sequence,
    clock: Arc<dyn crate::clock::Clock>,
}

impl EventFactory {
    pub fn new(clock: Arc<dyn crate::clock::Clock>) -> EventFactory {
        EventFactory { ids: crate::ids::Sequence::new("evt"), clock }
    }

    pub fn event(&self, workspace: Arc<str>, kind: EventType, data: &impl Serialize) -> Event {
        let data = serde_json::value::to_raw_value(data).expect("event data serialises");
        Event { id: self.ids.next(), kind, timestamp_ms: self.clock.now_ms(), workspace, data }
    }
}

/// Everything the event subsystem holds, built once per process.
pub struct Events {
    pub bus: EventBus,
    pub factory: EventFactory,
    pub log: Arc<dyn EventLog>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub config: crate::config::EventsConfig,
    /// Swapped whole by a config reload (read per attempt).
    pub webhook_config: arc_swap::ArcSwap<crate::config::WebhooksConfig>,
    pub clock: Arc<dyn crate::clock::Clock>,
    pub credits: credits_watch::CreditsWatch,
    /// Where deliveries and spills run (tracked, drained at shutdown).
    pub tasks: crate::tasks::Tasks,
}

impl Events {
    /// The events of the stores' backend. Call inside the control runtime.
    pub async fn open(
        stores: &crate::store::Stores,
        config: &crate::config::Config,
        clock: Arc<dyn crate::clock::Clock>,
        tasks: &crate::tasks::Tasks,
    ) -> Result<Events, crate::store::StoreError> {
        use crate::store::Backend;
        let w = &config.webhooks;
        let (log, webhooks, queue): (Arc<dyn EventLog>, Arc<dyn WebhookStore>, Arc<dyn DeliveryQueue>) = match &stores
            .backend
        {
            Backend::Embedded(store) => {
                let lease = w.claim_idle.as_millis() as i64;
                let e = Arc::new(store::embedded::EmbeddedEvents::new(store.clone(), lease, w.attempts_kept).await?);
                (e.clone(), e.clone(), e)
            }
            Backend::Redis(store) => {
                let e = Arc::new(store::redis::RedisEvents::new(store.clone(), &config.events, w).await?);
                (e.clone(), e.clone(), e)
            }
        };
        let e = &config.events;
        Ok(Events {
            bus: EventBus::new(log.clone(), e.queue_capacity, e.batch_size, e.retry_interval, tasks.clone()),
            factory: EventFactory::new(clock.clone()),
            log,
            webhooks,
            queue,
            config: e.clone(),
            webhook_config: arc_swap::ArcSwap::from_pointee(w.clone()),
            clock,
            credits: credits_watch::CreditsWatch::new(e.low_credits_percent),
            tasks: tasks.clone(),
        })
    }

    /// Builds and emits an event (never blocks).
    pub fn emit(&self, workspace: &Arc<str>, kind: EventType, data: &impl Serialize) {
        self.bus.emit(self.factory.event(workspace.clone(), kind, data));
    }
}

/// The event subsystem's background work: the drain, the delivery worker,
/// the retention pruner and the credit watcher. Runs on the control runtime
/// until `stop` is set and the drain has finished the batch it was writing
/// (the rest is written by [`EventBus::flush`] at shutdown).
pub async fn run(events: Arc<Events>, meter: Arc<crate::credits::Meter>, stop: tokio::sync::watch::Receiver<bool>) {
    let pruning = async {
        let mut every = tokio::time::interval(PRUNE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let min_ms = events.clock.now_ms() - events.config.max_age.as_millis() as i64;
            match events.log.prune(min_ms, events.config.max_per_workspace).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned the event log"),
                Err(e) => tracing::warn!(error = %e, "pruning the event log failed; will retry"),
            }
        }
    };
    let watching = async {
        let mut every = tokio::time::interval(credits_watch::CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            events.credits.check(&meter, &events).await;
        }
    };
    let worker = worker::Worker::new(events.clone(), meter.clone());
    tokio::select! {
        () = events.bus.drain(stop) => {}
        never = worker.run() => match never {},
        never = pruning => never,
        never = watching => never,
    }
}

/// How often the log is trimmed to its retention (embedded; Redis trims on append).
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_and_events_serialise_once() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.as_str()));
        }
        let clock = Arc::new(crate::clock::ManualClock::new(1_767_522_600_123));
        let e = EventFactory::new(clock).event("acme".into(), EventType::KeyCreated, &serde_json::json!({"k": 1}));
        assert!(e.id.starts_with("evt_"));
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["type"], "key.created");
        assert_eq!(v["timestamp"], "2026-01-04T10:30:00.123Z");
        assert_eq!(v["workspace"], "acme");
        assert_eq!(v["data"]["k"], 1);
    }
}
