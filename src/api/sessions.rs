//! Seed 000's workspace sessions: `POST /v1/workspaces/{ws}/sessions/{id}/messages`
//! with `{"content": "..."}` (also at the seed's
//! `/api/v1/workspaces/{ws}/session/{id}/messages`), `GET` and `DELETE` a
//! session, and the list of a workspace's sessions — a front door over
//! [`super::conversation`].
//!
//! The answer streams by default, as chat completion chunks (`model` is the
//! agent): any OpenAI SDK's stream reader reads it, and `data: [DONE]` comes
//! only once the turn is stored. `"stream": false` answers one
//! `chat.completion` object. Either carries the session id (`session_id`
//! field, `x-session-id` header).
//!
//! The `{ws}` in the path must be the key's own workspace: another
//! workspace's sessions are a 404, never a 403 (nothing confirms they exist).

use http::{header, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::conversation::{self, bad, Finished, Message, ReplyBody, ReplyInfo, StoredMessage, Streamed, Wire};
use super::openai::{event_stream, read_body};
use super::Query;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::conversations::{check_name, ConversationError, Kind};
use crate::error::{json_response, Error};
use crate::json::typed::parse_body;
use crate::pipeline::chunks::Translated;

/// The body of a session message.
#[derive(Deserialize)]
struct Body_ {
    content: Option<serde_json::Value>,
    agent: Option<String>,
    model: Option<String>,
    stream: Option<bool>,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
}

/// The path's workspace, when it is the caller's; else the session is not
/// found (another workspace's sessions are never confirmed).
fn own_workspace(ctx: &RequestContext, ws: &str, session: &str) -> Result<String, Error> {
    match &ctx.principal.workspace {
        Some(own) if ctx.principal.key_id.is_some() && own.as_ref() == ws => Ok(ws.to_owned()),
        _ => Err(ConversationError::NotFound { kind: "session", name: session.to_owned() }.into()),
    }
}

fn session_name(id: &str) -> Result<(), Error> {
    check_name(id).map_err(|reason| bad("session_id", format!("the session id {reason}.")))
}

/// `POST /v1/workspaces/{ws}/sessions/{id}/messages`.
pub async fn post_message(
    app: &App,
    ctx: &RequestContext,
    ws: &str,
    id: &str,
    req: http::Request<Incoming>,
) -> Result<Response<Body>, Error> {
    session_name(id)?;
    own_workspace(ctx, ws, id)?;
    let raw = read_body(app, req).await?;
    let body: Body_ = parse_body(&raw).map_err(ConversationError::from)?;
    let content = match body.content {
        None => {
            return Err(
                ConversationError::from(crate::json::typed::TypedError::Missing { param: "content".into() }).into()
            )
        }
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
        Some(serde_json::Value::String(_)) => return Err(bad("content", "must not be empty.")),
        Some(_) => {
            let e =
                crate::json::typed::TypedError::InvalidType { param: "content".into(), expected: "a string".into() };
            return Err(ConversationError::from(e).into());
        }
    };
    let stream = body.stream.unwrap_or(true);
    let sampling = conversation::sampling(body.temperature, body.max_tokens);
    let message = Message {
        kind: Kind::Session,
        name: id.to_owned(),
        agent: body.agent.or(body.model),
        messages: vec![StoredMessage::new(conversation::message_id(), "user", content)],
        stream,
        sampling,
        door: "sessions",
    };
    let reply = conversation::send(app, ctx, message, true).await?;
    let info = reply.info(ctx);
    let mut response = match reply.body {
        ReplyBody::Whole(done) => json_response(StatusCode::OK, completion(&info, &done)),
        ReplyBody::Stream(relay, pending) => {
            let (translator, first) = Streamed::new(app, reply.held, pending, info, SessionWire);
            event_stream(Body::Stream(Box::pin(Translated::new(*relay, translator, first))), &reply.rate)
        }
    };
    reply.rate.apply(response.headers_mut());
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-session-id", v);
    }
    Ok(response)
}

/// A whole answer as a `chat.completion` object with the session's id.
fn completion(info: &ReplyInfo, done: &Finished) -> Vec<u8> {
    let usage = done.usage.map(|u| {
        serde_json::json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
        })
    });
    let json = serde_json::json!({
        "id": info.message_id,
        "object": "chat.completion",
        "created": crate::store::now(),
        "model": info.agent,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": done.text},
            "finish_reason": done.finish_reason.as_deref().unwrap_or("stop"),
        }],
        "usage": usage,
        "session_id": info.thread,
    });
    serde_json::to_vec(&json).expect("JSON serialises")
}

/// The session stream: the chat chunks as relayed, `[DONE]` after the store.
struct SessionWire;

impl Wire for SessionWire {
    const FORWARDS_CHUNKS: bool = true;

