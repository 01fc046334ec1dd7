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

use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::conversation::{self, bad, Finished, Message, ReplyBody, ReplyInfo, StoredMessage, Streamed, Wire};
use super::openai::{event_stream, read_body};
use super::threads;
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
    let render = |m: &StoredMessage| serde_json::to_value(m).expect("a message serialises");
    let mut view = threads::read(app, &scope, Kind::Session, id, query, render).await?;
    view.insert("workspace".into(), ws.into());
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&view).expect("JSON serialises")))
}

/// `DELETE /v1/workspaces/{ws}/sessions/{id}`: the session and its messages.
pub async fn delete(app: &App, ctx: &RequestContext, ws: &str, id: &str) -> Result<Response<Body>, Error> {
    session_name(id)?;
    let scope = own_workspace(ctx, ws, id)?;
    threads::delete(app, &scope, Kind::Session, id).await
}

/// `GET /v1/workspaces/{ws}/sessions?after=&limit=`: by id. Another
/// workspace's list is as empty as a workspace without sessions.
pub async fn list(app: &App, ctx: &RequestContext, ws: &str, query: Option<&str>) -> Result<Response<Body>, Error> {
    let own = matches!(&ctx.principal.workspace, Some(own) if ctx.principal.key_id.is_some() && own.as_ref() == ws);
    threads::list(app, own.then_some(ws), Kind::Session, query).await
}
