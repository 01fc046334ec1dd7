//! Server-Sent Events framing for the streaming relay.
//!
//! [`SseRewriter`] turns upstream body frames into client frames as they arrive.
//! Complete events that need no change are forwarded as slices of the upstream
//! frame (no copy); an event whose `model` must be rewritten is copied once with
//! the new name spliced in; the `include_usage` chunk the gateway asked for is
//! dropped when the client did not ask for it. Only an event split across two
//! upstream frames is buffered, and only until its end arrives.

use bytes::{Bytes, BytesMut};

use crate::json::{self, find_fields};
use crate::usage::Usage;

/// The longest event the relay holds while waiting for its end. An upstream that
/// sends more without an event boundary is not speaking SSE.
pub const MAX_PENDING_EVENT: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("upstream sent an SSE event larger than {MAX_PENDING_EVENT} bytes")]
    EventTooLarge,
}

/// Incremental rewriter for one stream.
#[derive(Debug)]
pub struct SseRewriter {
    /// The client-visible model as a JSON string literal; `None` when the
    /// upstream's name is already what the client asked for.
    model: Option<Bytes>,
    /// Drop the usage-only chunk (the client did not ask for `include_usage`).
    strip_usage: bool,
    /// Bytes of an event whose end has not arrived yet.
    pending: BytesMut,
    usage: Option<Usage>,
    content_chunks: u64,
    done: bool,
    /// The answer's text and tool calls, when events want them.
    transcript: Option<Box<crate::transcript::Transcript>>,
    /// The stream is the Responses API's (a provider that speaks it natively):
    /// the model and usage sit inside `response`, a terminal event ends it.
    responses: bool,
    /// The last `sequence_number` seen (Responses), so the gateway's own
    /// error event continues the count.
    sequence: Option<u64>,
}

/// What to do with one complete event.
enum Action {
    Keep,
    Drop,
    Replace(Bytes),
}

impl SseRewriter {
    pub fn new(model: Option<Bytes>, strip_usage: bool) -> Self {
        SseRewriter {
            model,
            strip_usage,
            pending: BytesMut::new(),
            usage: None,
            content_chunks: 0,
            done: false,
            transcript: None,
            responses: false,
            sequence: None,
        }
    }

    /// A rewriter for a Responses API stream: `model` is rewritten inside the
    /// events that carry the whole Response, usage read from the last one, and
    /// the stream is done at `response.completed`, `.incomplete` or `.failed`.
    pub fn responses(model: Option<Bytes>) -> Self {
        SseRewriter { responses: true, ..SseRewriter::new(model, false) }
    }

    /// The event that ends a failed stream, in the stream's dialect: the chat
    /// convention (`data: {"error": ...}`) or the Responses `error` event.
    pub fn error_event(&self, message: &str, code: &str) -> Bytes {
        if !self.responses {
            return error_event(message, code);
        }
        let sequence_number = self.sequence.map_or(0, |n| n + 1);
        let body = serde_json::json!({
            "type": "error", "code": code, "message": message, "param": null, "sequence_number": sequence_number
        });
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"event: error\ndata: ");
        serde_json::to_writer(&mut out, &body).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    /// Also collects the answer's text and tool calls (for events).
    pub fn with_transcript(mut self) -> Self {
        self.transcript = Some(Box::default());
        self
    }

    /// The text and tool calls seen so far, if collected.
    pub fn take_transcript(&mut self) -> Option<Box<crate::transcript::Transcript>> {
        self.transcript.take()
    }

    /// Feeds one upstream frame; pushes the frames to send to the client.
    pub fn push(&mut self, frame: Bytes, out: &mut Vec<Bytes>) -> Result<(), SseError> {
        if self.pending.is_empty() {
            self.process(frame, out);
        } else {
            self.pending.extend_from_slice(&frame);
            let buf = self.pending.split().freeze();
            self.process(buf, out);
        }
        if self.pending.len() > MAX_PENDING_EVENT {
            return Err(SseError::EventTooLarge);
        }
        Ok(())
    }

    /// Usage reported by the upstream's usage chunk, if one was seen.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Number of chunks that carried choices: one per token for OpenAI-style
    /// upstreams, so it estimates completion tokens of a cut stream.
    pub fn content_chunks(&self) -> u64 {
        self.content_chunks
    }

    /// True once `data: [DONE]` went by.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// True when an incomplete event is buffered (the stream was cut mid-event).
    pub fn has_partial_event(&self) -> bool {
        !self.pending.is_empty()
    }

