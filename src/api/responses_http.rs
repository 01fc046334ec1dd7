//! `POST /v1/responses` and the stored responses' routes: the Responses
//! front door, an adapter over the model pipeline.
//!
//! Create, in order: read the body (bounded) → parse it as a Responses request
//! (400 with `param`) → load the history of `previous_response_id` (404 when
//! this caller's scope has no such response) → load the items that the
//! `item_reference`s name and that history lacks, by id from this scope's
//! stored responses (inputs and outputs of any live turn: how the Vercel AI
//! SDK replays its earlier output with `store` on, without a
//! `previous_response_id`; at most [`MAX_ITEM_IDS`] ids, more is a 400 on
//! `input`) → translate to a chat body (an id found in neither is a 400 naming
//! that reference's `input[i].id`) →
//! [`pipeline::run`] (resolve, rewrite, limits and credits, upstream, relay,
//! usage and events — as for chat, under the door name `responses`) →
//! translate the answer back: a whole Response, or the Responses event stream
//! as each chat chunk arrives → store the turn when `store` is true (default).
//! A streamed turn is stored before `response.completed` goes out, so a client
//! that continues the moment it sees it finds it.
//!
//! Stored responses are scoped to the caller's workspace (static config keys:
//! to the key, `static:<name>`); another scope's id answers 404.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::value::RawValue;

use super::openai::{event_stream, read_body};
use super::responses::{
    parse_request, response_from_chat, FailureCode, Item, ParsedRequest, ResponseMeta, ResponsesStream,
};
use super::Query;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::error::{json_response, Error};
use crate::pipeline::chunks::{Chunk, Closing, Translated, Translator};
use crate::pipeline::{self, Answer, ModelCall};
use crate::request::Endpoint;
use crate::responses::{ItemsQuery, Order, ResponseStore, ResponsesError, StoredError, StoredResponse, MAX_ITEM_IDS};
use crate::store::StoreError;

/// One id sequence for responses (`resp_…`).
static IDS: std::sync::LazyLock<crate::ids::Sequence> = std::sync::LazyLock::new(|| crate::ids::Sequence::new("resp"));

fn now_s() -> u64 {
    crate::store::now().max(0) as u64
}

fn parse_items(raw: &[Box<RawValue>]) -> Result<Vec<Item>, Error> {
    raw.iter()
        .map(|r| serde_json::from_str(r.get()).map_err(|e| StoreError::Corrupt(format!("a stored item: {e}")).into()))
        .collect()
}

fn to_raw<T: serde::Serialize>(items: &[T]) -> Vec<Box<RawValue>> {
    items.iter().map(|i| serde_json::value::to_raw_value(i).expect("items serialise")).collect()
}

/// The target of the body's `model`, when the caller may use it and its
/// provider speaks the Responses API natively; `None` sends the request down
/// the translating path (which also reports a bad body or model).
async fn native_target(app: &App, ctx: &RequestContext, body: &[u8]) -> Option<Arc<crate::agents::Target>> {
    if !app.agents.catalog().has_native_responses() {
        return None;
    }
    let members = crate::request::members(body).ok()?;
    let model = members.iter().rev().find(|(k, _)| k == "model")?.1;
    let model: std::borrow::Cow<'_, str> = serde_json::from_str(model.get()).ok()?;
    let target = app.agents.resolve(&model, &ctx.principal).await.ok()?;
    target.route.speaks_responses().then_some(target)
}

