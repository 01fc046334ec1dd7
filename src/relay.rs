//! Relaying an upstream answer to the client, and accounting for it.
//!
//! Streams go through [`RelayBody`]: each upstream frame is rewritten by the
//! [`SseRewriter`]; what is ready together goes to hyper as one frame (see
//! [`batch`]), with no buffering beyond an event split across frames and no
//! timer. Non-stream answers are collected (bounded) and their
//! `model` spliced by [`rewrite_json`]. Either way an [`Accounting`] guard hands
//! exactly one [`UsageRecord`] to the usage sink: at the end, on failure, or on
//! drop when the client went away first.

use std::convert::Infallible;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame};
use tokio::time::Sleep;

mod batch;
use batch::Batch;

use crate::config::Price;
use crate::credits::{Meter, Ticket};
use crate::json::{find_fields, is_null};
use crate::routing::{Lease, RouteTarget};
use crate::sse::SseRewriter;
use crate::upstream::{UpstreamBody, UpstreamError};
use crate::usage::{Outcome, Usage, UsageRecord, UsageSink};

/// Hands one usage record to the sink and settles the call's credits,
/// exactly once.
pub struct Accounting {
    sink: Arc<dyn UsageSink>,
    /// Filled in as the request goes; `None` once recorded.
    record: Option<UsageRecord>,
    started: Instant,
    prompt_estimate: u64,
    settle: Option<Settle>,
    /// The call on the target that answered: held to the answer's end (a
    /// stream is in flight as long as it runs), told when it fails midway.
    lease: Option<Lease>,
    /// The model call's trace span (none when traces are off): it ends, with
    /// the usage recorded on it, when the answer does.
    span: tracing::Span,
    /// A stream's place in the open-streams gauge, until it is dropped.
    open: Option<crate::metrics::OpenStream>,
}

/// What settling a metered call needs.
pub struct Settle {
    pub meter: Arc<Meter>,
    pub ticket: Ticket,
    pub price: Price,
}

impl Accounting {
    pub fn new(sink: Arc<dyn UsageSink>, record: UsageRecord, started: Instant, prompt_estimate: u64) -> Self {
        Accounting {
            sink,
            record: Some(record),
            started,
            prompt_estimate,
            settle: None,
            lease: None,
            span: tracing::Span::none(),
            open: None,
        }
    }

    /// Settles the call's reservation when it ends.
    pub fn with_settle(mut self, settle: Option<Settle>) -> Self {
        self.settle = settle;
        self
    }

    /// Usage when the upstream reported none: the prompt estimate and the
    /// completion tokens seen so far.
    pub fn estimate(&self, completion_tokens: u64) -> Usage {
        Usage { prompt_tokens: self.prompt_estimate, completion_tokens, estimated: true }
    }

    /// Names the target being tried: the record says who answered, and
    /// after how many attempts.
    pub fn set_target(&mut self, target: &RouteTarget, attempts: u32) {
        if let Some(record) = self.record.as_mut() {
            record.provider = target.provider_name.clone();
            record.upstream_model = target.upstream_model.clone();
            record.attempts = attempts;
        }
    }

    /// Counts the answer among the open streams while it lives.
    pub fn counted_as(&mut self, open: crate::metrics::OpenStream) {
        self.open = Some(open);
    }

    /// The trace span the call's end is recorded on.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// Keeps the answering target's lease until the answer ends.
    pub fn hold(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }

    /// Attaches what the answer said (for events), before [`Accounting::finish`].
    pub fn set_transcript(&mut self, transcript: Option<Box<crate::transcript::Transcript>>) {
        if let Some(record) = self.record.as_mut() {
            record.transcript = transcript;
        }
    }

    pub fn finish(&mut self, status: u16, outcome: Outcome, usage: Usage) {
        // The answer has ended: it no longer counts as an open stream.
        self.open = None;
        if let Some(mut lease) = self.lease.take() {
            if outcome == Outcome::UpstreamFailed {
                lease.failed(None);
            }
        }
        if let Some(mut record) = self.record.take() {
            record.status = status;
            record.outcome = outcome;
            record.usage = usage;
            record.latency = self.started.elapsed();
            if let Some(Settle { meter, ticket, price }) = self.settle.take() {
                let _settle = crate::telemetry::traces::step(&self.span, "settle").entered();
                let metered = ticket.admit.amount > 0;
                let cost = meter.settle(ticket, record.model.clone(), &price, outcome, &usage);
                record.credits = if metered { cost } else { 0 };
            }
            crate::telemetry::traces::record_model_call(&self.span, &record);
            self.span = tracing::Span::none();
            self.sink.record(record);
        }
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        // Reached only when the client went away before the answer was complete
        // (hyper dropped the handler future or the response body).
        let usage = self.estimate(0);
        self.finish(499, Outcome::ClientCancelled, usage);
    }
}