    fn process(&mut self, buf: Bytes, out: &mut Vec<Bytes>) {
        let mut run_start = 0;
        let mut pos = 0;
        while let Some((content_end, next)) = find_event_end(&buf[pos..]) {
            let action = self.transform(&buf[pos..pos + content_end]);
            match action {
                Action::Keep => {}
                Action::Drop | Action::Replace(_) => {
                    if run_start < pos {
                        out.push(buf.slice(run_start..pos));
                    }
                    if let Action::Replace(bytes) = action {
                        out.push(bytes);
                    }
                    run_start = pos + next;
                }
            }
            pos += next;
        }
        if run_start < pos {
            out.push(buf.slice(run_start..pos));
        }
        if pos < buf.len() {
            self.pending.extend_from_slice(&buf[pos..]);
        }
    }

    fn transform(&mut self, event: &[u8]) -> Action {
        let Some(data) = single_data_line(event) else {
            return Action::Keep;
        };
        let payload = &event[data.clone()];
        if payload == b"[DONE]" {
            self.done = true;
            return Action::Keep;
        }
        if self.responses {
            return self.transform_responses(event, data);
        }
        // Nothing to splice and no transcript: only the usage (billing) and
        // whether the chunk carried choices (a cut stream's estimate) matter,
        // and a chunk without a usage object is passed on unscanned.
        if self.model.is_none() && self.transcript.is_none() && member_value(payload, &USAGE_KEY) != Some(b'{') {
            if member_value(payload, &CHOICES_KEY) == Some(b'[') {
                self.content_chunks += 1;
            }
            return Action::Keep;
        }
        let Ok([model, usage, choices]) = find_fields(payload, ["model", "usage", "choices"]) else {
            return Action::Keep;
        };
        let has_choices = choices.as_ref().is_some_and(|c| !is_empty_array(&payload[c.clone()]));
        if has_choices {
            self.content_chunks += 1;
            if let (Some(t), Some(c)) = (self.transcript.as_mut(), choices) {
                t.add_choices(&payload[c]);
            }
        }
        if let Some(u) = usage.filter(|u| !json::is_null(&payload[u.clone()])) {
            if let Some(parsed) = Usage::from_json(&payload[u]) {
                self.usage = Some(parsed);
            }
            if self.strip_usage && !has_choices {
                return Action::Drop;
            }
        }
        match (model, &self.model) {
            (Some(range), Some(replacement)) => {
                Action::Replace(splice(event, data.start + range.start..data.start + range.end, replacement))
            }
            _ => Action::Keep,
        }
    }
}

impl SseRewriter {
    /// One Responses API event: deltas counted (the estimate of a cut
    /// stream), the snapshot events' `response.model` rewritten and the last
    /// one's `response.usage` read.
    fn transform_responses(&mut self, event: &[u8], data: std::ops::Range<usize>) -> Action {
        let payload = &event[data.clone()];
        let Ok([kind, response, sequence]) = find_fields(payload, ["type", "response", "sequence_number"]) else {
            return Action::Keep;
        };
        if let Some(n) = sequence.and_then(|r| std::str::from_utf8(&payload[r]).ok()?.parse().ok()) {
            self.sequence = Some(n);
        }
        let kind = kind.map_or(&b""[..], |r| &payload[r]);
        if kind.ends_with(b".delta\"") {
            self.content_chunks += 1;
        }
        if matches!(kind, b"\"response.completed\"" | b"\"response.incomplete\"" | b"\"response.failed\"") {
            self.done = true;
        }
        let Some(response) = response else { return Action::Keep };
        let Ok([model, usage]) = find_fields(&payload[response.clone()], ["model", "usage"]) else {
            return Action::Keep;
        };
        let inner = &payload[response.clone()];
        if let Some(u) = usage.filter(|u| !json::is_null(&inner[u.clone()])) {
            if let Some(parsed) = Usage::from_json(&inner[u]) {
                self.usage = Some(parsed);
            }
        }
        match (model, &self.model) {
            (Some(range), Some(replacement)) => {
                let at = data.start + response.start;
                Action::Replace(splice(event, at + range.start..at + range.end, replacement))
            }
            _ => Action::Keep,
        }
    }
}

