//! Step 5 of the pipeline: the call goes to its route's targets in turn
//! ([`crate::routing`] chooses, skips and orders them) until one answers.
//! "Answers" means response headers with a success status — and, for a
//! stream, an event stream — so nothing has reached the client when the
//! call moves on; what the answer does after that is the relay's.

use std::time::Duration;

use bytes::Bytes;
use tracing::Instrument;

use crate::agents::rewrite::rewrite;
use crate::agents::Target;
use crate::app::{App, RequestContext};
use crate::relay::Accounting;
use crate::request::ParsedRequest;
use crate::routing::health::DEFAULT_COOL_DOWN;
use crate::telemetry::traces;
use crate::upstream::{UpstreamError, UpstreamRequest, UpstreamResponse};

/// What a send needs from the pipeline.
pub struct Call<'a> {
    pub parsed: &'a ParsedRequest<'a>,
    pub target: &'a Target,
    /// The rewritten body for the route's primary target.
    pub body: Bytes,
    pub ctx: &'a RequestContext,
}

/// Sends the call; the answering target's lease goes to `accounting`, which
/// also learns each target tried.
pub async fn send(app: &App, call: Call<'_>, accounting: &mut Accounting) -> Result<UpstreamResponse, UpstreamError> {
    let Call { parsed, target, mut body, ctx } = call;
    let route = &target.route;
    let mut body_model = route.primary().upstream_model.clone();
    let mut attempts = route.attempts();
    let mut last = None;
    loop {
        let (next, mut lease) = match attempts.next_target() {
            Ok(Some(pick)) => pick,
            Ok(None) => break,
            Err(unavailable) => return Err(last.unwrap_or(unavailable)),
        };
        accounting.set_target(next, attempts.made());
        // A fallback to another upstream model: the model field changes.
        if next.upstream_model != body_model {
            body = Bytes::from(rewrite(parsed, target, &next.upstream_model_json).body);
            body_model = next.upstream_model.clone();
        }
        let span = traces::upstream_span(&next.label, &next.provider_name, &next.upstream_model, attempts.made());
        let request = UpstreamRequest {
            endpoint: parsed.endpoint,
            body: body.clone(),
            stream: parsed.stream,
            request_id: ctx.request_id.clone(),
            upstream_model: next.upstream_model.clone(),
            client_model: target.id.clone(),
            first_byte_timeout: next.first_byte_timeout,
            retry: !attempts.has_more(),
            trace: traces::outgoing_for(&span),
        };
        let error = match next.provider.send(&request).instrument(span.clone()).await {
            Ok(r) if r.status.is_success() && (r.event_stream || !parsed.stream) => {
                let first_byte = lease.answered();
                app.metrics.upstream(&next.label, "ok", Some(first_byte));
                accounting.hold(lease);
                return Ok(r);
            }
            Ok(r) => {
                let detail = format!("unexpected status {} (event stream: {})", r.status, r.event_stream);
                UpstreamError::Invalid { detail }
            }
            Err(e) => e,
        };
        app.metrics.upstream(&next.label, error.kind(), None);
        traces::record_failure(&span, error.kind());
        if !error.falls_back() {
            // The upstream answered; the request is what it refused.
            lease.answered();
            return Err(error);
        }
        lease.failed(cool_down(&error));
        tracing::info!(
            target = %next.label, code = error.code(), detail = error.detail(), attempt = attempts.made(),
            "upstream target failed; trying the next one if any"
        );
        last = Some(error);
    }
    Err(last.unwrap_or(UpstreamError::Unavailable { retry_after: Some(DEFAULT_COOL_DOWN) }))
}

/// How long a target rests after this error: a 429 for its `Retry-After`
/// (a second when it gave none); other errors count against its breaker.
fn cool_down(error: &UpstreamError) -> Option<Duration> {
    match error {
        UpstreamError::Overloaded { retry_after } => Some(retry_after.unwrap_or(DEFAULT_COOL_DOWN)),
        _ => None,
    }
}
