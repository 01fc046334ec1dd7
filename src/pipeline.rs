//! The model call, independent of HTTP: every front door (the OpenAI routes,
//! the Responses API, and later sessions, `/v1/chat` and scheduled prompts)
//! hands it who is calling and an upstream-dialect request body, and gets the
//! answer back — a whole answer or a stream — with everything in between done
//! once, here, in this order:
//!
//! 1. **parse** the body (400 on bad input; top level only, nested values stay
//!    borrowed raw JSON);
//! 2. **resolve** the model for the caller: agent or alias, allow-list (404/403);
//! 3. **rewrite** it for the agent: upstream model, instructions, defaults, caps;
//! 4. **admit**: rate limits and the worst-case credit reservation in one
//!    ledger step (429, 503) — static keys (no workspace) skip it;
//! 5. **send** to one of the route's targets, falling back to the next
//!    before the first byte (502/503/504; see [`crate::routing`]);
//! 6. **relay**: a stream goes out event by event as it arrives (the `model`
//!    spliced in, the usage chunk stripped unless asked for); a whole answer is
//!    collected (bounded) and its `model` spliced;
//! 7. **account**, exactly once however the call ends: the usage record, the
//!    settle of the reservation, and the events (`request.completed`, the agent
//!    execution pair, `ai_message`, `tool.invoked`).
//!
//! A front door that speaks the upstream's dialect (chat completions in, chat
//! completions out) forwards the answer's bytes as they are; one that does not
//! (the Responses API) reads the same bytes — [`chunks`] splits a stream back
//! into its chat chunks, [`answer`] reads a chunk as typed events (text,
//! refusal and tool-call pieces, finish reason, usage) and a whole answer as
//! its first choice — and translates them.

pub mod answer;
pub mod chunks;
mod send;

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use tracing::Instrument;

use crate::agents::rewrite::{rewrite, Rewritten};
use crate::agents::Target;
use crate::app::{App, RequestContext};
use crate::credits;
use crate::error::Error;
use crate::limits::RateHeaders;
use crate::relay::{collect, rewrite_json, Accounting, RelayBody, Settle};
use crate::request::{self, Endpoint};
use crate::sse::SseRewriter;
use crate::telemetry::traces;
use crate::upstream::UpstreamError;
use crate::usage::{Outcome, Usage, UsageRecord};

/// One model call as a front door hands it over.
pub struct ModelCall {
    /// The upstream API the body is written for.
    pub endpoint: Endpoint,
    /// The front door's name, in usage records and `request.completed`
    /// (`chat.completions`, `responses`, ...).
    pub door: &'static str,
    /// The request in the upstream's dialect; forwarded as is after the rewrite.
    pub body: Bytes,
    /// The front door reads the answer back and writes its own (the
    /// Responses API): a stream keeps its usage chunk even when the body did
    /// not ask for it, and the client's `model` is not spliced into chunks
    /// nobody forwards (the door names the model itself).
    pub translates: bool,
    /// The target, when the front door resolved the body's model already
    /// (to echo the agent's defaults); otherwise the pipeline resolves it.
    pub target: Option<Arc<Target>>,
}

/// The answer of a model call.
pub enum Answer {
    /// A whole answer: the upstream's JSON with `model` spliced in, already
    /// accounted for.
    Whole { status: StatusCode, json: Bytes, rate: RateHeaders },
    /// A stream of SSE events, accounted for when it ends or is dropped.
    Stream { body: Box<RelayBody>, rate: RateHeaders },
}

