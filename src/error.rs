//! The one place where typed errors become the OpenAI error JSON.
//!
//! Each subsystem returns its own error enum; [`Error`] gathers them and
//! [`Error::to_response`] picks the status, `type`, `code` and headers once.
//! [`Origin`] says who caused the failure (client, upstream, gateway), which
//! decides the log level and the low-cardinality metric label.

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::admin::ManagementError;
use crate::agents::CatalogError;
use crate::auth::AuthError;
use crate::body::Body;
use crate::conversations::ConversationError;
use crate::credits::MeterError;
use crate::limits::{LimitError, RateHeaders};
use crate::request::RequestError;
use crate::responses::ResponsesError;
use crate::responses::StoredError;
use crate::router::RouteError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Management(#[from] ManagementError),
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// A request on a connection that arrived after shutdown began.
    #[error("The gateway is shutting down; retry on another connection.")]
    ShuttingDown,
    #[error(transparent)]
    Responses(#[from] ResponsesError),
    #[error(transparent)]
    Stored(#[from] StoredError),
    #[error(transparent)]
    Conversation(#[from] ConversationError),
    /// A reload asked for through the admin route found the config invalid.
    #[error("The config was not reloaded: {0}")]
    Reload(#[from] crate::reload::ReloadError),
}

impl From<crate::agents::ResolveError> for Error {
    fn from(e: crate::agents::ResolveError) -> Self {
        match e {
            crate::agents::ResolveError::Catalog(e) => Error::Catalog(e),
            crate::agents::ResolveError::Store(e) => e.into(),
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::Management(e.into())
    }
}

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Upstream,
    Internal,
}

/// The OpenAI error object.
#[derive(Debug, Serialize)]
pub struct ErrorObject<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub code: Option<&'a str>,
    pub param: Option<&'a str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorObject<'a>,
}

/// Status, type and code of one error, before rendering.
struct Parts<'a> {
    status: StatusCode,
    kind: &'a str,
    code: &'a str,
    param: Option<&'a str>,
    retry_after: Option<Duration>,
    /// `x-should-retry: false`: a permanent condition SDKs must not retry.
    final_: bool,
    rate: Option<&'a RateHeaders>,
}

impl Error {
    pub fn origin(&self) -> Origin {
        match self {
            Error::Auth(AuthError::Unavailable)
            | Error::Management(ManagementError::Unavailable)
            | Error::Meter(MeterError::Unavailable(_))
            | Error::ShuttingDown => Origin::Internal,
            Error::Upstream(e) if e.is_client_fault() => Origin::Client,
            Error::Responses(ResponsesError::Upstream(_)) => Origin::Upstream,
            Error::Upstream(_) => Origin::Upstream,
            _ => Origin::Client,
        }
    }

    /// The error JSON's `code` (`rate_limit_exceeded`, `invalid_api_key`...).
    pub fn code(&self) -> &str {
        self.parts().code
    }

    fn parts(&self) -> Parts<'_> {
        let p = |status, kind, code| Parts {
            status,
            kind,
            code,
            param: None,
            retry_after: None,
            final_: false,
            rate: None,
        };
        const INVALID: &str = "invalid_request_error";
        match self {
            Error::Route(RouteError::NotFound) => p(StatusCode::NOT_FOUND, "not_found_error", "not_found"),
            Error::Route(RouteError::MethodNotAllowed { .. }) => {
                p(StatusCode::METHOD_NOT_ALLOWED, INVALID, "method_not_allowed")
            }
            Error::Auth(AuthError::Missing) => p(StatusCode::UNAUTHORIZED, INVALID, "missing_api_key"),
            Error::Auth(AuthError::Invalid) => p(StatusCode::UNAUTHORIZED, INVALID, "invalid_api_key"),
            Error::Auth(AuthError::Expired) => p(StatusCode::UNAUTHORIZED, INVALID, "expired_api_key"),
            Error::Auth(AuthError::Unavailable) => p(StatusCode::SERVICE_UNAVAILABLE, "api_error", "store_unavailable"),
            Error::Request(e) => Parts { param: e.param(), ..p(e.status(), INVALID, e.code()) },
            Error::Catalog(CatalogError::NotFound(_)) => {
                Parts { param: Some("model"), ..p(StatusCode::NOT_FOUND, INVALID, "model_not_found") }
            }
            Error::Catalog(CatalogError::NotAllowed(_)) => {
                Parts { param: Some("model"), ..p(StatusCode::FORBIDDEN, "permission_error", "model_not_allowed") }
            }
            Error::Management(e) => match e {
                ManagementError::InsufficientScope(_) => {
                    p(StatusCode::FORBIDDEN, "permission_error", "insufficient_scope")
                }
                ManagementError::NotFound(_) => p(StatusCode::NOT_FOUND, "not_found_error", "not_found"),
                ManagementError::Conflict(_) => p(StatusCode::CONFLICT, INVALID, "conflict"),
                ManagementError::Invalid { param, .. } => {
                    Parts { param: Some(param), ..p(StatusCode::BAD_REQUEST, INVALID, "invalid_value") }
                }
                ManagementError::Missing { param, .. } => {
                    Parts { param: Some(param), ..p(StatusCode::BAD_REQUEST, INVALID, "missing_required_parameter") }
                }
                ManagementError::Body(e) => Parts { param: e.param(), ..p(StatusCode::BAD_REQUEST, INVALID, e.code()) },
                ManagementError::Unavailable => p(StatusCode::SERVICE_UNAVAILABLE, "api_error", "store_unavailable"),
            },
            // The upstream's own verdict on the request: its type, code and param.
            Error::Upstream(e @ UpstreamError::Rejected { kind, param, .. }) => {
                Parts { param: param.as_deref(), ..p(e.status(), kind, e.code()) }
            }
            Error::Upstream(e) => Parts { retry_after: e.retry_after(), ..p(e.status(), "upstream_error", e.code()) },
            Error::Meter(e) => match e {
                MeterError::Limit(LimitError::Exceeded { dimension, retry_after, headers, .. }) => Parts {
                    retry_after: Some(*retry_after),
                    rate: Some(headers),
                    ..p(StatusCode::TOO_MANY_REQUESTS, dimension.as_str(), "rate_limit_exceeded")
                },
                MeterError::Limit(LimitError::TooLarge { .. }) => {
                    Parts { final_: true, ..p(StatusCode::TOO_MANY_REQUESTS, "tokens", "rate_limit_exceeded") }
                }
                MeterError::InsufficientQuota { headers, .. } => Parts {
                    final_: true,
                    rate: Some(headers),
                    ..p(StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota")
                },
                MeterError::UnknownWorkspace(_) => p(StatusCode::NOT_FOUND, "not_found_error", "not_found"),
                MeterError::TopUpTooLarge => {
                    Parts { param: Some("amount"), ..p(StatusCode::BAD_REQUEST, INVALID, "invalid_value") }
                }
                MeterError::Unavailable(_) => p(StatusCode::SERVICE_UNAVAILABLE, "api_error", "store_unavailable"),
            },
            Error::Responses(e) => Parts { param: e.param(), ..p(e.status(), e.error_type(), e.code()) },
            Error::Stored(StoredError::NotFound(_)) => p(StatusCode::NOT_FOUND, INVALID, "not_found"),
            Error::Stored(StoredError::UnknownPrevious(_)) => Parts {
                param: Some("previous_response_id"),
                ..p(StatusCode::NOT_FOUND, INVALID, "previous_response_not_found")
            },
            Error::Conversation(e) => match e {
                ConversationError::Busy { retry_after_s } => Parts {
                    retry_after: Some(Duration::from_secs(*retry_after_s)),
                    ..p(StatusCode::CONFLICT, INVALID, "conversation_busy")
                },
                ConversationError::NotFound { .. } => p(StatusCode::NOT_FOUND, INVALID, "not_found"),
                ConversationError::LeaseLost => p(StatusCode::CONFLICT, "api_error", "conversation_busy"),
                ConversationError::Request(e) => {
                    Parts { param: e.param(), ..p(StatusCode::BAD_REQUEST, INVALID, e.code()) }
                }
            },
            Error::Reload(_) => p(StatusCode::UNPROCESSABLE_ENTITY, INVALID, "config_invalid"),
            Error::ShuttingDown => Parts {
                retry_after: Some(Duration::from_secs(1)),
                ..p(StatusCode::SERVICE_UNAVAILABLE, "api_error", "shutting_down")
            },
        }
    }

    /// Renders the error JSON with its status and headers.
    pub fn to_response(&self) -> Response<Body> {
        let parts = self.parts();
        let message = self.to_string();
        let json =
            render(&ErrorObject { message: &message, kind: parts.kind, code: Some(parts.code), param: parts.param });
        let mut response = json_response(parts.status, json);
        let headers = response.headers_mut();
        if let Error::Route(RouteError::MethodNotAllowed { allow }) = self {
            if let Ok(allow) = HeaderValue::from_str(allow) {
                headers.insert(header::ALLOW, allow);
            }
        }
        if let Some(after) = parts.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            // Rounded up: retrying a fraction of a millisecond early earns another 429.
            headers.insert("retry-after-ms", HeaderValue::from(after.as_micros().div_ceil(1000) as u64));
        }
        if parts.final_ {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(rate) = parts.rate {
            rate.apply(headers);
        }
        response
    }
}

/// Serialises an error object inside its `{"error": ...}` envelope.
pub fn render(error: &ErrorObject<'_>) -> Vec<u8> {
    serde_json::to_vec(&Envelope { error }).expect("error JSON always serialises")
}

pub fn json_response(status: StatusCode, json: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::full(json));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