/// `POST /v1/responses`.
pub async fn create(app: &App, ctx: &RequestContext, req: http::Request<Incoming>) -> Result<Response<Body>, Error> {
    let body = read_body(app, req).await?;
    if let Some(target) = native_target(app, ctx, &body).await {
        // The provider serves the Responses API itself: forwarded, not translated.
        let call = ModelCall {
            endpoint: Endpoint::Responses,
            door: "responses",
            body,
            translates: false,
            target: Some(target),
        };
        return super::openai::forward(app, ctx, call).await;
    }
    let parsed = parse_request(&body)?;
    let scope = ctx.store_scope();
    let history = match parsed.previous_response_id() {
        None => Vec::new(),
        Some(previous) => {
            let max = app.responses.config.max_history_items;
            match app.responses.store.history(&scope, previous, max).await? {
                Some(items) => within_memory(app, ctx, &parsed, parse_items(&items)?).await,
                None => return Err(StoredError::UnknownPrevious(previous.to_owned()).into()),
            }
        }
    };
    let referenced = referenced_items(app, &scope, &parsed, &history).await?;
    let translated = parsed.translate(&history, &referenced)?;
    // Resolved here (the pipeline reuses it) so the echo shows the agent's defaults.
    let target = app.agents.resolve(&translated.model, &ctx.principal).await?;
    let meta = ResponseMeta {
        id: IDS.next(),
        created_at: now_s(),
        model: translated.model.clone(),
        echo: translated.echo_for(&target),
    };
    let keep = translated.store().then(|| Keep {
        store: app.responses.store.clone(),
        scope,
        previous: translated.previous_response_id().map(str::to_owned),
        input: to_raw(&translated.input_items),
        expires_at: app.responses.config.expires_at(meta.created_at as i64),
    });
    let call = ModelCall {
        endpoint: Endpoint::Chat,
        door: "responses",
        body: Bytes::from(translated.chat_body),
        translates: true,
        target: Some(target),
    };
    match pipeline::run(app, ctx, call).await? {
        Answer::Whole { json, rate, .. } => {
            let response = response_from_chat(&json, meta, now_s())?;
            let out = response.to_json();
            if let Some(keep) = keep {
                keep.store(&response.id, &out, &to_raw(response.output())).await?;
            }
            let mut http = json_response(StatusCode::OK, out);
            rate.apply(http.headers_mut());
            Ok(http)
        }
        Answer::Stream { body, rate } => {
            let mut stream = ResponsesStream::new(meta);
            let mut first = Vec::new();
            stream.start(&mut first);
            let translator = StreamTurn { stream: Some(stream), keep, failed: None };
            Ok(event_stream(Body::Stream(Box::pin(Translated::new(*body, translator, first))), &rate))
        }
    }
}

/// The history a `previous_response_id` continues with, trimmed by the
/// agent's memory policy (truncation: a chain keeps no summary; see
/// [`crate::memory`]). The request's own input items count towards
/// `max_messages` and are never dropped; a model that does not resolve is
/// left to the resolution after the translation, which reports it.
async fn within_memory(app: &App, ctx: &RequestContext, parsed: &ParsedRequest, history: Vec<Item>) -> Vec<Item> {
    let Ok(target) = app.agents.resolve(parsed.model(), &ctx.principal).await else { return history };
    let Some(policy) = target.memory else { return history };
    let tokens: Vec<u64> = history
        .iter()
        .map(|i| crate::memory::estimate_tokens(serde_json::to_string(i).map_or(0, |j| j.len())))
        .chain(std::iter::repeat_n(0, parsed.input.len().max(1)))
        .collect();
    let is_tool = |i: usize| matches!(history.get(i), Some(Item::FunctionCallOutput(_)));
    let cut = crate::memory::keep_from(&policy, &tokens, &is_tool, 0).min(history.len());
    history.into_iter().skip(cut).collect()
}

/// The stored items that the request's `item_reference`s name and its
/// history does not hold, from the caller's scope, in one store call. An id
/// found nowhere is left to [`ParsedRequest::translate`], which refuses it
/// (400, `param` naming the reference).
async fn referenced_items(
    app: &App,
    scope: &str,
    parsed: &ParsedRequest,
    history: &[Item],
) -> Result<Vec<Item>, Error> {
    let known: HashSet<&str> = history.iter().map(Item::id).collect();
    let mut wanted = HashSet::new();
    let ids: Vec<&str> = parsed.item_references().filter(|id| !known.contains(id) && wanted.insert(*id)).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    if ids.len() > MAX_ITEM_IDS {
        return Err(ResponsesError::invalid(
            "input",
            format!(
                "at most {MAX_ITEM_IDS} distinct item_reference ids can be resolved from stored responses in one \
                 request; this one names {} that its previous_response_id history does not hold.",
                ids.len()
            ),
        )
        .into());
    }
    parse_items(&app.responses.store.items(scope, &ids).await?)
}

/// What storing a turn needs, known before the answer.
struct Keep {
    store: Arc<dyn ResponseStore>,
    scope: String,
    previous: Option<String>,
    input: Vec<Box<RawValue>>,
    expires_at: i64,
}

