//! The typed usage of one model request, handed to later layers (credits,
//! events) exactly once per request, whether it completed, failed or was cut.
//!
//! Streams report usage from the upstream's `include_usage` chunk; when a stream
//! is cut before that chunk arrives, the gateway estimates the tokens and sets
//! [`Usage::estimated`], so a caller who disconnects early is still accounted.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// Token counts, as the upstream reported them or as estimated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when at least one count is an estimate (no usage was reported).
    pub estimated: bool,
}

impl Usage {
    /// Parses an OpenAI `usage` object; `None` for `null` or an unexpected shape.
    pub fn from_json(raw: &[u8]) -> Option<Usage> {
        #[derive(Deserialize)]
        struct Wire {
            // The Responses API names them input and output tokens.
            #[serde(default, alias = "input_tokens")]
            prompt_tokens: u64,
            #[serde(default, alias = "output_tokens")]
            completion_tokens: u64,
        }
        let wire: Wire = serde_json::from_slice(raw).ok()?;
        Some(Usage { prompt_tokens: wire.prompt_tokens, completion_tokens: wire.completion_tokens, estimated: false })
    }

    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// A rough token count for text whose tokenisation is unknown: about four bytes
/// of English per token, the figure OpenAI documents. Used only for estimates.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// How a model request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered completely.
    Completed,
    /// The client went away before the answer was complete.
    ClientCancelled,
    /// The upstream failed (error status, timeout, died mid-stream, garbage).
    UpstreamFailed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::ClientCancelled => "client_cancelled",
            Outcome::UpstreamFailed => "upstream_failed",
        }
    }
}

/// Everything later layers need to account for one model request.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub request_id: String,
    /// The key's id or name; `None` only for unauthenticated routes.
    pub key: Option<Arc<str>>,
    /// What the client asked for (agent id or model alias).
    pub model: Arc<str>,
    /// The target that answered (or, when none did, the last one tried).
    pub provider: Arc<str>,
    pub upstream_model: Arc<str>,
    /// Upstream targets tried for the call (a fallback makes it 2 or more;
    /// 0 when the call never reached one).
    pub attempts: u32,
    pub endpoint: &'static str,
    pub streamed: bool,
    /// The HTTP status the client received; 499 (nginx's convention) when the
    /// client went away before the answer was complete.
    pub status: u16,
    pub outcome: Outcome,
    pub usage: Usage,
    pub latency: Duration,
    /// The store key's id (`key_...`); `None` for static config keys.
    pub key_id: Option<Arc<str>>,
    /// The key's workspace; `None` for static config keys (no events then).
    pub workspace: Option<Arc<str>>,
    /// Whether the model is an agent (agent execution events).
    pub agent: bool,
    /// Micro-credits charged (0 when the call was not metered).
    pub credits: u64,
    /// The answer's text and tool calls, when events collect them.
    pub transcript: Option<Box<crate::transcript::Transcript>>,
}

/// Receives one [`UsageRecord`] per model request. Implementations must not
/// block: they run on the request's task (credits and events queue the record).
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, record: UsageRecord);
}

/// The default sink: one structured log line per model request.
#[derive(Debug, Default)]
pub struct LogUsageSink;

impl UsageSink for LogUsageSink {
    fn record(&self, r: UsageRecord) {
        tracing::info!(
            target: "tollgate::access",
            request_id = %r.request_id,
            key = r.key.as_deref().unwrap_or("-"),
            endpoint = r.endpoint,
            model = %r.model,
            provider = %r.provider,
            upstream_model = %r.upstream_model,
            attempts = r.attempts,
            status = r.status,
            streamed = r.streamed,
            outcome = r.outcome.as_str(),
            prompt_tokens = r.usage.prompt_tokens,
            completion_tokens = r.usage.completion_tokens,
            estimated = r.usage.estimated,
            ms = r.latency.as_millis() as u64,
            "model request"
        );
    }
}
