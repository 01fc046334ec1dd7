//! The OpenAI-compatible model routes: chat completions, completions, embeddings.
//!
//! One handler serves all three: read the body (bounded), parse it, resolve the
//! model for the caller, rewrite the body, send it upstream, relay the answer.

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::request::{self, Endpoint, RequestError};
use crate::agents::rewrite::{rewrite, Rewritten};
use crate::agents::Target;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::credits;
use crate::error::Error;
use crate::limits::RateHeaders;
use crate::relay::{collect, rewrite_json, Accounting, RelayBody, Settle};
use crate::sse::SseRewriter;
use crate::upstream::{UpstreamError, UpstreamRequest};
use crate::usage::{Outcome, Usage, UsageRecord};

pub async fn model_call(
    app: &App,
    ctx: &RequestContext,
    endpoint: Endpoint,
    req: http::Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let body = read_body(app, req).await?;
    let parsed = request::parse(&body, endpoint)?;
    let target = app.catalog.resolve(&parsed.model, &ctx.principal)?;
    let rewritten = rewrite(&parsed, &target);
    let (stream, strip_usage) = (parsed.stream, !parsed.include_usage);
    // Limits and the credit reservation, before anything goes upstream.
    let (settle, rate_headers) = admit(app, ctx, endpoint, &target, &rewritten).await?;
    let upstream_request = UpstreamRequest {
        endpoint,
        body: Bytes::from(rewritten.body),
        stream,
        request_id: ctx.request_id.clone(),
        upstream_model: target.upstream_model.clone(),
        client_model: target.id.clone(),
    };
    let record = UsageRecord {
        request_id: ctx.request_id.to_str().unwrap_or_default().to_owned(),
        key: Some(ctx.principal.name.clone()),
        model: target.id.clone(),
        provider: target.provider_name.clone(),
        upstream_model: target.upstream_model.clone(),
        endpoint: endpoint.name(),
        streamed: stream,
        status: 0,
        outcome: Outcome::Completed,
        usage: Usage::default(),
        latency: Default::default(),
        key_id: ctx.principal.key_id.clone(),
        workspace: ctx.principal.workspace.clone(),
        agent: target.is_agent,
        credits: 0,
        transcript: None,
    };
    // Events need a workspace; their text and tool calls only chat answers.
    let events = app.events.as_ref().filter(|_| ctx.principal.workspace.is_some());
    let transcribe = events.is_some() && endpoint == Endpoint::Chat;
    if let (Some(events), Some(ws), true) = (events, &ctx.principal.workspace, target.is_agent) {
        crate::events::sink::agent_started(events, ws, &record, ctx.principal.key_id.as_deref());
    }
    let mut accounting =
        Accounting::new(app.usage.clone(), record, ctx.started, rewritten.prompt_estimate).with_settle(settle);

    let upstream = match target.provider.send(&upstream_request).await {
        // A stream answer must be SSE before the gateway commits to a 200; a
        // non-stream answer is checked by the JSON rewrite.
        Ok(r) if r.status.is_success() && (r.event_stream || !stream) => r,
        Ok(r) => {
            let detail = format!("unexpected status {} (event stream: {})", r.status, r.event_stream);
            let e = UpstreamError::Invalid { detail };
            fail(&mut accounting, &e);
            return Err(e.into());
        }
        Err(e) => {
            fail(&mut accounting, &e);
            return Err(e.into());
        }
    };

    if stream {
        let mut rewriter = SseRewriter::new(target.client_model_json.clone(), strip_usage);
        if transcribe {
            rewriter = rewriter.with_transcript();
        }
        let relay = RelayBody::new(upstream.body, rewriter, upstream.idle_timeout, accounting);
        let mut response = Response::new(Body::Stream(Box::pin(relay)));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tells nginx-style proxies in front of the gateway not to buffer.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        rate_headers.apply(h);
        return Ok(response);
    }

    let answer = collect(upstream.body, app.server.max_upstream_body_bytes, upstream.idle_timeout).await;
    let rewritten = answer.and_then(|bytes| rewrite_json(bytes, target.client_model_json.as_ref()));
    match rewritten {
        Ok((json, usage, choices)) => {
            let usage = usage.unwrap_or_else(|| accounting.estimate(0));
            if let (true, Some(choices)) = (transcribe, choices) {
                let mut transcript = Box::<crate::events::transcript::Transcript>::default();
                transcript.add_choices(&json[choices]);
                accounting.set_transcript(Some(transcript));
            }
            accounting.finish(200, Outcome::Completed, usage);
            let mut response = Response::new(Body::full(json));
            *response.status_mut() = upstream.status;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            rate_headers.apply(response.headers_mut());
            Ok(response)
        }
        Err(e) => {
            fail(&mut accounting, &e);
            Err(e.into())
        }
    }
}

/// Checks the caller's rate limits and reserves the call's worst case. Keys
/// outside a workspace (static config keys) and gateways without a store are
/// not metered.
async fn admit(
    app: &App,
    ctx: &RequestContext,
    endpoint: Endpoint,
    target: &Target,
    rewritten: &Rewritten,
) -> Result<(Option<Settle>, RateHeaders), Error> {
    let p = &ctx.principal;
    let (Some(meter), Some(key_id), Some(workspace)) = (&app.meter, &p.key_id, &p.workspace) else {
        return Ok((None, RateHeaders::default()));
    };
    let request = credits::Request {
        key_id,
        workspace,
        key_rpm: p.rpm,
        key_tpm: p.tpm,
        price: &target.price,
        prompt_estimate: rewritten.prompt_estimate,
        // Embeddings produce no output tokens.
        max_tokens: if endpoint == Endpoint::Embeddings { Some(0) } else { rewritten.max_tokens },
    };
    let (ticket, headers) = meter.admit(request).await?;
    Ok((Some(Settle { meter: meter.clone(), ticket, price: target.price }), headers))
}

fn fail(accounting: &mut Accounting, error: &UpstreamError) {
    let usage = accounting.estimate(0);
    accounting.finish(error.status().as_u16(), Outcome::UpstreamFailed, usage);
}

/// Reads the request body within the size limit and the body timeout. A
/// declared `Content-Length` over the limit is refused before reading.
pub(crate) async fn read_body(app: &App, req: http::Request<Incoming>) -> Result<Bytes, RequestError> {
    let limit = app.server.max_body_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(RequestError::BodyTooLarge(limit));
    }
    let timeout = app.server.body_read_timeout;
    match tokio::time::timeout(timeout, Limited::new(req.into_body(), limit).collect()).await {
        Err(_) => Err(RequestError::BodyTimeout(timeout.as_millis() as u64)),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(RequestError::BodyTooLarge(limit)),
        Ok(Err(_)) => Err(RequestError::BodyRead),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