/// `event` with the bytes at `range` replaced, as one complete event.
fn splice(event: &[u8], range: std::ops::Range<usize>, replacement: &[u8]) -> Bytes {
    let mut rewritten = BytesMut::with_capacity(event.len() + replacement.len() + 2);
    rewritten.extend_from_slice(&event[..range.start]);
    rewritten.extend_from_slice(replacement);
    rewritten.extend_from_slice(&event[range.end..]);
    rewritten.extend_from_slice(b"\n\n");
    rewritten.freeze()
}

static USAGE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
static CHOICES_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"choices\""));

/// The first byte of the value of the first member `key` names (quoted,
/// then `:`), with `[` for a non-empty array and `]` for an empty one: a
/// cheap pre-check where a false positive only means the full scan runs.
fn member_value(payload: &[u8], key: &memchr::memmem::Finder<'_>) -> Option<u8> {
    let skip_ws = |mut i: usize| {
        while payload.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    key.find_iter(payload).find_map(|at| {
        let colon = skip_ws(at + key.needle().len());
        if payload.get(colon) != Some(&b':') {
            return None;
        }
        let value = skip_ws(colon + 1);
        match payload.get(value)? {
            b'[' if payload.get(skip_ws(value + 1)) == Some(&b']') => Some(b']'),
            b => Some(*b),
        }
    })
}

/// Finds the end of the first event: returns (end of its content, start of the
/// next event). Events end with a blank line (`\n\n` or `\r\n\r\n`).
pub(crate) fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(off) = memchr::memchr(b'\n', &buf[from..]) {
        let k = from + off;
        match (buf.get(k + 1), buf.get(k + 2)) {
            (Some(b'\n'), _) => return Some((k, k + 2)),
            (Some(b'\r'), Some(b'\n')) => return Some((k, k + 3)),
            (None, _) | (Some(b'\r'), None) => return None,
            _ => from = k + 1,
        }
    }
    None
}

/// The byte range of the payload of the event's only `data:` line, trimmed.
/// Events with several data lines are left alone (they are not OpenAI chunks).
pub(crate) fn single_data_line(event: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut found = None;
    let mut line_start = 0;
    for line in event.split(|&b| b == b'\n') {
        let start = line_start;
        line_start += line.len() + 1;
        if let Some(rest) = line.strip_prefix(b"data:") {
            if found.is_some() {
                return None;
            }
            let mut s = start + 5;
            if rest.first() == Some(&b' ') {
                s += 1;
            }
            let mut e = start + line.len();
            if line.last() == Some(&b'\r') {
                e -= 1;
            }
            found = Some(s..e.max(s));
        }
    }
    found
}

fn is_empty_array(raw: &[u8]) -> bool {
    raw.first() == Some(&b'[') && raw[1..].iter().take_while(|b| b.is_ascii_whitespace()).count() + 2 == raw.len()
}

