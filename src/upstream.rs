//! Upstream providers: where a rewritten request is sent.
//!
//! A [`Provider`] takes an [`UpstreamRequest`] (endpoint + body bytes) and
//! returns the upstream's status and body stream, after retries. Handlers never
//! see which kind of provider answered: the built-in mock produces the same
//! bytes an OpenAI-compatible server would, so it exercises the same relay.

pub mod mock;
pub mod openai;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;

use crate::config::ProviderConfig;
use crate::request::Endpoint;

/// An upstream body; errors are already classified.
pub type UpstreamBody = UnsyncBoxBody<Bytes, UpstreamError>;

/// One request to an upstream, ready to send (and to resend on retry).
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub endpoint: Endpoint,
    /// The rewritten JSON body; `Bytes` so a retry resends it without a copy.
    pub body: Bytes,
    pub stream: bool,
    pub request_id: HeaderValue,
    /// The upstream model name and the name the client knows it by: an
    /// upstream error message is rewritten so it never reveals the former.
    pub upstream_model: Arc<str>,
    pub client_model: Arc<str>,
    /// The target's own time to first byte, over the provider's.
    pub first_byte_timeout: Option<Duration>,
    /// Whether the provider may retry (the last target a call can go to);
    /// otherwise a failure returns at once and the call moves on.
    pub retry: bool,
    /// `traceparent` / `tracestate` of the attempt's span (empty when
    /// traces are off).
    pub trace: Vec<(http::HeaderName, HeaderValue)>,
}

pub struct UpstreamResponse {
    pub status: StatusCode,
    /// The upstream said `Content-Type: text/event-stream`.
    pub event_stream: bool,
    pub body: UpstreamBody,
    /// Longest silence allowed between two body frames.
    pub idle_timeout: Duration,
}

/// Why an upstream call failed. The `Display` text is what the client sees, so
/// it never contains the upstream's host, key or internal detail (those go to
/// the log through [`UpstreamError::detail`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("The upstream provider could not be reached.")]
    Unreachable { detail: String },
    #[error("The upstream provider did not answer in time.")]
    Timeout,
    #[error("The upstream provider is overloaded; retry later.")]
    Overloaded { retry_after: Option<Duration> },
    /// Every target of the model is cooling down or at its concurrency limit.
    #[error("No upstream for this model can take the request now; retry later.")]
    Unavailable { retry_after: Option<Duration> },
    #[error("The upstream provider failed with status {status}.")]
    Status { status: u16 },
    #[error("The upstream provider refused the gateway's credentials.")]
    Auth { status: u16 },
    #[error("The upstream provider sent an invalid response.")]
    Invalid { detail: String },
    #[error("The upstream response is larger than the gateway's limit.")]
    TooLarge,
    #[error("The upstream provider stopped sending data.")]
    Idle,
    #[error("The upstream connection failed mid-response.")]
    Body { detail: String },
    /// A 4xx about the request itself, passed through with a scrubbed message.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String, kind: String, code: Option<String>, param: Option<String> },
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout | UpstreamError::Idle => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Overloaded { .. } | UpstreamError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::Rejected { status, .. } => *status,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            UpstreamError::Unreachable { .. } => "upstream_unreachable",
            UpstreamError::Timeout => "upstream_timeout",
            UpstreamError::Overloaded { .. } => "upstream_overloaded",
            UpstreamError::Unavailable { .. } => "upstream_unavailable",
            UpstreamError::Status { .. } => "upstream_status",
            UpstreamError::Auth { .. } => "upstream_auth",
            UpstreamError::Invalid { .. } => "upstream_invalid_response",
            UpstreamError::TooLarge => "upstream_response_too_large",
            UpstreamError::Idle => "upstream_idle_timeout",
            UpstreamError::Body { .. } => "upstream_stream_error",
            UpstreamError::Rejected { code, .. } => code.as_deref().unwrap_or("upstream_rejected"),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Overloaded { retry_after } | UpstreamError::Unavailable { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Whether the call moves on to the next target: the target failed or
    /// is busy, and nothing was sent to the client yet. A rejection of the
    /// request itself would be rejected by every target.
    pub fn falls_back(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unreachable { .. }
                | UpstreamError::Timeout
                | UpstreamError::Overloaded { .. }
                | UpstreamError::Status { .. }
                | UpstreamError::Auth { .. }
                | UpstreamError::Invalid { .. }
        )
    }

    /// A fixed-set name of the error's kind (the metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable { .. } => "unreachable",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Overloaded { .. } => "overloaded",
            UpstreamError::Unavailable { .. } => "unavailable",
            UpstreamError::Status { .. } => "status",
            UpstreamError::Auth { .. } => "auth",
            UpstreamError::Invalid { .. } => "invalid",
            UpstreamError::TooLarge => "too_large",
            UpstreamError::Idle => "idle",
            UpstreamError::Body { .. } => "body",
            UpstreamError::Rejected { .. } => "rejected",
        }
    }

    /// A rejection of the request's content is the client's to fix.
    pub fn is_client_fault(&self) -> bool {
        matches!(self, UpstreamError::Rejected { .. })
    }

    /// Internal detail for the log (never sent to the client).
    pub fn detail(&self) -> &str {
        match self {
            UpstreamError::Unreachable { detail }
            | UpstreamError::Invalid { detail }
            | UpstreamError::Body { detail } => detail,
            _ => "",
        }
    }
}

/// A configured provider.
pub enum Provider {
    /// Boxed: the pooled client is large, the mock is small.
    OpenAi(Box<openai::OpenAiProvider>),
    Mock(mock::MockProvider),
}

impl Provider {
    /// `workers` is the number of worker threads: each gets its own pool.
    pub fn from_config(name: &str, config: &ProviderConfig, workers: usize) -> Result<Provider, String> {
        Ok(match config {
            ProviderConfig::OpenAi(c) => Provider::OpenAi(Box::new(openai::OpenAiProvider::new(name, c, workers)?)),
            ProviderConfig::Mock(c) => Provider::Mock(mock::MockProvider::new(c)),
        })
    }

    /// Whether the Responses API goes to this provider as it is (`responses =
    /// "native"`) rather than translated onto chat completions.
    pub fn speaks_responses(&self) -> bool {
        match self {
            Provider::OpenAi(p) => p.native_responses(),
            Provider::Mock(_) => false,
        }
    }

    /// Sends the request, retrying where that is safe; see each kind's docs.
    pub async fn send(&self, request: &UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Provider::OpenAi(p) => p.send(request).await,
            Provider::Mock(p) => p.send(request),
        }
    }
}
