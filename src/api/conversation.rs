//! One message to a named conversation, whatever front door it came through
//! (seed 000's sessions, seed 002's `/v1/chat`): the adapter between a door's
//! wire format and the model pipeline, written once.
//!
//! In order: take the thread's lease ([`Conversations::begin`]; 409 while
//! another message is answered) → pick the agent (the body's, else the one the
//! thread started with, else the workspace's default) → load the stored
//! history → drop the messages the client sent again (by `id`) → apply the
//! agent's memory policy (truncate, or fold the dropped messages into a
//! summary with a billed call of the agent's own model) → build a chat body →
//! [`pipeline::run`] (limits, credits, upstream, usage, events — as for any
//! chat call) → the answer, whole or streamed through the door's [`Wire`] →
//! store the turn (the new messages and the answer) and let the lease go.
//!
//! A message refused before an answer (429 `insufficient_quota`, a rate
//! limit, 503) or whose upstream failed is **not kept**: the thread stays as
//! it was and the client resends it; a streamed turn is stored before the
//! door's last event goes out, so the next message finds it.

mod stream;

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::app::{App, RequestContext};
use crate::conversations::{Answered, ConversationError, Held, Kind, Summary, Thread, RENEW_EVERY};
use crate::error::Error;
use crate::json::typed::TypedError;
use crate::limits::RateHeaders;
use crate::memory::{estimate_tokens, keep_from, MemoryPolicy, Strategy};
use crate::pipeline::answer::{ChatUsage, WholeAnswer};
use crate::pipeline::{self, Answer, ModelCall};
use crate::relay::RelayBody;
use crate::request::Endpoint;

/// Message ids the gateway gives (`msg_…`).
static MESSAGE_IDS: std::sync::LazyLock<crate::ids::Sequence> =
    std::sync::LazyLock::new(|| crate::ids::Sequence::new("msg"));

pub fn message_id() -> String {
    MESSAGE_IDS.next()
}

/// A message as a thread stores it: one turn-store item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: String,
    /// `user`, `assistant` or `system`.
    pub role: String,
    pub content: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl StoredMessage {
    pub fn new(id: String, role: &str, content: String) -> Self {
        StoredMessage { id, role: role.to_owned(), content, created_at: crate::store::now() }
    }

    fn raw(&self) -> Box<RawValue> {
        serde_json::value::to_raw_value(self).expect("a message serialises")
    }
}

/// Reads a thread's stored items back as messages.
pub fn read_messages(items: &[Box<RawValue>]) -> Result<Vec<StoredMessage>, Error> {
    items
        .iter()
        .map(|i| {
            serde_json::from_str(i.get())
                .map_err(|e| crate::store::StoreError::Corrupt(format!("a stored message: {e}")).into())
        })
        .collect()
}

/// The sampling fields a door passes through, as chat completions names them.
pub fn sampling(temperature: Option<f64>, max_tokens: Option<u64>) -> serde_json::Map<String, serde_json::Value> {
    let mut sampling = serde_json::Map::new();
    if let Some(t) = temperature {
        sampling.insert("temperature".into(), t.into());
    }
    if let Some(m) = max_tokens {
        sampling.insert("max_tokens".into(), m.into());
    }
    sampling
}

/// One message to a thread, as a door parsed it.
pub struct Message {
    pub kind: Kind,
    pub name: String,
    /// The agent the body names (`agent` or `model`).
    pub agent: Option<String>,
    /// The new messages, oldest first (a door that gets the whole history
    /// passes it all: those already stored are dropped by id).
    pub messages: Vec<StoredMessage>,
    pub stream: bool,
    /// Sampling fields for the chat body (`temperature`, `max_tokens`).
    pub sampling: serde_json::Map<String, serde_json::Value>,
    /// The door's name in usage and events.
    pub door: &'static str,
}

/// What the door writes its answer from.
pub struct Reply {
    pub held: Held,
    pub agent: String,
    /// The id the answer is stored under.
    pub message_id: String,
    pub rate: RateHeaders,
    pub body: ReplyBody,
}

pub enum ReplyBody {
    Whole(Finished),
    /// The relayed stream, to wrap in [`Streamed`] with the door's wire.
    Stream(Box<RelayBody>, Pending),
}

