//! Seed 002's stateful `POST /v1/chat` (also at `/v1/api/chat` and
//! `/api/v1/chat`): a front door over [`super::conversation`].
//!
//! The body: `chatId` (or `id`, as the AI SDK's `useChat` sends it; absent,
//! a new chat), UIMessage `messages` with `parts` — the whole history, as
//! `useChat` sends it, or only the newest message: messages the chat already
//! holds are dropped by `id` — or the short form `{"message": "..."}`;
//! `model` (or `agent`), `stream`, `streamType`, `temperature`, `maxTokens`.
//! Other fields (what a client adds to its requests) are ignored.
//!
//! The answer, by what was asked:
//! - not streamed: the assistant's UIMessage, `metadata` = `model`,
//!   `tokensUsed`, `finishReason`, `chatId`, `executionId`;
//! - `stream: true`, `streamType: "data"` (the default): SSE
//!   `{"type":"content","delta":...}` … `{"type":"done","execution_id":...}`;
//! - `streamType: "text"`: the text alone, `text/plain`, as it arrives;
//! - the AI SDK's UI message stream (`x-vercel-ai-ui-message-stream: v1`)
//!   when the body carries `useChat`'s `trigger` or `streamType: "ui"`, so
//!   `useChat` with `DefaultChatTransport({ api })` works against it.

use http::{header, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::conversation::{self, bad, Finished, Message, ReplyBody, ReplyInfo, StoredMessage, Streamed, Wire};
use super::openai::{event_stream, read_body};
use super::threads;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::conversations::{check_name, ConversationError, Kind};
use crate::error::{json_response, Error};
use crate::json::typed::{parse_at, parse_body, TypedError};
use crate::pipeline::chunks::Translated;

static CHAT_IDS: std::sync::LazyLock<crate::ids::Sequence> =
    std::sync::LazyLock::new(|| crate::ids::Sequence::new("chat"));

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatBody<'a> {
    chat_id: Option<String>,
    id: Option<String>,
    #[serde(borrow)]
    messages: Option<Vec<&'a RawValue>>,
    message: Option<serde_json::Value>,
    model: Option<String>,
    agent: Option<String>,
    stream: Option<bool>,
    stream_type: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    /// `useChat`'s `submit-message` / `regenerate-message`: a UI stream is wanted.
    trigger: Option<String>,
}

#[derive(Deserialize)]
struct UiMessage {
    id: Option<String>,
    role: Option<String>,
    parts: Option<Vec<UiPart>>,
}

#[derive(Deserialize)]
struct UiPart {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
}

/// The part types of the AI SDK's UIMessage; only `text` goes upstream.
fn known_part(kind: &str) -> bool {
    matches!(kind, "text" | "reasoning" | "file" | "source-url" | "source-document" | "step-start" | "dynamic-tool")
        || kind.starts_with("tool-")
        || kind.starts_with("data-")
}

fn request_error(e: TypedError) -> Error {
    ConversationError::from(e).into()
}

/// The UIMessages as stored messages; errors name `messages[i]...`.
fn read_ui_messages(raw: &[&RawValue]) -> Result<Vec<StoredMessage>, Error> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let at = format!("messages[{i}]");
        let ui: UiMessage = parse_at(m, &at).map_err(request_error)?;
        let role = ui.role.ok_or_else(|| request_error(TypedError::Missing { param: format!("{at}.role") }))?;
        if !matches!(role.as_str(), "user" | "assistant" | "system") {
            return Err(bad(&format!("{at}.role"), "must be 'user', 'assistant' or 'system'."));
        }
        let parts = ui.parts.ok_or_else(|| request_error(TypedError::Missing { param: format!("{at}.parts") }))?;
        let mut text = String::new();
        for (j, part) in parts.iter().enumerate() {
            let param = format!("{at}.parts[{j}].type");
            let kind =
                part.kind.as_deref().ok_or_else(|| request_error(TypedError::Missing { param: param.clone() }))?;
            if !known_part(kind) {
                return Err(bad(&param, format!("'{kind}' is not a UIMessage part type.")));
            }
            if let ("text", Some(t)) = (kind, &part.text) {
                text.push_str(t);
            }
        }
        let id = match ui.id {
            Some(id) => {
                check_name(&id).map_err(|reason| bad(&format!("{at}.id"), format!("the message id {reason}.")))?;
                id
            }
            None => conversation::message_id(),
        };
        // A message without text (a file alone, a tool part) has nothing to send.
        if !text.is_empty() {
            out.push(StoredMessage::new(id, &role, text));
        }
    }
    Ok(out)
}

