//! Reading and deleting named conversations: what `GET`, `DELETE` and the
//! list of sessions (seed 000) and chats (seed 002) share. Each door checks
//! whose conversation it is and names the scope; the shapes differ only in
//! `object` and in how a message is written (a session's as stored, a
//! chat's as a UIMessage).

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use super::conversation::{bad, read_messages, StoredMessage};
use super::Query;
use crate::app::App;
use crate::body::Body;
use crate::conversations::{ConversationError, Kind, MAX_LIST};
use crate::error::{json_response, Error};

/// The most messages one `GET` page holds, and its default.
pub const MAX_MESSAGES_PAGE: usize = 1000;
pub const DEFAULT_MESSAGES_PAGE: usize = 100;

/// `?limit=` within `1..=max`, `default` when absent; a 400 naming `limit`.
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

/// The messages after `?after=` (a message id), at most `?limit=`.
pub fn page<'a>(messages: &'a [StoredMessage], q: &Query<'_>) -> Result<(&'a [StoredMessage], bool), Error> {
    let limit = limit(q, DEFAULT_MESSAGES_PAGE, MAX_MESSAGES_PAGE)?;
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

fn not_found(kind: Kind, id: &str) -> Error {
    ConversationError::NotFound { kind: kind.as_str(), name: id.to_owned() }.into()
}

/// One conversation and a page of its messages, oldest first, each written
/// by `render`; the caller adds its own fields and sends it.
pub async fn read(
    app: &App,
    scope: &str,
    kind: Kind,
    id: &str,
    query: Option<&str>,
    render: fn(&StoredMessage) -> Value,
) -> Result<serde_json::Map<String, Value>, Error> {
    let thread = app.conversations.get(scope, kind, id).await?.ok_or_else(|| not_found(kind, id))?;
    let messages = read_messages(&app.conversations.messages(scope, kind, &thread).await?)?;
    let (page, has_more) = page(&messages, &Query::parse(query))?;
    let view = json!({
        "id": id,
        "object": kind.as_str(),
        "agent": thread.agent,
        "turns": thread.turns,
        "created_at": thread.created_at,
        "updated_at": thread.updated_at,
        "summary": thread.summary.as_ref().map(|s| json!({"text": s.text, "upto": s.upto})),
        "messages": page.iter().map(render).collect::<Vec<_>>(),
        "has_more": has_more,
        "last_id": page.last().map(|m| &m.id),
    });
    let Value::Object(map) = view else { unreachable!("an object literal") };
    Ok(map)
}

/// Deletes a conversation and its messages.
pub async fn delete(app: &App, scope: &str, kind: Kind, id: &str) -> Result<Response<Body>, Error> {
    if !app.conversations.delete(scope, kind, id).await? {
        return Err(not_found(kind, id));
    }
    let body = json!({"id": id, "object": format!("{}.deleted", kind.as_str()), "deleted": true});
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// A page of the scope's conversations of `kind`, by id (`?after=&limit=`).
/// `None` for a scope the caller may not see: as empty as one without any.
pub async fn list(app: &App, scope: Option<&str>, kind: Kind, query: Option<&str>) -> Result<Response<Body>, Error> {
    let q = Query::parse(query);
    let limit = limit(&q, 20, MAX_LIST)?;
    let page = match scope {
        Some(scope) => app.conversations.list(scope, kind, q.get("after"), limit).await?,
        None => Default::default(),
    };
    let data: Vec<Value> = page
        .threads
        .iter()
        .map(|(name, t)| {
            json!({
                "id": name,
                "object": kind.as_str(),
                "agent": t.agent,
                "turns": t.turns,
                "created_at": t.created_at,
                "updated_at": t.updated_at,
            })
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "has_more": page.has_more,
        "last_id": page.threads.last().map(|(n, _)| n),
    });
    let mut response = json_response(StatusCode::OK, body.to_string());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