/// A complete answer, stored.
#[derive(Debug, Clone)]
pub struct Finished {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<ChatUsage>,
    /// The stored turn's id.
    pub turn: String,
}

/// A door's stream format: typed answer pieces in, the door's bytes out.
pub trait Wire: Send + Unpin + 'static {
    /// Whether the door forwards the chat chunks as they are (then the
    /// pipeline splices the agent id into them).
    const FORWARDS_CHUNKS: bool = false;
    /// The opening bytes, before any chunk.
    fn start(&mut self, _reply: &ReplyInfo, _out: &mut Vec<u8>) {}
    /// A chat chunk as relayed (only when [`Wire::FORWARDS_CHUNKS`]).
    fn chunk(&mut self, _json: &[u8], _out: &mut Vec<u8>) {}
    /// More of the answer's text.
    fn text(&mut self, delta: &str, out: &mut Vec<u8>);
    /// The answer is complete and stored.
    fn finished(&mut self, info: &ReplyInfo, done: &Finished, out: &mut Vec<u8>);
    /// The answer failed (upstream error, or it could not be stored).
    fn failed(&mut self, info: &ReplyInfo, message: &str, out: &mut Vec<u8>);
}

/// What a wire names in its events.
#[derive(Debug, Clone)]
pub struct ReplyInfo {
    pub thread: String,
    pub agent: String,
    pub message_id: String,
    /// The request id: seed 002's `execution_id`.
    pub execution_id: String,
}

impl Reply {
    pub fn info(&self, ctx: &RequestContext) -> ReplyInfo {
        ReplyInfo {
            thread: self.held.name.clone(),
            agent: self.agent.clone(),
            message_id: self.message_id.clone(),
            execution_id: ctx.request_id.to_str().unwrap_or_default().to_owned(),
        }
    }
}

/// Sends one message: see the module doc.
pub async fn send(app: &App, ctx: &RequestContext, message: Message, forwards: bool) -> Result<Reply, Error> {
    let convos = &app.conversations;
    let held = convos.begin(&ctx.store_scope(), message.kind, &message.name, message.agent.as_deref()).await??;
    let renewing = Renewal::start(app, &held);
    let called = prepare_and_call(app, ctx, &held, message, forwards).await;
    let (agent, answer, rate, mut pending) = match called {
        Ok(called) => called,
        Err(e) => {
            drop(renewing);
            let_go(convos, &held, "a refused message").await;
            return Err(e);
        }
    };
    let message_id = pending.answer_id.clone();
    let body = match answer {
        Called::Stream(stream) => {
            pending.renewal = Some(renewing);
            ReplyBody::Stream(stream, pending)
        }
        Called::Whole(whole) => {
            let done = pending.commit(app, &held, whole).await;
            drop(renewing);
            if done.is_err() {
                // Not stored: the thread must not stay held until its lease runs out.
                let_go(convos, &held, "an unstored answer").await;
            }
            ReplyBody::Whole(done?)
        }
    };
    Ok(Reply { held, agent, message_id, rate, body })
}

/// Releases a thread whose message ends without a stored turn; a failure is
/// logged (the lease then runs out by itself).
pub(super) async fn let_go(convos: &crate::conversations::Conversations, held: &Held, what: &str) {
    if let Err(e) = convos.release(held).await {
        tracing::warn!(thread = %held.name, error = %e, "{what} could not release its thread");
    }
}

/// The pipeline's answer, before it is stored.
enum Called {
    Whole(Finished),
    Stream(Box<RelayBody>),
}