/// The client-facing body of a streamed answer.
pub struct RelayBody {
    upstream: UpstreamBody,
    rewriter: SseRewriter,
    /// What is ready for the client, sent as one frame.
    ready: Batch,
    scratch: Vec<Bytes>,
    /// Scheduler turns given to the upstream connection since its last frame.
    yielded: u8,
    /// Whether the first frame went out: it never waits for company, so the
    /// time to first token is the upstream's, not the burst's.
    sent_first: bool,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    accounting: Accounting,
    ended: bool,
}

impl RelayBody {
    pub fn new(upstream: UpstreamBody, rewriter: SseRewriter, idle_timeout: Duration, accounting: Accounting) -> Self {
        RelayBody {
            upstream,
            rewriter,
            ready: Batch::default(),
            scratch: Vec::new(),
            yielded: 0,
            sent_first: false,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            accounting,
            ended: false,
        }
    }

    fn usage(&self) -> Usage {
        self.rewriter.usage().unwrap_or_else(|| self.accounting.estimate(self.rewriter.content_chunks()))
    }

    fn fail(&mut self, error: UpstreamError) {
        tracing::warn!(code = error.code(), detail = error.detail(), "upstream stream failed");
        self.ready.push(self.rewriter.error_event(&error.to_string(), error.code()));
        self.ended = true;
        let usage = self.usage();
        self.accounting.set_transcript(self.rewriter.take_transcript());
        self.accounting.finish(200, Outcome::UpstreamFailed, usage);
    }

    /// Gives the upstream connection up to [`batch::HANDOVER_TURNS`]
    /// scheduler turns to hand over the stream's first frame, before the
    /// response goes back to hyper: when the upstream has it already, hyper
    /// writes the response head and that frame in one `writev`; a model still
    /// thinking gets its head sent at once, as before.
    pub async fn prime(&mut self) {
        std::future::poll_fn(|cx| loop {
            if self.ended || !self.ready.is_empty() {
                return Poll::Ready(());
            }
            match Pin::new(&mut self.upstream).poll_frame(cx) {
                Poll::Ready(item) => self.absorb(item),
                Poll::Pending => return self.hand_over(cx),
            }
        })
        .await
    }

    /// One more scheduler turn for the upstream connection to hand over
    /// what it has already read (see `batch`): `Pending` (woken at once)
    /// until [`batch::HANDOVER_TURNS`] turns brought nothing, then `Ready`.
    fn hand_over(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded >= batch::HANDOVER_TURNS {
            self.yielded = 0;
            return Poll::Ready(());
        }
        self.yielded += 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// What the upstream body yielded: data rewritten into the batch, an
    /// error or a premature end turned into the stream's error event, the end
    /// settled.
    fn absorb(&mut self, item: Option<Result<Frame<Bytes>, UpstreamError>>) {
        match item {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { return };
                self.yielded = 0;
                let deadline = tokio::time::Instant::now() + self.idle_timeout;
                self.idle.as_mut().reset(deadline);
                match self.rewriter.push(data, &mut self.scratch) {
                    Ok(()) => self.ready.extend(self.scratch.drain(..)),
                    Err(e) => self.fail(UpstreamError::Invalid { detail: e.to_string() }),
                }
            }
            Some(Err(e)) => self.fail(e),
            None if self.rewriter.is_done() && !self.rewriter.has_partial_event() => {
                self.ended = true;
                let usage = self.usage();
                self.accounting.set_transcript(self.rewriter.take_transcript());
                self.accounting.finish(200, Outcome::Completed, usage);
            }
            None => self.fail(UpstreamError::Body { detail: "stream ended before [DONE]".into() }),
        }
    }
}

