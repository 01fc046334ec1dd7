//! Kind `mock`: a built-in, deterministic upstream with no network.
//!
//! It answers like an OpenAI-compatible server, so the demo agent and the tests
//! go through exactly the relay a real provider does: it echoes the last user
//! message (truncated to `max_tokens` words), counts one token per word, and
//! streams the answer in `stream_chunks` chunks `chunk_delay` apart, with the
//! `include_usage` chunk when asked. Offered function tools, it calls one;
//! asked for a JSON schema, it answers JSON that fits (`shape`). Embeddings
//! are a fixed-size vector derived from a hash of the input.

mod shape;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{UpstreamError, UpstreamRequest, UpstreamResponse};
use crate::config::MockConfig;
use crate::request::Endpoint;

const EMBEDDING_DIMS: usize = 8;

pub struct MockProvider {
    chunks: u32,
    delay: Duration,
    /// Makes response ids unique, as a real upstream's are.
    counter: AtomicU64,
}

impl MockProvider {
    pub fn new(config: &MockConfig) -> MockProvider {
        MockProvider { chunks: config.stream_chunks, delay: config.chunk_delay, counter: AtomicU64::new(0) }
    }

    pub fn send(&self, r: &UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let request: Value =
            serde_json::from_slice(&r.body).map_err(|e| UpstreamError::Invalid { detail: e.to_string() })?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let model = request["model"].as_str().unwrap_or("mock").to_owned();
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let frames: VecDeque<Bytes> = match r.endpoint {
            // The mock speaks chat completions; a Responses request reaches it
            // translated (the config refuses `responses = "native"` for it).
            Endpoint::Responses => {
                return Err(UpstreamError::Invalid { detail: "the mock does not serve /responses".into() })
            }
            Endpoint::Embeddings => VecDeque::from([embeddings(&request, &model)]),
            Endpoint::Chat | Endpoint::Completions => {
                let answer = Answer::new(&request, r.endpoint);
                let id = format!("{}-mock-{n}", if r.endpoint == Endpoint::Chat { "chatcmpl" } else { "cmpl" });
                let meta = Meta { id: &id, created, model: &model, endpoint: r.endpoint };
                if r.stream {
                    let include_usage = request["stream_options"]["include_usage"].as_bool().unwrap_or(false);
                    answer.stream(&meta, self.chunks as usize, include_usage)
                } else {
                    VecDeque::from([answer.whole(&meta)])
                }
            }
        };
        let delay = if r.stream { self.delay } else { Duration::ZERO };
        Ok(UpstreamResponse {
            status: StatusCode::OK,
            event_stream: r.stream,
            body: MockBody { frames, delay, sleep: None }.boxed_unsync(),
            idle_timeout: Duration::from_secs(3600),
        })
    }
}

struct Meta<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    endpoint: Endpoint,
}

/// The echoed answer, one token per word (or a tool call).
struct Answer {
    words: Vec<String>,
    prompt_tokens: u64,
    finish_reason: &'static str,
    tool: Option<shape::ToolCall>,
}

