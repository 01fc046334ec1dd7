//! `[events]` and `[webhooks]`: the event log and the webhook delivery worker.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Validator};

/// How events are buffered, kept and trimmed (see `events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// The in-memory queue between emitters and the store. When it is full,
    /// events are written straight to the store by a task of their own
    /// (never dropped, never waited for by a request).
    pub queue_capacity: usize,
    /// The most events written to the store in one transaction / pipeline.
    pub batch_size: usize,
    /// How long the drain waits before retrying a store write that failed
    /// (the batch is kept meanwhile).
    pub retry_interval: Duration,
    /// Events older than this are deleted from the log.
    pub max_age: Duration,
    /// The most events kept per workspace (oldest go first).
    pub max_per_workspace: u64,
    /// `credits.low` fires when a metered balance falls below this share of
    /// its plan allowance (percent), unless the workspace sets its own
    /// threshold.
    pub low_credits_percent: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            queue_capacity: 10_000,
            batch_size: 256,
            retry_interval: Duration::from_millis(500),
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_per_workspace: 100_000,
            low_credits_percent: 10,
        }
    }
}

/// How webhooks are delivered (see `events::worker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhooksConfig {
    /// Each attempt's bound, connect to last byte of the answer.
    pub timeout: Duration,
    /// Waits before the 2nd, 3rd, ... attempt (the first is immediate);
    /// after the last, the delivery is given up.
    pub retry_schedule: Vec<Duration>,
    /// Each wait is moved by up to this share (percent), at random, so
    /// retries of many deliveries do not arrive together.
    pub jitter_percent: u64,
    /// Consecutive failed attempts after which an endpoint is disabled.
    pub disable_after_failures: u64,
    /// Attempts in flight per endpoint to start with, and after failures:
    /// one slow or hanging receiver never takes more.
    pub per_endpoint_concurrency: usize,
    /// Attempts in flight per endpoint that keeps up (its window widens by one
    /// per success while deliveries wait, and halves on a failure).
    pub max_per_endpoint_concurrency: usize,
    /// Claimed deliveries per replica (in flight, or lined up behind them).
    pub max_in_flight: usize,
    /// Integration micro-credits each delivered event costs.
    pub price: u64,
    /// Allows targets on loopback, private and link-local addresses
    /// (refused by default: a webhook must not reach the gateway's network).
    pub allow_private_targets: bool,
    /// How often the worker looks for due deliveries when idle.
    pub poll_interval: Duration,
    /// Redis: a delivery claimed by a replica that stopped answering for this
    /// long is taken over by another (XAUTOCLAIM). Must exceed `timeout`.
    pub claim_idle: Duration,
    /// A delivery the workspace cannot pay for waits this long before trying again.
    pub credit_wait: Duration,
    /// After a secret rotation the old secret still signs for this long.
    pub secret_grace: Duration,
    /// Webhooks per workspace.
    pub max_per_workspace: usize,
    /// Delivery attempts kept per webhook for `GET /v1/webhooks/{id}/deliveries`.
    pub attempts_kept: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let s = Duration::from_secs;
        WebhooksConfig {
            timeout: s(15),
            // Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
            retry_schedule: vec![s(5), s(300), s(1800), s(7200), s(18000), s(36000), s(36000)],
            jitter_percent: 20,
            disable_after_failures: 100,
            per_endpoint_concurrency: 4,
            max_per_endpoint_concurrency: 32,
            max_in_flight: 256,
            price: 0,
            allow_private_targets: false,
            poll_interval: Duration::from_millis(500),
            claim_idle: s(60),
            credit_wait: s(5),
            secret_grace: s(24 * 3600),
            max_per_workspace: 20,
            attempts_kept: 100,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub queue_capacity: Option<u64>,
    pub batch_size: Option<u64>,
    pub retry_interval_ms: Option<u64>,
    pub retention_days: Option<u64>,
    pub retention_ms: Option<u64>,
    pub max_per_workspace: Option<u64>,
    pub low_credits_percent: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    pub timeout_ms: Option<u64>,
    pub retry_schedule_ms: Option<Vec<u64>>,
    pub jitter_percent: Option<u64>,
    pub disable_after_failures: Option<u64>,
    pub per_endpoint_concurrency: Option<u64>,
    pub max_per_endpoint_concurrency: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub price: Option<u64>,
    pub allow_private_targets: Option<bool>,
    pub poll_interval_ms: Option<u64>,
    pub claim_idle_ms: Option<u64>,
    pub credit_wait_ms: Option<u64>,
    pub secret_grace_ms: Option<u64>,
    pub max_per_workspace: Option<u64>,
    pub attempts_kept: Option<u64>,
}

/// The longest retry wait and secret grace period (7 days): bounds what the
/// worker adds to a timestamp.
const MAX_WAIT_MS: u64 = 7 * 24 * 3600 * 1000;