    fn chunk(&mut self, json: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(json);
        out.extend_from_slice(b"\n\n");
    }

    fn text(&mut self, _delta: &str, _out: &mut Vec<u8>) {}

    fn finished(&mut self, _info: &ReplyInfo, _done: &Finished, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn failed(&mut self, _info: &ReplyInfo, message: &str, out: &mut Vec<u8>) {
        // The turn could not be stored, or a chunk could not be read: an
        // error event, as the relay reports an upstream failure.
        let error = crate::error::render(&crate::error::ErrorObject {
            message,
            kind: "api_error",
            code: Some("conversation_not_stored"),
            param: None,
        });
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error);
        out.extend_from_slice(b"\n\n");
    }
}

/// `GET /v1/workspaces/{ws}/sessions/{id}?after=&limit=`: the session and a
/// page of its messages, oldest first.
pub async fn get(
    app: &App,
    ctx: &RequestContext,
    ws: &str,
    id: &str,
    query: Option<&str>,
) -> Result<Response<Body>, Error> {
    session_name(id)?;
    let scope = own_workspace(ctx, ws, id)?;
    let not_found = || ConversationError::NotFound { kind: "session", name: id.to_owned() };
    let thread = app.conversations.get(&scope, Kind::Session, id).await?.ok_or_else(not_found)?;
    let messages = conversation::read_messages(&app.conversations.messages(&scope, Kind::Session, &thread).await?)?;
    let (page, has_more) = page(&messages, query)?;
    let json = serde_json::json!({
        "id": id,
        "object": "session",
        "workspace": ws,
        "agent": thread.agent,
        "turns": thread.turns,
        "created_at": thread.created_at,
        "updated_at": thread.updated_at,
        "summary": thread.summary.as_ref().map(|s| serde_json::json!({"text": s.text, "upto": s.upto})),
        "messages": page,
        "has_more": has_more,
        "last_id": page.last().map(|m| &m.id),
    });
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&json).expect("JSON serialises")))
}

/// The messages after `?after=` (a message id), at most `?limit=` (1–1000,
/// default 100).
pub fn page<'a>(messages: &'a [StoredMessage], query: Option<&str>) -> Result<(&'a [StoredMessage], bool), Error> {
    let q = Query::parse(query);
    let limit = limit(&q, 100, 1000)?;
    let from = match q.get("after") {
        None => 0,
        Some(after) => match messages.iter().position(|m| m.id == after) {
            Some(i) => i + 1,
            None => return Err(bad("after", "is not the id of a message in this conversation.")),
        },
    };
    let rest = &messages[from..];
    Ok((&rest[..rest.len().min(limit)], rest.len() > limit))
}

pub fn limit(q: &Query<'_>, default: usize, max: usize) -> Result<usize, Error> {
    match q.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| bad("limit", format!("must be an integer from 1 to {max}."))),
    }
}

/// `DELETE /v1/workspaces/{ws}/sessions/{id}`: the session and its messages.
pub async fn delete(app: &App, ctx: &RequestContext, ws: &str, id: &str) -> Result<Response<Body>, Error> {
    session_name(id)?;
    let scope = own_workspace(ctx, ws, id)?;
    if !app.conversations.delete(&scope, Kind::Session, id).await? {
        return Err(ConversationError::NotFound { kind: "session", name: id.to_owned() }.into());
    }
    let json = serde_json::json!({"id": id, "object": "session.deleted", "deleted": true});
    Ok(json_response(StatusCode::OK, json.to_string()))
}

/// `GET /v1/workspaces/{ws}/sessions?after=&limit=`: by id.
pub async fn list(app: &App, ctx: &RequestContext, ws: &str, query: Option<&str>) -> Result<Response<Body>, Error> {
    let scope = match &ctx.principal.workspace {
        Some(own) if ctx.principal.key_id.is_some() && own.as_ref() == ws => ws.to_owned(),
        // Another workspace's list is as empty as a workspace without sessions.
        _ => {
            return Ok(json_response(StatusCode::OK, r#"{"object":"list","data":[],"has_more":false,"last_id":null}"#))
        }
    };
    let q = Query::parse(query);
    let limit = limit(&q, 20, crate::conversations::MAX_LIST)?;
    let page = app.conversations.list(&scope, Kind::Session, q.get("after"), limit).await?;
    let data: Vec<serde_json::Value> = page
        .threads
        .iter()
        .map(|(name, t)| {
            serde_json::json!({
                "id": name,
                "object": "session",
                "agent": t.agent,
                "turns": t.turns,
                "created_at": t.created_at,
                "updated_at": t.updated_at,
            })
        })
        .collect();
    let json = serde_json::json!({
        "object": "list",
        "has_more": page.has_more,
        "last_id": page.threads.last().map(|(n, _)| n),
        "data": data,
    });
    let mut response = json_response(StatusCode::OK, json.to_string());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
