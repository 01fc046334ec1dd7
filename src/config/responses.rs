//! `[responses]`: how long stored Responses API responses are kept, and how
//! much of a chain is sent upstream when a request continues one.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Validator};

/// Stored responses (see `responses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesConfig {
    /// A stored response (and its items) is kept this long after it was
    /// created, then is gone: invisible at once, deleted by the pruner
    /// (embedded) or by Redis's own expiry.
    pub retention: Duration,
    /// The most items of a chain a continuation (`previous_response_id`)
    /// loads: the newest ones, so a long conversation costs a bounded read
    /// and the agent's context budget trims from there.
    pub max_history_items: usize,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig { retention: Duration::from_secs(30 * 86_400), max_history_items: 1000 }
    }
}

impl ResponsesConfig {
    /// When a response created at `created_at` (Unix s) expires (Unix s).
    pub fn expires_at(&self, created_at: i64) -> i64 {
        created_at.saturating_add(self.retention.as_secs() as i64)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    pub retention_days: Option<u64>,
    pub max_history_items: Option<u64>,
}

/// Ten years: keeps `created_at + retention` far from overflow.
const MAX_RETENTION_DAYS: u64 = 3650;
/// One history is one store reply: keep it a size a replica can hold.
const MAX_HISTORY_ITEMS: u64 = 100_000;

impl Validator<'_> {
    pub(super) fn responses(&self, r: RawResponses) -> Result<ResponsesConfig, ConfigError> {
        let d = ResponsesConfig::default();
        let days = self.positive("responses.retention_days", r.retention_days, d.retention.as_secs() / 86_400)?;
        if days > MAX_RETENTION_DAYS {
            return Err(self.err("responses.retention_days", format!("must be at most {MAX_RETENTION_DAYS}")));
        }
        let items = self.positive("responses.max_history_items", r.max_history_items, d.max_history_items as u64)?;
        if items > MAX_HISTORY_ITEMS {
            return Err(self.err("responses.max_history_items", format!("must be at most {MAX_HISTORY_ITEMS}")));
        }
        Ok(ResponsesConfig { retention: Duration::from_secs(days * 86_400), max_history_items: items as usize })
    }
}