impl http_body::Body for RelayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if this.ended || this.ready.is_full() {
                return Poll::Ready(this.ready.take().map(|bytes| Ok(Frame::data(bytes))));
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(item) => this.absorb(item),
                Poll::Pending if !this.ready.is_empty() => {
                    // The first frame goes at once; later ones once the
                    // turns brought nothing more.
                    if this.sent_first && this.hand_over(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.sent_first = true;
                    return Poll::Ready(this.ready.take().map(|bytes| Ok(Frame::data(bytes))));
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        this.fail(UpstreamError::Idle);
                    } else {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ready.is_empty()
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        // The client went away mid-stream: account for what was relayed so far.
        if !self.ended {
            let usage = self.usage();
            self.accounting.set_transcript(self.rewriter.take_transcript());
            self.accounting.finish(499, Outcome::ClientCancelled, usage);
        }
    }
}

/// Reads a whole non-stream upstream body, bounded in size and in silence.
pub async fn collect(mut body: UpstreamBody, limit: usize, idle: Duration) -> Result<Bytes, UpstreamError> {
    let mut buf = BytesMut::new();
    let mut first: Option<Bytes> = None;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        match tokio::time::timeout(idle, frame).await {
            Err(_) => return Err(UpstreamError::Idle),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else { continue };
                let total = buf.len() + first.as_ref().map_or(0, Bytes::len) + data.len();
                if total > limit {
                    return Err(UpstreamError::TooLarge);
                }
                // The common case is one frame: keep it without a copy.
                match first.take() {
                    None if buf.is_empty() => first = Some(data),
                    prev => {
                        if let Some(prev) = prev {
                            buf.extend_from_slice(&prev);
                        }
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// A non-stream answer as the client gets it.
pub type Rewritten = (Bytes, Option<Usage>, Option<Range<usize>>);

/// Splices the client-visible model into a JSON answer and reads its usage,
/// in one scan that also finds `choices` (returned as a range of the
/// rewritten body, for the events' transcript). Anything that is not a JSON
/// object is garbage from the client's view.
pub fn rewrite_json(body: Bytes, model: Option<&Bytes>) -> Result<Rewritten, UpstreamError> {
    let [model_range, usage_range, choices] = find_fields(&body, ["model", "usage", "choices"])
        .map_err(|e| UpstreamError::Invalid { detail: e.to_string() })?;
    let usage = usage_range.filter(|r| !is_null(&body[r.clone()])).and_then(|r| Usage::from_json(&body[r]));
    let (body, choices) = match (model_range, model) {
        (Some(range), Some(model)) => {
            let mut out = BytesMut::with_capacity(body.len() + model.len());
            out.extend_from_slice(&body[..range.start]);
            out.extend_from_slice(model);
            out.extend_from_slice(&body[range.end..]);
            // Fields after the model move by the length it changed by.
            let shift = |at: usize| if at >= range.end { at + model.len() - range.len() } else { at };
            (out.freeze(), choices.map(|c| shift(c.start)..shift(c.end)))
        }
        _ => (body, choices),
    };
    Ok((body, usage, choices))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_model_and_reads_usage() {
        let body = Bytes::from_static(br#"{"id":"x","model":"up","usage":{"prompt_tokens":2,"completion_tokens":3}}"#);
        let model = Bytes::from_static(b"\"agent\"");
        let (out, usage, choices) = rewrite_json(body, Some(&model)).unwrap();
        assert_eq!(choices, None);
        assert_eq!(&out[..], br#"{"id":"x","model":"agent","usage":{"prompt_tokens":2,"completion_tokens":3}}"#);
        assert_eq!(usage, Some(Usage { prompt_tokens: 2, completion_tokens: 3, estimated: false }));
        assert!(rewrite_json(Bytes::from_static(b"<html>oops</html>"), None).is_err());
    }

    #[test]
    fn the_choices_range_follows_the_spliced_model() {
        let model = Bytes::from_static(b"\"a-much-longer-agent-name\"");
        for body in [
            &br#"{"model":"up","choices":[{"message":{"content":"hi"}}]}"#[..],
            &br#"{"choices":[{"message":{"content":"hi"}}],"model":"up"}"#[..],
        ] {
            let (out, _, choices) = rewrite_json(Bytes::from_static(body), Some(&model)).unwrap();
            assert_eq!(&out[choices.unwrap()], br#"[{"message":{"content":"hi"}}]"#);
        }
    }
}