async fn prepare_and_call(
    app: &App,
    ctx: &RequestContext,
    held: &Held,
    message: Message,
    forwards: bool,
) -> Result<(String, Called, RateHeaders, Pending), Error> {
    let agent = match message.agent.clone().or_else(|| held.thread.agent.clone()) {
        Some(agent) => agent,
        None => match &ctx.principal.workspace {
            // The workspace's default agent (`PATCH /v1/workspaces/{id}`).
            Some(ws) if ctx.principal.key_id.is_some() => {
                app.agents.default_for(ws).await?.ok_or_else(missing_agent)?
            }
            _ => return Err(missing_agent()),
        },
    };
    let target = app.agents.resolve(&agent, &ctx.principal).await?;
    let stored = read_messages(&app.conversations.messages(&held.scope, held.kind, &held.thread).await?)?;
    let known: std::collections::HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    let new: Vec<StoredMessage> = message.messages.into_iter().filter(|m| !known.contains(m.id.as_str())).collect();
    if !new.iter().any(|m| m.role == "user") {
        let reason = "there is no new user message to answer (every message sent is already in this conversation).";
        return Err(bad("messages", reason));
    }
    let policy = target.memory.unwrap_or_default().within(app.conversations.config.max_history_items);
    let view = View::of(&held.thread, &stored, &new, &policy);
    let summary = match (&view.dropped[..], policy.strategy) {
        ([], _) | (_, Strategy::Truncate) => None,
        (dropped, Strategy::Summarize) => Some(summarize(app, ctx, &agent, view.summary.as_deref(), dropped).await?),
    };
    let summary_text = summary.as_ref().map(|s| s.text.as_str()).or(view.summary.as_deref());
    let chat_body = chat_body(&agent, summary_text, &view.kept, &message.sampling, message.stream);
    let call = ModelCall {
        endpoint: Endpoint::Chat,
        door: message.door,
        body: Bytes::from(chat_body),
        translates: !forwards,
        target: Some(target),
    };
    let pending = Pending { new, summary, agent: agent.clone(), answer_id: message_id(), renewal: None };
    match pipeline::run(app, ctx, call).await? {
        Answer::Whole { json, rate, .. } => {
            let answer = WholeAnswer::parse(&json)
                .map_err(|e| crate::upstream::UpstreamError::Invalid { detail: e.to_string() })?;
            let done = Finished {
                text: answer.text.map(Cow::into_owned).unwrap_or_default(),
                finish_reason: answer.finish_reason.map(Cow::into_owned),
                usage: answer.usage,
                turn: String::new(),
            };
            Ok((agent, Called::Whole(done), rate, pending))
        }
        Answer::Stream { body, rate } => Ok((agent, Called::Stream(body), rate, pending)),
    }
}

fn missing_agent() -> Error {
    let reason = "this conversation has no agent yet and the workspace has no default agent: name one with \
                  `agent` (or `model`).";
    bad("agent", reason)
}

/// A 400 naming the field.
pub fn bad(param: &str, reason: impl Into<String>) -> Error {
    ConversationError::from(TypedError::InvalidValue { param: param.into(), reason: reason.into() }).into()
}

/// What the model sees of a thread.
struct View {
    /// The stored summary, when its messages are still left out.
    summary: Option<String>,
    /// The messages that go upstream, oldest first.
    kept: Vec<StoredMessage>,
    /// The messages the policy newly left out, oldest first.
    dropped: Vec<StoredMessage>,
}

impl View {
    fn of(thread: &Thread, stored: &[StoredMessage], new: &[StoredMessage], policy: &MemoryPolicy) -> View {
        // Messages a summary covers stay out; the rest are candidates.
        let (summary, from) = match &thread.summary {
            None => (None, 0),
            Some(s) => (Some(s.text.clone()), stored.iter().position(|m| m.id == s.upto).map_or(0, |i| i + 1)),
        };
        let all: Vec<&StoredMessage> = stored[from..].iter().chain(new).collect();
        let tokens: Vec<u64> = all.iter().map(|m| estimate_tokens(m.content.len())).collect();
        let reserved = summary.as_ref().map_or(0, |s| estimate_tokens(s.len()));
        let cut = keep_from(policy, &tokens, &|i| all[i].role == "tool", reserved);
        View {
            summary,
            dropped: all[..cut].iter().map(|m| (*m).clone()).collect(),
            kept: all[cut..].iter().map(|m| (*m).clone()).collect(),
        }
    }
}

/// The chat completions body of one message.
fn chat_body(
    agent: &str,
    summary: Option<&str>,
    kept: &[StoredMessage],
    sampling: &serde_json::Map<String, serde_json::Value>,
    stream: bool,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        role: &'a str,
        content: Cow<'a, str>,
    }
    let mut messages = Vec::with_capacity(kept.len() + 1);
    if let Some(summary) = summary {
        let text = format!("Summary of the earlier conversation:\n{summary}");
        messages.push(Out { role: "system", content: Cow::Owned(text) });
    }
    messages.extend(kept.iter().map(|m| Out { role: &m.role, content: Cow::Borrowed(&m.content) }));
    let mut body = serde_json::Map::new();
    body.insert("model".into(), agent.into());
    body.insert("messages".into(), serde_json::to_value(messages).expect("messages serialise"));
    body.insert("stream".into(), stream.into());
    if stream {
        body.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
    }
    for (k, v) in sampling {
        body.insert(k.clone(), v.clone());
    }
    serde_json::to_vec(&body).expect("a chat body serialises")
}