/// How the answer goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Whole,
    Data,
    Text,
    Ui,
}

/// `POST /v1/chat`.
pub async fn post(app: &App, ctx: &RequestContext, req: http::Request<Incoming>) -> Result<Response<Body>, Error> {
    let raw = read_body(app, req).await?;
    let body: ChatBody<'_> = parse_body(&raw).map_err(request_error)?;
    let (name, param) = match (body.chat_id, body.id) {
        (Some(id), _) => (id, "chatId"),
        (None, Some(id)) => (id, "id"),
        (None, None) => (CHAT_IDS.next(), "chatId"),
    };
    check_name(&name).map_err(|reason| bad(param, format!("the chat id {reason}.")))?;
    let messages = match (body.messages, body.message) {
        (Some(raw), _) => read_ui_messages(&raw)?,
        (None, Some(serde_json::Value::String(text))) if !text.trim().is_empty() => {
            vec![StoredMessage::new(conversation::message_id(), "user", text)]
        }
        (None, Some(serde_json::Value::String(_))) => return Err(bad("message", "must not be empty.")),
        (None, Some(_)) => {
            return Err(request_error(TypedError::InvalidType { param: "message".into(), expected: "a string".into() }))
        }
        (None, None) => return Err(request_error(TypedError::Missing { param: "messages".into() })),
    };
    let form = match (body.stream_type.as_deref(), body.trigger.is_some(), body.stream) {
        (Some("ui" | "ui-message"), _, _) | (None, true, _) => Form::Ui,
        (Some("text"), _, Some(true)) => Form::Text,
        (Some("data") | None, _, Some(true)) => Form::Data,
        (Some("text" | "data") | None, _, _) => Form::Whole,
        (Some(other), _, _) => return Err(bad("streamType", format!("'{other}' is not 'text', 'data' or 'ui'."))),
    };
    let sampling = conversation::sampling(body.temperature, body.max_tokens);
    let message = Message {
        kind: Kind::Chat,
        name: name.clone(),
        agent: body.model.or(body.agent),
        messages,
        stream: form != Form::Whole,
        sampling,
        door: "chat",
    };
    let reply = conversation::send(app, ctx, message, false).await?;
    let info = reply.info(ctx);
    let mut response = match reply.body {
        ReplyBody::Whole(done) => json_response(StatusCode::OK, ui_message(&info, &done)),
        ReplyBody::Stream(relay, pending) => {
            let held = reply.held;
            let stream = |body: Body| match form {
                Form::Text => text_stream(body),
                _ => event_stream(body, &reply.rate),
            };
            let body = match form {
                Form::Text => {
                    let (t, first) = Streamed::new(app, held, pending, info, TextWire);
                    Body::Stream(Box::pin(Translated::new(*relay, t, first)))
                }
                Form::Ui => {
                    let (t, first) = Streamed::new(app, held, pending, info, UiWire::default());
                    Body::Stream(Box::pin(Translated::new(*relay, t, first)))
                }
                _ => {
                    let (t, first) = Streamed::new(app, held, pending, info, DataWire);
                    Body::Stream(Box::pin(Translated::new(*relay, t, first)))
                }
            };
            let mut response = stream(body);
            if form == Form::Ui {
                response.headers_mut().insert("x-vercel-ai-ui-message-stream", HeaderValue::from_static("v1"));
            }
            response
        }
    };
    reply.rate.apply(response.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&name) {
        response.headers_mut().insert("x-chat-id", v);
    }
    Ok(response)
}

fn text_stream(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn tokens_used(done: &Finished) -> Option<u64> {
    done.usage.map(|u| u.total_tokens.unwrap_or(u.prompt_tokens + u.completion_tokens))
}

fn metadata(info: &ReplyInfo, done: &Finished) -> serde_json::Value {
    serde_json::json!({
        "model": info.agent,
        "tokensUsed": tokens_used(done),
        "finishReason": done.finish_reason.as_deref().unwrap_or("stop"),
        "chatId": info.thread,
        "executionId": info.execution_id,
    })
}

/// The whole answer: the assistant's UIMessage.
fn ui_message(info: &ReplyInfo, done: &Finished) -> Vec<u8> {
    let json = serde_json::json!({
        "id": info.message_id,
        "role": "assistant",
        "parts": [{"type": "text", "text": done.text}],
        "metadata": metadata(info, done),
    });
    serde_json::to_vec(&json).expect("JSON serialises")
}

fn sse(out: &mut Vec<u8>, json: &serde_json::Value) {
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, json).expect("JSON serialises");
    out.extend_from_slice(b"\n\n");
}