impl Keep {
    async fn store(self, id: &str, response: &[u8], output: &[Box<RawValue>]) -> Result<(), Error> {
        let store = self.store;
        let record = StoredResponse {
            id: id.to_owned(),
            scope: self.scope,
            created_at: crate::store::now(),
            previous_response_id: self.previous,
            response: RawValue::from_string(String::from_utf8_lossy(response).into_owned())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            input_items: self.input,
            output_items: output.to_vec(),
            expires_at: self.expires_at,
        };
        store.put(&record).await.map_err(Error::from)
    }
}

/// A streamed turn: chat chunks in, Responses events out, the turn stored at
/// the end.
struct StreamTurn {
    stream: Option<ResponsesStream>,
    keep: Option<Keep>,
    /// The gateway's error event, when the upstream failed mid-stream.
    failed: Option<String>,
}

impl Translator for StreamTurn {
    fn chunk(&mut self, chunk: Chunk<'_>, out: &mut Vec<u8>) {
        let Some(stream) = self.stream.as_mut() else { return };
        match chunk {
            Chunk::Data(json) => {
                if let Err(e) = stream.push_chunk(json, out) {
                    self.failed = Some(e.to_string());
                }
            }
            Chunk::Error(json) => {
                let message = serde_json::from_slice::<serde_json::Value>(json)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
                self.failed = Some(message.unwrap_or_else(|| "The upstream failed mid-response.".into()));
            }
            Chunk::Done => {}
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Option<Closing> {
        let stream = self.stream.take()?;
        let mut last = Vec::new();
        let failed = self.failed.take();
        let response = match &failed {
            Some(message) => stream.fail(FailureCode::ServerError, message, None, &mut last),
            None => stream.finish(now_s(), None, &mut last),
        };
        // A failed turn is not kept: there is nothing to continue from.
        let keep = self.keep.take().filter(|_| failed.is_none());
        let Some(keep) = keep else {
            out.append(&mut last);
            return None;
        };
        let (id, json, output) = (response.id.clone(), response.to_json(), to_raw(response.output()));
        Some(Box::pin(async move {
            if let Err(e) = keep.store(&id, &json, &output).await {
                tracing::warn!(response = %id, error = %e, "a streamed response could not be stored");
            }
            last
        }))
    }
}

/// `GET /v1/responses/{id}`.
pub async fn get(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    match app.responses.store.get(&ctx.store_scope(), id).await? {
        Some(stored) => Ok(json_response(StatusCode::OK, stored.response.get().to_owned())),
        None => Err(StoredError::NotFound(id.to_owned()).into()),
    }
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(app: &App, ctx: &RequestContext, id: &str) -> Result<Response<Body>, Error> {
    if !app.responses.store.delete(&ctx.store_scope(), id).await? {
        return Err(StoredError::NotFound(id.to_owned()).into());
    }
    let body = serde_json::json!({"id": id, "object": "response.deleted", "deleted": true});
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// `GET /v1/responses/{id}/input_items?after=&limit=&order=`: OpenAI's list shape.
pub async fn input_items(
    app: &App,
    ctx: &RequestContext,
    id: &str,
    query: Option<&str>,
) -> Result<Response<Body>, Error> {
    let q = Query::parse(query);
    let bad = |param: &str, reason: &str| ResponsesError::invalid(param, reason);
    let limit = match q.get("limit") {
        None => crate::responses::DEFAULT_PAGE,
        Some(l) => l
            .parse()
            .ok()
            .filter(|l| (1..=crate::responses::MAX_PAGE).contains(l))
            .ok_or_else(|| bad("limit", "must be an integer from 1 to 100."))?,
    };
    let order = match q.get("order") {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(bad("order", "must be 'asc' or 'desc'.").into()),
    };
    let query = ItemsQuery { after: q.get("after").map(str::to_owned), limit, order };
    let Some(page) = app.responses.store.input_items(&ctx.store_scope(), id, &query).await? else {
        return Err(StoredError::NotFound(id.to_owned()).into());
    };
    let data: Vec<&RawValue> = page.items.iter().map(|i| i.as_ref()).collect();
    let body = serde_json::json!({
        "object": "list",
        "data": data,
        "first_id": page.first_id,
        "last_id": page.last_id,
        "has_more": page.has_more,
    });
    let mut response = json_response(StatusCode::OK, body.to_string());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