/// Folds `dropped` (and the summary so far) into a new summary with the
/// agent's model: a chat call of its own, admitted, billed and recorded
/// under the door name `conversation.summary`.
async fn summarize(
    app: &App,
    ctx: &RequestContext,
    agent: &str,
    previous: Option<&str>,
    dropped: &[StoredMessage],
) -> Result<Summary, Error> {
    let mut transcript = String::new();
    if let Some(previous) = previous {
        transcript.push_str("Summary so far:\n");
        transcript.push_str(previous);
        transcript.push_str("\n\nLater messages:\n");
    }
    for m in dropped {
        transcript.push_str(&m.role);
        transcript.push_str(": ");
        transcript.push_str(&m.content);
        transcript.push('\n');
    }
    let body = serde_json::json!({
        "model": agent,
        "stream": false,
        "messages": [
            {"role": "system", "content": "Summarize the conversation below in a few sentences, keeping every \
                fact, name, number and decision a later reply may need. Answer with the summary only."},
            {"role": "user", "content": transcript},
        ],
    });
    let call = ModelCall {
        endpoint: Endpoint::Chat,
        door: "conversation.summary",
        body: Bytes::from(serde_json::to_vec(&body).expect("a chat body serialises")),
        translates: true,
        target: None,
    };
    let Answer::Whole { json, .. } = pipeline::run(app, ctx, call).await? else {
        unreachable!("a non-stream call answers whole")
    };
    let answer =
        WholeAnswer::parse(&json).map_err(|e| crate::upstream::UpstreamError::Invalid { detail: e.to_string() })?;
    let upto = dropped.last().map(|m| m.id.clone()).unwrap_or_default();
    Ok(Summary { text: answer.text.map(Cow::into_owned).unwrap_or_default(), upto })
}

/// What storing the turn needs, known before the answer.
pub struct Pending {
    new: Vec<StoredMessage>,
    summary: Option<Summary>,
    agent: String,
    answer_id: String,
    renewal: Option<Renewal>,
}

impl Pending {
    /// Stores the turn; the answer with its turn id.
    pub(super) async fn commit(self, app: &App, held: &Held, mut done: Finished) -> Result<Finished, Error> {
        commit(&app.conversations, held, self.new, self.summary, self.agent, self.answer_id, &mut done).await?;
        Ok(done)
    }
}

async fn commit(
    convos: &crate::conversations::Conversations,
    held: &Held,
    new: Vec<StoredMessage>,
    summary: Option<Summary>,
    agent: String,
    answer_id: String,
    done: &mut Finished,
) -> Result<(), Error> {
    let inputs = new.len();
    let mut items: Vec<Box<RawValue>> = new.iter().map(StoredMessage::raw).collect();
    items.push(StoredMessage::new(answer_id, "assistant", done.text.clone()).raw());
    let meta = serde_json::json!({
        "object": "conversation.turn",
        "model": agent,
        "finish_reason": done.finish_reason,
        "usage": done.usage.map(|u| serde_json::json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
        })),
    });
    let meta = serde_json::value::to_raw_value(&meta).expect("JSON serialises");
    let answered = Answered { items, inputs, meta, summary, agent };
    done.turn = convos.commit(held, answered).await??;
    Ok(())
}

/// Renews a message's lease while its answer runs; stops when dropped.
pub struct Renewal {
    stop: tokio_util::sync::CancellationToken,
}

impl Renewal {
    fn start(app: &App, held: &Held) -> Renewal {
        let stop = tokio_util::sync::CancellationToken::new();
        let (convos, held, token) = (app.conversations.clone(), held.clone(), stop.clone());
        app.conversations.tasks.spawn(async move {
            let mut ticks = tokio::time::interval(RENEW_EVERY);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match convos.renew(&held).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(thread = %held.name, error = %e, "renewing a conversation lease failed"),
                }
            }
        });
        Renewal { stop }
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub use stream::Streamed;