/// Seed 002's data stream.
struct DataWire;

impl Wire for DataWire {
    fn text(&mut self, delta: &str, out: &mut Vec<u8>) {
        sse(out, &serde_json::json!({"type": "content", "delta": delta}));
    }

    fn finished(&mut self, info: &ReplyInfo, done: &Finished, out: &mut Vec<u8>) {
        let json = serde_json::json!({
            "type": "done",
            "execution_id": info.execution_id,
            "chatId": info.thread,
            "messageId": info.message_id,
            "finishReason": done.finish_reason.as_deref().unwrap_or("stop"),
            "tokensUsed": tokens_used(done),
        });
        sse(out, &json);
    }

    fn failed(&mut self, info: &ReplyInfo, message: &str, out: &mut Vec<u8>) {
        sse(out, &serde_json::json!({"type": "error", "error": message, "execution_id": info.execution_id}));
    }
}

/// The text alone: nothing to frame, nothing to say at the end.
struct TextWire;

impl Wire for TextWire {
    fn text(&mut self, delta: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(delta.as_bytes());
    }

    fn finished(&mut self, _info: &ReplyInfo, _done: &Finished, _out: &mut Vec<u8>) {}

    fn failed(&mut self, info: &ReplyInfo, message: &str, _out: &mut Vec<u8>) {
        // A text body has no place for an error: it ends short, and the log says why.
        tracing::warn!(chat = %info.thread, error = %message, "a text-streamed chat answer failed");
    }
}

/// The AI SDK's UI message stream protocol (v1).
#[derive(Default)]
struct UiWire {
    text_open: bool,
}

const TEXT_PART: &str = "text-0";

impl UiWire {
    fn close_text(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.text_open) {
            sse(out, &serde_json::json!({"type": "text-end", "id": TEXT_PART}));
        }
    }

    fn end(out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

impl Wire for UiWire {
    fn start(&mut self, info: &ReplyInfo, out: &mut Vec<u8>) {
        sse(out, &serde_json::json!({"type": "start", "messageId": info.message_id}));
        sse(out, &serde_json::json!({"type": "start-step"}));
    }

    fn text(&mut self, delta: &str, out: &mut Vec<u8>) {
        if !self.text_open {
            self.text_open = true;
            sse(out, &serde_json::json!({"type": "text-start", "id": TEXT_PART}));
        }
        sse(out, &serde_json::json!({"type": "text-delta", "id": TEXT_PART, "delta": delta}));
    }

    fn finished(&mut self, info: &ReplyInfo, done: &Finished, out: &mut Vec<u8>) {
        self.close_text(out);
        sse(out, &serde_json::json!({"type": "finish-step"}));
        let reason = match done.finish_reason.as_deref().unwrap_or("stop") {
            "stop" => "stop",
            "length" => "length",
            "content_filter" => "content-filter",
            "tool_calls" | "function_call" => "tool-calls",
            _ => "other",
        };
        let finish =
            serde_json::json!({"type": "finish", "finishReason": reason, "messageMetadata": metadata(info, done)});
        sse(out, &finish);
        UiWire::end(out);
    }

    fn failed(&mut self, _info: &ReplyInfo, message: &str, out: &mut Vec<u8>) {
        self.close_text(out);
        sse(out, &serde_json::json!({"type": "error", "errorText": message}));
        UiWire::end(out);
    }
}

/// A stored message as a UIMessage.
fn as_ui_message(m: &StoredMessage) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "role": m.role,
        "parts": [{"type": "text", "text": m.content}],
        "metadata": {"createdAt": m.created_at},
    })
}

fn chat_name(id: &str) -> Result<(), Error> {
    check_name(id).map_err(|reason| bad("chatId", format!("the chat id {reason}.")))
}

/// `GET /v1/chat/{id}?after=&limit=`: the chat and a page of its messages as
/// UIMessages, oldest first (what `useChat`'s `messages` starts from).
pub async fn get(app: &App, ctx: &RequestContext, id: &str, query: Option<&str>) -> Result<Response<Body>, Error> {
    chat_name(id)?;
    let view = threads::read(app, &ctx.store_scope(), Kind::Chat, id, query, as_ui_message).await?;
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&view).expect("JSON serialises")))
}

/// `DELETE /v1/chat/{id}`: the chat and its messages.
pub async fn delete(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    chat_name(id)?;
    threads::delete(app, &ctx.store_scope(), Kind::Chat, id).await
}

/// `GET /v1/chat?after=&limit=`: the caller's chats, by id.
pub async fn list(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    threads::list(app, Some(&ctx.store_scope()), Kind::Chat, query).await
}