/// The event that ends a stream the upstream failed to finish. The OpenAI SDKs
/// raise an `APIError` on a data event with an `error` member.
pub fn error_event(message: &str, code: &str) -> Bytes {
    let body = serde_json::json!({
        "error": { "message": message, "type": "upstream_error", "code": code, "param": null }
    });
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut out, &body).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rw: &mut SseRewriter, frames: &[&str]) -> String {
        let mut out = Vec::new();
        for f in frames {
            rw.push(Bytes::copy_from_slice(f.as_bytes()), &mut out).unwrap();
        }
        out.iter().map(|b| std::str::from_utf8(b).unwrap()).collect()
    }

    const CHUNK: &str =
        "data: {\"id\":\"c\",\"model\":\"up-1\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c\",\"model\":\"up-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    #[test]
    fn rewrites_model_and_strips_usage() {
        let mut rw = SseRewriter::new(Some(Bytes::from_static(b"\"agent\"")), true);
        let out = run(&mut rw, &[CHUNK, USAGE, DONE]);
        assert_eq!(out, format!("{}{}", CHUNK.replace("up-1", "agent"), DONE));
        assert_eq!(rw.usage(), Some(Usage { prompt_tokens: 3, completion_tokens: 1, estimated: false }));
        assert!(rw.is_done());
        assert_eq!(rw.content_chunks(), 1);
    }

    #[test]
    fn keeps_usage_when_asked_and_passes_through_unchanged() {
        let mut rw = SseRewriter::new(None, false);
        let all = format!("{CHUNK}{USAGE}{DONE}");
        let mut out = Vec::new();
        rw.push(Bytes::from(all.clone()), &mut out).unwrap();
        assert_eq!(out.len(), 1, "an unchanged frame is forwarded as one slice");
        assert_eq!(out[0], all.as_bytes());
        assert_eq!(rw.usage(), Some(Usage { prompt_tokens: 3, completion_tokens: 1, estimated: false }));
        assert_eq!(rw.content_chunks(), 1, "the unscanned chunk still counts for a cut stream's estimate");
    }

    #[test]
    fn the_pre_check_finds_members_by_their_value() {
        assert_eq!(member_value(br#"{"a":1,"usage" : {"x":1}}"#, &USAGE_KEY), Some(b'{'));
        assert_eq!(member_value(br#"{"usage":null}"#, &USAGE_KEY), Some(b'n'));
        assert_eq!(member_value(br#"{"content":"the \"usage\": {"}"#, &USAGE_KEY), None, "escaped quotes are no key");
        assert_eq!(member_value(br#"{"choices": [ ]}"#, &CHOICES_KEY), Some(b']'));
        assert_eq!(member_value(br#"{"choices":[{"i":0}]}"#, &CHOICES_KEY), Some(b'['));
    }

    #[test]
    fn reassembles_events_split_across_frames() {
        let mut rw = SseRewriter::new(Some(Bytes::from_static(b"\"agent\"")), false);
        let all = format!("{CHUNK}{USAGE}{DONE}");
        let bytes: Vec<String> = all.chars().map(|c| c.to_string()).collect();
        let frames: Vec<&str> = bytes.iter().map(String::as_str).collect();
        let out = run(&mut rw, &frames);
        assert_eq!(out, all.replace("up-1", "agent"));
        assert!(!rw.has_partial_event());
    }

    #[test]
    fn handles_crlf_and_comments() {
        let mut rw = SseRewriter::new(Some(Bytes::from_static(b"\"a\"")), false);
        let out = run(&mut rw, &[": keep-alive\r\n\r\n", "data: {\"model\":\"m\"}\r\n\r\n"]);
        assert_eq!(out, ": keep-alive\r\n\r\ndata: {\"model\":\"a\"}\r\n\n");
    }

    #[test]
    fn bounds_an_event_without_end() {
        let mut rw = SseRewriter::new(None, false);
        let mut out = Vec::new();
        let big = Bytes::from(vec![b'x'; MAX_PENDING_EVENT + 1]);
        assert_eq!(rw.push(big, &mut out), Err(SseError::EventTooLarge));
    }

    #[test]
    fn error_event_is_an_openai_error() {
        let ev = error_event("upstream died", "upstream_stream_error");
        let text = std::str::from_utf8(&ev).unwrap();
        assert!(text.starts_with("data: {\"error\":"));
        assert!(text.ends_with("\n\n"));
    }
}

#[cfg(test)]
mod garbage_tests {
    use super::*;

    /// A small deterministic generator: no dependency, same bytes every run.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        const ALPHABET: &[u8] = b"data: {}[]\",:\\\n\r model usage choices [DONE] 0123456789 null";
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHABET[(x % ALPHABET.len() as u64) as usize]
            })
            .collect()
    }

    /// Whatever an upstream sends, the rewriter neither panics nor loses or
    /// invents bytes when there is nothing to rewrite or strip.
    #[test]
    fn survives_garbage_in_any_framing() {
        for seed in 0..2_000u64 {
            let input = bytes(seed, (seed % 512) as usize);
            let mut rewriter = SseRewriter::new(Some(Bytes::from_static(b"\"agent\"")), seed % 2 == 0);
            let mut out = Vec::new();
            for chunk in input.chunks(1 + (seed % 37) as usize) {
                let _ = rewriter.push(Bytes::copy_from_slice(chunk), &mut out);
            }
            let _ = crate::json::find_fields(&input, ["model", "usage", "choices"]);

            let mut passthrough = SseRewriter::new(None, false);
            let mut forwarded = Vec::new();
            for chunk in input.chunks(1 + (seed % 23) as usize) {
                passthrough.push(Bytes::copy_from_slice(chunk), &mut forwarded).unwrap();
            }
            let all: Vec<u8> = forwarded.iter().flat_map(|b| b.iter().copied()).collect();
            if passthrough.has_partial_event() {
                // An unterminated tail stays pending; everything before it went out.
                assert!(input.starts_with(&all) && all.len() < input.len(), "seed {seed}");
            } else {
                assert_eq!(all, input, "seed {seed}: pass-through must be byte-exact");
            }
        }
    }
}