/// Runs one model call through the steps in the module doc.
pub async fn run(app: &App, ctx: &RequestContext, call: ModelCall) -> Result<Answer, Error> {
    let endpoint = call.endpoint;
    let parsed = request::parse(&call.body, endpoint)?;
    let target = match call.target {
        Some(target) => target,
        None => app.agents.resolve(&parsed.model, &ctx.principal).await?,
    };
    let primary = target.route.primary();
    let rewritten = rewrite(&parsed, &target, &primary.upstream_model_json);
    let (stream, strip_usage) = (parsed.stream, !(parsed.include_usage || call.translates));
    let client_model = if call.translates { None } else { target.client_model_json.clone() };
    let span = traces::model_span(endpoint, &target.id, stream);
    let admission = admit(app, ctx, endpoint, &target, &rewritten);
    let (settle, rate) = admission.instrument(traces::step(&span, "admit")).await.inspect_err(|_| {
        span.record("otel.status_code", "ERROR");
    })?;
    let record = UsageRecord {
        request_id: ctx.request_id.to_str().unwrap_or_default().to_owned(),
        key: Some(ctx.principal.name.clone()),
        model: target.id.clone(),
        provider: primary.provider_name.clone(),
        upstream_model: primary.upstream_model.clone(),
        attempts: 0,
        endpoint: call.door,
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
    let events = ctx.principal.workspace.is_some().then_some(&app.events);
    let transcribe = events.is_some() && endpoint == Endpoint::Chat;
    if let (Some(events), Some(ws), true) = (events, &ctx.principal.workspace, target.is_agent) {
        crate::events::sink::agent_started(events, ws, &record, ctx.principal.key_id.as_deref());
    }
    let mut accounting = Accounting::new(app.usage.clone(), record, ctx.started, rewritten.prompt_estimate)
        .with_settle(settle)
        .with_span(span.clone());

    let call = send::Call { parsed: &parsed, target: &target, body: Bytes::from(rewritten.body), ctx };
    let upstream = match send::send(app, call, &mut accounting).instrument(span).await {
        Ok(upstream) => upstream,
        Err(e) => return Err(fail(&mut accounting, e)),
    };

    if stream {
        let mut rewriter = match endpoint {
            Endpoint::Responses => SseRewriter::responses(client_model),
            _ => SseRewriter::new(client_model, strip_usage),
        };
        if transcribe {
            rewriter = rewriter.with_transcript();
        }
        accounting.counted_as(app.metrics.stream_opened());
        let mut body = Box::new(RelayBody::new(upstream.body, rewriter, upstream.idle_timeout, accounting));
        body.prime().await;
        return Ok(Answer::Stream { body, rate });
    }

    let answer = collect(upstream.body, app.server.max_upstream_body_bytes, upstream.idle_timeout).await;
    match answer.and_then(|bytes| rewrite_json(bytes, client_model.as_ref())) {
        Ok((json, usage, choices)) => {
            let usage = usage.unwrap_or_else(|| accounting.estimate(0));
            if let (true, Some(choices)) = (transcribe, choices) {
                let mut transcript = Box::<crate::transcript::Transcript>::default();
                transcript.add_choices(&json[choices]);
                accounting.set_transcript(Some(transcript));
            }
            accounting.finish(200, Outcome::Completed, usage);
            Ok(Answer::Whole { status: upstream.status, json, rate })
        }
        Err(e) => Err(fail(&mut accounting, e)),
    }
}

/// Checks the caller's rate limits and reserves the call's worst case. Keys
/// outside a workspace (static config keys) are not metered.
async fn admit(
    app: &App,
    ctx: &RequestContext,
    endpoint: Endpoint,
    target: &Target,
    rewritten: &Rewritten,
) -> Result<(Option<Settle>, RateHeaders), Error> {
    let p = &ctx.principal;
    let meter = &app.meter;
    let (Some(key_id), Some(workspace)) = (&p.key_id, &p.workspace) else {
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

/// Accounts for an upstream failure (estimated usage; nothing delivered, so
/// nothing charged) and returns it as the call's error.
fn fail(accounting: &mut Accounting, error: UpstreamError) -> Error {
    let usage = accounting.estimate(0);
    accounting.finish(error.status().as_u16(), Outcome::UpstreamFailed, usage);
    error.into()
}