impl Answer {
    fn new(request: &Value, endpoint: Endpoint) -> Answer {
        let (last, prompt_tokens) = match endpoint {
            Endpoint::Chat => {
                let messages = request["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
                let prompt: usize =
                    messages.iter().map(|m| text_of(&m["content"]).split_whitespace().count() + 1).sum();
                let last = messages.iter().rev().find(|m| m["role"] == "user").map(|m| text_of(&m["content"]));
                (last.unwrap_or_default(), prompt as u64)
            }
            _ => {
                let prompt = text_of(&request["prompt"]);
                let tokens = prompt.split_whitespace().count() as u64;
                (prompt, tokens)
            }
        };
        let (mut tool, mut text) = (None, last);
        if endpoint == Endpoint::Chat {
            tool = shape::tool_call(request, &text);
            if let Some(result) = shape::tool_result(request) {
                text = format!("The tool returned: {result}");
            }
            if let Some(formatted) = shape::formatted(request, &text) {
                text = formatted;
            }
        }
        let mut words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        if let Some(call) = &tool {
            // Tokens of a tool call: about one per four bytes of arguments.
            words = vec![String::new(); call.arguments.len().div_ceil(4).max(1)];
        }
        if words.is_empty() {
            words.push("(empty)".into());
        }
        let limit = request["max_completion_tokens"].as_u64().or(request["max_tokens"].as_u64());
        let mut finish_reason = "stop";
        if let Some(limit) = limit.filter(|&l| (l as usize) < words.len()) {
            words.truncate(limit as usize);
            finish_reason = "length";
        }
        if tool.is_some() {
            finish_reason = "tool_calls";
        }
        Answer { words, prompt_tokens, finish_reason, tool }
    }

    fn call_id(m: &Meta) -> String {
        format!("call_{}", m.id.rsplit('-').next().unwrap_or("0"))
    }

    fn usage(&self) -> Value {
        let completion = self.words.len() as u64;
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": completion, "total_tokens": self.prompt_tokens + completion})
    }

    fn whole(&self, m: &Meta) -> Bytes {
        let text = self.words.join(" ");
        let choice = match m.endpoint {
            Endpoint::Chat if self.tool.is_some() => {
                let call = self.tool.as_ref().expect("checked");
                let tool_calls = json!([{"id": Self::call_id(m), "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments}}]);
                json!({"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": tool_calls},
                    "finish_reason": self.finish_reason})
            }
            Endpoint::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": self.finish_reason})
            }
            _ => json!({"index": 0, "text": text, "finish_reason": self.finish_reason}),
        };
        let object = if m.endpoint == Endpoint::Chat { "chat.completion" } else { "text_completion" };
        Bytes::from(
            json!({"id": m.id, "object": object, "created": m.created, "model": m.model, "choices": [choice], "usage": self.usage()})
                .to_string(),
        )
    }

    fn stream(&self, m: &Meta, chunks: usize, include_usage: bool) -> VecDeque<Bytes> {
        let object = if m.endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
        let per_chunk = self.words.len().div_ceil(chunks.max(1));
        let event = |choice: Value, usage: Option<Value>| {
            let mut chunk =
                json!({"id": m.id, "object": object, "created": m.created, "model": m.model, "choices": [choice]});
            if include_usage {
                chunk["usage"] = usage.unwrap_or(Value::Null);
            }
            Bytes::from(format!("data: {chunk}\n\n"))
        };
        let mut out = VecDeque::new();
        if let (Endpoint::Chat, Some(call)) = (m.endpoint, &self.tool) {
            let head = json!([{"index": 0, "id": Self::call_id(m), "type": "function",
                "function": {"name": call.name, "arguments": ""}}]);
            out.push_back(event(
                json!({"index": 0, "delta": {"role": "assistant", "content": null, "tool_calls": head},
                "finish_reason": null}),
                None,
            ));
            let pieces = call.arguments.len().div_ceil(chunks.max(1)).max(1);
            let mut rest = call.arguments.as_str();
            while !rest.is_empty() {
                let mut cut = pieces.min(rest.len());
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                let (piece, tail) = rest.split_at(cut);
                rest = tail;
                let delta = json!([{"index": 0, "function": {"arguments": piece}}]);
                out.push_back(event(json!({"index": 0, "delta": {"tool_calls": delta}, "finish_reason": null}), None));
            }
        }
        for (i, words) in self.words.chunks(per_chunk).enumerate().filter(|_| self.tool.is_none()) {
            let text = if i == 0 { words.join(" ") } else { format!(" {}", words.join(" ")) };
            let choice = match m.endpoint {
                Endpoint::Chat if i == 0 => {
                    json!({"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null})
                }
                Endpoint::Chat => json!({"index": 0, "delta": {"content": text}, "finish_reason": null}),
                _ => json!({"index": 0, "text": text, "finish_reason": null}),
            };
            out.push_back(event(choice, None));
        }
        let last = match m.endpoint {
            Endpoint::Chat => json!({"index": 0, "delta": {}, "finish_reason": self.finish_reason}),
            _ => json!({"index": 0, "text": "", "finish_reason": self.finish_reason}),
        };
        out.push_back(event(last, None));
        if include_usage {
            let chunk = json!({"id": m.id, "object": object, "created": m.created, "model": m.model, "choices": [], "usage": self.usage()});
            out.push_back(Bytes::from(format!("data: {chunk}\n\n")));
        }
        out.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }
}

/// The text of a message `content` (a string or an array of text parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.as_str().or_else(|| p["text"].as_str())).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

fn embeddings(request: &Value, model: &str) -> Bytes {
    let inputs: Vec<String> = match &request["input"] {
        Value::Array(items) => items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect(),
        other => vec![other.as_str().unwrap_or_default().to_owned()],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let digest = Sha256::digest(text.as_bytes());
            let vector: Vec<f64> = digest.iter().take(EMBEDDING_DIMS).map(|b| f64::from(*b) / 127.5 - 1.0).collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| t.split_whitespace().count().max(1) as u64).sum();
    Bytes::from(
        json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
            .to_string(),
    )
}

/// Frames released one by one, `delay` apart (the first one at once).
struct MockBody {
    frames: VecDeque<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for MockBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        let Some(frame) = self.frames.pop_front() else {
            return Poll::Ready(None);
        };
        if !self.delay.is_zero() && !self.frames.is_empty() {
            self.sleep = Some(Box::pin(tokio::time::sleep(self.delay)));
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}
