//! A webhook endpoint as stored, and what the API shows of it.
//!
//! Unlike API keys, webhook secrets are stored as they are: signing needs the
//! key itself, not a hash of it. They are shown once (at creation and at
//! rotation), never listed, and never logged (`Secret` prints `*****`).

use serde::Serialize;

use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `wh_` + hex.
    pub id: String,
    pub workspace: String,
    pub url: String,
    /// Event types it receives; `["*"]` is all.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub secret: Secret<String>,
    /// The secret before the last rotation, and until when it still signs.
    pub previous_secret: Option<Secret<String>>,
    pub previous_until_ms: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    /// Failed attempts since the last success (as read; the store counts).
    pub failures: u64,
}

impl Webhook {
    /// Whether events of this type go to this webhook.
    pub fn wants(&self, event_type: &str) -> bool {
        self.disabled_at.is_none() && self.events.iter().any(|e| e == "*" || e == event_type)
    }

    /// The HMAC keys that sign now, newest first.
    pub fn signing_keys(&self, now_ms: i64) -> Vec<Vec<u8>> {
        let mut keys = Vec::with_capacity(2);
        keys.extend(super::sign::secret_key(self.secret.expose()).ok());
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_until_ms) {
            if now_ms < until {
                keys.extend(super::sign::secret_key(previous.expose()).ok());
            }
        }
        keys
    }

    /// The API's view: everything but the secrets.
    pub fn view(&self) -> WebhookView<'_> {
        WebhookView {
            id: &self.id,
            object: "webhook",
            workspace: &self.workspace,
            url: &self.url,
            events: &self.events,
            description: self.description.as_deref(),
            status: if self.disabled_at.is_some() { "disabled" } else { "enabled" },
            created_at: self.created_at,
            disabled_at: self.disabled_at,
            disabled_reason: self.disabled_reason.as_deref(),
            consecutive_failures: self.failures,
            previous_secret_expires_at: self.previous_until_ms.map(|ms| ms / 1000),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WebhookView<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub workspace: &'a str,
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub status: &'static str,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<&'a str>,
    pub consecutive_failures: u64,
    pub previous_secret_expires_at: Option<i64>,
}