impl Validator<'_> {
    pub(super) fn events(&self, e: RawEvents) -> Result<EventsConfig, ConfigError> {
        let d = EventsConfig::default();
        if e.retention_days.is_some() && e.retention_ms.is_some() {
            return Err(self.err("events", "set retention_days or retention_ms, not both"));
        }
        let max_age = match (e.retention_days, e.retention_ms) {
            (Some(days), _) => self.positive("events.retention_days", Some(days), 1)?.saturating_mul(86_400_000),
            (_, ms) => self.positive("events.retention_ms", ms, d.max_age.as_millis() as u64)?,
        };
        let percent = e.low_credits_percent.unwrap_or(d.low_credits_percent);
        if percent > 100 {
            return Err(self.err("events.low_credits_percent", "must be at most 100"));
        }
        Ok(EventsConfig {
            queue_capacity: self.positive("events.queue_capacity", e.queue_capacity, d.queue_capacity as u64)? as usize,
            batch_size: self.positive("events.batch_size", e.batch_size, d.batch_size as u64)? as usize,
            retry_interval: self.millis(
                "events.retry_interval_ms",
                e.retry_interval_ms,
                d.retry_interval.as_millis() as u64,
            )?,
            max_age: Duration::from_millis(max_age),
            max_per_workspace: self.positive("events.max_per_workspace", e.max_per_workspace, d.max_per_workspace)?,
            low_credits_percent: percent,
        })
    }

    pub(super) fn webhooks(&self, w: RawWebhooks) -> Result<WebhooksConfig, ConfigError> {
        let d = WebhooksConfig::default();
        let ms = |d: Duration| d.as_millis() as u64;
        let retry_schedule = match w.retry_schedule_ms {
            Some(list) if list.len() > 20 => {
                return Err(self.err("webhooks.retry_schedule_ms", "at most 20 retries"));
            }
            Some(list) if list.iter().any(|&ms| ms > MAX_WAIT_MS) => {
                return Err(self.err("webhooks.retry_schedule_ms", "each wait must be at most 7 days"));
            }
            Some(list) => list.into_iter().map(Duration::from_millis).collect(),
            None => d.retry_schedule.clone(),
        };
        let timeout = self.millis("webhooks.timeout_ms", w.timeout_ms, ms(d.timeout))?;
        let claim_idle = self.millis("webhooks.claim_idle_ms", w.claim_idle_ms, ms(d.claim_idle))?;
        if claim_idle <= timeout {
            return Err(self.err(
                "webhooks.claim_idle_ms",
                "must exceed webhooks.timeout_ms, or a slow delivery would be taken over while still running",
            ));
        }
        let jitter_percent = w.jitter_percent.unwrap_or(d.jitter_percent);
        if jitter_percent > 100 {
            return Err(self.err("webhooks.jitter_percent", "must be at most 100"));
        }
        if w.price.is_some_and(|p| p > crate::units::MAX_CHARGE) {
            return Err(self.err("webhooks.price", format!("must be at most {}", crate::units::MAX_CHARGE)));
        }
        let per_endpoint_concurrency = self.positive(
            "webhooks.per_endpoint_concurrency",
            w.per_endpoint_concurrency,
            d.per_endpoint_concurrency as u64,
        )? as usize;
        // Unset, the ceiling is the default or the floor, whichever is higher.
        let max_per_endpoint_concurrency = self.positive(
            "webhooks.max_per_endpoint_concurrency",
            w.max_per_endpoint_concurrency,
            (d.max_per_endpoint_concurrency as u64).max(per_endpoint_concurrency as u64),
        )? as usize;
        if max_per_endpoint_concurrency < per_endpoint_concurrency {
            return Err(
                self.err("webhooks.max_per_endpoint_concurrency", "must be at least webhooks.per_endpoint_concurrency")
            );
        }
        Ok(WebhooksConfig {
            timeout,
            retry_schedule,
            jitter_percent,
            disable_after_failures: self.positive(
                "webhooks.disable_after_failures",
                w.disable_after_failures,
                d.disable_after_failures,
            )?,
            per_endpoint_concurrency,
            max_per_endpoint_concurrency,
            max_in_flight: self.positive("webhooks.max_in_flight", w.max_in_flight, d.max_in_flight as u64)? as usize,
            price: w.price.unwrap_or(d.price),
            allow_private_targets: w.allow_private_targets.unwrap_or(d.allow_private_targets),
            poll_interval: self.millis("webhooks.poll_interval_ms", w.poll_interval_ms, ms(d.poll_interval))?,
            claim_idle,
            credit_wait: self.millis("webhooks.credit_wait_ms", w.credit_wait_ms, ms(d.credit_wait))?,
            secret_grace: match w.secret_grace_ms {
                Some(grace) if grace > MAX_WAIT_MS => {
                    return Err(self.err("webhooks.secret_grace_ms", "must be at most 7 days"));
                }
                grace => Duration::from_millis(grace.unwrap_or(ms(d.secret_grace))),
            },
            max_per_workspace: self.positive(
                "webhooks.max_per_workspace",
                w.max_per_workspace,
                d.max_per_workspace as u64,
            )? as usize,
            attempts_kept: self.positive("webhooks.attempts_kept", w.attempts_kept, d.attempts_kept as u64)? as usize,
        })
    }
}
