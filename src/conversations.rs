//! Named conversations: seed 000's workspace sessions and seed 002's chats.
//!
//! **One conversation store.** A Responses chain, a session and a chat are
//! the same thing underneath: turns, each holding its messages as raw JSON
//! items with ids, linked newest to oldest — the turns of
//! [`crate::responses::ResponseStore`], whose `history` walks a chain back in
//! one round trip on both backends. What a session or a chat adds is a
//! *name* the client chooses (`session_id`, `chatId`): a [`Thread`] record,
//! kept here, that points at its newest turn (`head`) and holds what its
//! agent's memory policy folded away (`summary`) and who is answering it
//! right now (`lease`). A thread's turns live in the turn store under their
//! own scope ([`turn_scope`]), so a session's messages are never found by a
//! Responses `item_reference` or `GET /v1/responses/{id}`, and the other way
//! round.
//!
//! **One message at a time.** Answering a message takes the thread's lease
//! (a compare-and-set on the record: exact across replicas on Redis); a
//! second message to the same thread while the first is answered gets
//! `409 conversation_busy` with `Retry-After`, never an interleaved history.
//! The lease lasts [`LEASE`] and is renewed while the answer streams, so a
//! replica that dies mid-answer frees its thread within [`LEASE`].
//!
//! **Nothing half-written.** A turn (the user's message and the answer) is
//! stored only once the answer is complete: a refused message (429, 503) or
//! a failed upstream leaves the thread exactly as it was, so after a top-up
//! the client resends and the conversation continues where it stopped. The
//! turn is written first and the head moved after it (under the lease): a
//! crash between the two leaves an unreachable turn that expires with its
//! retention, never a thread pointing at nothing.
//!
//! **Retention** is the Responses API's (`responses.retention_days`): each
//! turn expires on its own, and the thread record with its newest turn.
//!
//! **Backends** store only the thread records, through the four calls of
//! [`ThreadStore`] — the shared [`crate::records`] store, one collection per
//! [`Kind`]; every rule above is written once, here, over them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::records::{self, RecordStore};
use crate::responses::ResponseStore;
use crate::store::StoreError;

/// How long a message's lease holds a thread without a renewal.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a lease is renewed while its answer runs.
pub const RENEW_EVERY: Duration = Duration::from_secs(20);
/// The most threads one list call returns.
pub const MAX_LIST: usize = 100;
/// The longest session id or chat id a client may choose.
pub const MAX_NAME: usize = 128;

/// What kind of named conversation a thread is; each has its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Seed 000's workspace sessions.
    Session,
    /// Seed 002's `/v1/chat`.
    Chat,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Chat => "chat",
        }
    }
}

/// The turn-store scope of a thread's turns: its own namespace, apart from
/// the scope's Responses (`session:acme`, `chat:static:dev`).
pub fn turn_scope(kind: Kind, scope: &str) -> String {
    format!("{}:{scope}", kind.as_str())
}

/// Whether a client-chosen id is usable: 1 to [`MAX_NAME`] characters of
/// `[A-Za-z0-9._-]` (UUIDs, `chat_abc123`, `msg-1`): the characters Redis
/// key names keep as they are, so a name is its own key form. Returns why not.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("must be at most {MAX_NAME} characters (got {})", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("may hold only ASCII letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// A named conversation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// The agent the conversation started with; later messages default to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The newest turn's id in the turn store; `None` before the first answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Answered turns so far.
    #[serde(default)]
    pub turns: u64,
    /// What the memory policy folded away, when its strategy is `summarize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The message being answered now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Unix seconds; the record is gone from then on.
    pub expires_at: i64,
}

/// A summary of the oldest messages of a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub text: String,
    /// The id of the newest message it covers: history up to and including
    /// it goes upstream as this text instead.
    pub upto: String,
}

/// Who holds a thread, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub token: String,
    /// Unix milliseconds.
    pub until_ms: i64,
}

/// A thread record with the version its next compare-and-set must name.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub version: u64,
    pub thread: Thread,
}

/// One page of a scope's threads, by name.
#[derive(Debug, Clone, Default)]
pub struct ThreadPage {
    pub threads: Vec<(String, Thread)>,
    pub has_more: bool,
}

/// Thread records of one backend: a versioned record per (scope, kind,
/// name). Expired records (`expires_at` reached) are absent. Every call is
/// one round trip and fails with [`StoreError::Unavailable`] when the
/// backend cannot answer.
#[async_trait]
pub trait ThreadStore: Send + Sync + 'static {
    async fn load(&self, scope: &str, kind: Kind, name: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `thread` if the stored version is `expected` (`None`: only if
    /// there is no live record); whether it was written. The new version is
    /// `expected + 1` (1 for a new record).
    async fn save(
        &self,
        scope: &str,
        kind: Kind,
        name: &str,
        expected: Option<u64>,
        thread: &Thread,
    ) -> Result<bool, StoreError>;
    /// Deletes the record; whether a live one existed.
    async fn remove(&self, scope: &str, kind: Kind, name: &str) -> Result<bool, StoreError>;
    /// Live records by name, after `after`, at most `limit` (≤ [`MAX_LIST`]).
    async fn list(&self, scope: &str, kind: Kind, after: Option<&str>, limit: usize) -> Result<ThreadPage, StoreError>;
}

/// Thread records in the shared record store: the kind is the collection.
struct RecordThreads(Arc<dyn RecordStore>);

#[async_trait]
impl ThreadStore for RecordThreads {
    async fn load(&self, scope: &str, kind: Kind, name: &str) -> Result<Option<Versioned>, StoreError> {
        let Some(stored) = self.0.load(scope, kind.as_str(), name).await? else { return Ok(None) };
        Ok(Some(Versioned { version: stored.version, thread: records::decode(kind.as_str(), name, &stored)? }))
    }

    async fn save(
        &self,
        scope: &str,
        kind: Kind,
        name: &str,
        expected: Option<u64>,
        thread: &Thread,
    ) -> Result<bool, StoreError> {
        self.0.save(scope, kind.as_str(), name, expected, &records::encode(thread), thread.expires_at).await
    }

    async fn remove(&self, scope: &str, kind: Kind, name: &str) -> Result<bool, StoreError> {
        self.0.remove(scope, kind.as_str(), name).await
    }

    async fn list(&self, scope: &str, kind: Kind, after: Option<&str>, limit: usize) -> Result<ThreadPage, StoreError> {
        let page = self.0.list(scope, kind.as_str(), after, limit).await?;
        let threads = page
            .records
            .into_iter()
            .map(|(name, stored)| records::decode(kind.as_str(), &name, &stored).map(|thread| (name, thread)))
            .collect::<Result<_, _>>()?;
        Ok(ThreadPage { threads, has_more: page.has_more })
    }
}

/// Why a thread cannot take a message now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error(
        "This conversation is answering another message; send this one when that answer has finished \
         (retry after {retry_after_s} s at the latest)."
    )]
    Busy { retry_after_s: u64 },
    #[error("No {kind} found with id '{name}'.")]
    NotFound { kind: &'static str, name: String },
    #[error("This conversation's lease was lost while it was being answered (it took longer than its lease).")]
    LeaseLost,
    /// The message itself: the typed errors every API's body parsing reports.
    #[error(transparent)]
    Request(#[from] crate::json::typed::TypedError),
}

/// The conversation store: thread records over the turn store.
#[derive(Clone)]
pub struct Conversations {
    pub threads: Arc<dyn ThreadStore>,
    pub turns: Arc<dyn ResponseStore>,
    /// The Responses API's retention and history bound, shared.
    pub config: crate::config::ResponsesConfig,
    /// Where lease renewals and releases after a dropped answer run.
    pub tasks: crate::tasks::Tasks,
}

/// A message's hold on its thread: what the thread held when it was taken.
#[derive(Debug, Clone)]
pub struct Held {
    pub scope: String,
    pub kind: Kind,
    pub name: String,
    pub token: String,
    pub thread: Thread,
    /// Whether this message started the thread.
    pub created: bool,
}

/// What a finished message stores.
pub struct Answered {
    /// The turn's items: the new user messages, then the answer.
    pub items: Vec<Box<RawValue>>,
    /// How many of `items` are the user's.
    pub inputs: usize,
    /// The turn's record (`GET` shows it): small JSON, e.g. usage.
    pub meta: Box<RawValue>,
    /// A new summary, when the memory policy made one.
    pub summary: Option<Summary>,
    /// The agent used, kept as the thread's default.
    pub agent: String,
}

static LEASES: std::sync::LazyLock<crate::ids::Sequence> =
    std::sync::LazyLock::new(|| crate::ids::Sequence::new("lease"));
static TURNS: std::sync::LazyLock<crate::ids::Sequence> =
    std::sync::LazyLock::new(|| crate::ids::Sequence::new("turn"));

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Conversations {
    pub fn open(
        stores: &crate::store::Stores,
        turns: Arc<dyn ResponseStore>,
        config: &crate::config::ResponsesConfig,
        tasks: &crate::tasks::Tasks,
    ) -> Self {
        let threads: Arc<dyn ThreadStore> = Arc::new(RecordThreads(crate::records::open(stores)));
        Conversations { threads, turns, config: config.clone(), tasks: tasks.clone() }
    }

    fn expires_at(&self) -> i64 {
        self.config.expires_at(crate::store::now())
    }

    /// Takes the thread's lease for one message, creating the thread when
    /// the name is new (with `agent`). `Busy` while another message holds it.
    pub async fn begin(
        &self,
        scope: &str,
        kind: Kind,
        name: &str,
        agent: Option<&str>,
    ) -> Result<Result<Held, ConversationError>, StoreError> {
        let token = LEASES.next();
        // A compare-and-set lost to another message's is read again: a few
        // rounds at most, as each loser then sees the winner's lease.
        for _ in 0..4 {
            let now = now_ms();
            let found = self.threads.load(scope, kind, name).await?;
            let (expected, mut thread, created) = match found {
                Some(v) => (Some(v.version), v.thread, false),
                None => {
                    let at = now / 1000;
                    let fresh = Thread {
                        agent: agent.map(str::to_owned),
                        head: None,
                        turns: 0,
                        summary: None,
                        lease: None,
                        created_at: at,
                        updated_at: at,
                        expires_at: self.expires_at(),
                    };
                    (None, fresh, true)
                }
            };
            if let Some(lease) = thread.lease.as_ref().filter(|l| l.until_ms > now) {
                let retry_after_s = ((lease.until_ms - now) as u64).div_ceil(1000).max(1);
                return Ok(Err(ConversationError::Busy { retry_after_s }));
            }
            thread.lease = Some(Lease { token: token.clone(), until_ms: now + LEASE.as_millis() as i64 });
            if self.threads.save(scope, kind, name, expected, &thread).await? {
                let held = Held { scope: scope.into(), kind, name: name.into(), token, thread, created };
                return Ok(Ok(held));
            }
        }
        Ok(Err(ConversationError::Busy { retry_after_s: 1 }))
    }

    /// Applies `change` to the thread if `held` still holds it; whether it did.
    async fn update(&self, held: &Held, change: impl Fn(&mut Thread)) -> Result<bool, StoreError> {
        for _ in 0..4 {
            let Some(v) = self.threads.load(&held.scope, held.kind, &held.name).await? else { return Ok(false) };
            if v.thread.lease.as_ref().map(|l| l.token.as_str()) != Some(held.token.as_str()) {
                return Ok(false);
            }
            let mut thread = v.thread;
            change(&mut thread);
            if self.threads.save(&held.scope, held.kind, &held.name, Some(v.version), &thread).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Extends the lease while the answer runs; whether it is still held.
    pub async fn renew(&self, held: &Held) -> Result<bool, StoreError> {
        let until_ms = now_ms() + LEASE.as_millis() as i64;
        self.update(held, |t| {
            if let Some(lease) = t.lease.as_mut() {
                lease.until_ms = until_ms;
            }
        })
        .await
    }

    /// Lets the thread go without a turn (the message was refused or failed).
    /// A thread this message created and never answered is removed again.
    pub async fn release(&self, held: &Held) -> Result<(), StoreError> {
        if held.created && held.thread.head.is_none() {
            let v = self.threads.load(&held.scope, held.kind, &held.name).await?;
            if let Some(v) = v.filter(|v| v.thread.lease.as_ref().is_some_and(|l| l.token == held.token)) {
                if v.thread.head.is_none() {
                    let _ = self.threads.remove(&held.scope, held.kind, &held.name).await?;
                    return Ok(());
                }
            }
        }
        self.update(held, |t| t.lease = None).await.map(|_| ())
    }

    /// Stores the answered turn and moves the thread's head to it, letting
    /// the lease go. `LeaseLost` when another message took the thread
    /// meanwhile (the turn is then unreachable and expires).
    pub async fn commit(
        &self,
        held: &Held,
        answered: Answered,
    ) -> Result<Result<String, ConversationError>, StoreError> {
        let id = TURNS.next();
        let mut items = answered.items;
        let output_items = items.split_off(answered.inputs.min(items.len()));
        let expires_at = self.expires_at();
        let turn = crate::responses::StoredResponse {
            id: id.clone(),
            scope: turn_scope(held.kind, &held.scope),
            created_at: crate::store::now(),
            previous_response_id: held.thread.head.clone(),
            response: answered.meta,
            input_items: items,
            output_items,
            expires_at,
        };
        self.turns.put(&turn).await?;
        let (summary, agent, updated_at) = (answered.summary, answered.agent, crate::store::now());
        let moved = self
            .update(held, |t| {
                t.head = Some(id.clone());
                t.turns += 1;
                t.lease = None;
                t.updated_at = updated_at;
                t.expires_at = expires_at;
                t.agent = Some(agent.clone());
                if let Some(s) = &summary {
                    t.summary = Some(s.clone());
                }
            })
            .await?;
        Ok(if moved { Ok(id) } else { Err(ConversationError::LeaseLost) })
    }

    pub async fn get(&self, scope: &str, kind: Kind, name: &str) -> Result<Option<Thread>, StoreError> {
        Ok(self.threads.load(scope, kind, name).await?.map(|v| v.thread))
    }

    /// The thread's stored messages, oldest first (at most
    /// `responses.max_history_items`).
    pub async fn messages(&self, scope: &str, kind: Kind, thread: &Thread) -> Result<Vec<Box<RawValue>>, StoreError> {
        let Some(head) = &thread.head else { return Ok(Vec::new()) };
        let max = self.config.max_history_items;
        Ok(self.turns.history(&turn_scope(kind, scope), head, max).await?.unwrap_or_default())
    }

    /// Deletes the thread and its turns; whether it existed.
    pub async fn delete(&self, scope: &str, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let Some(v) = self.threads.load(scope, kind, name).await? else { return Ok(false) };
        let existed = self.threads.remove(scope, kind, name).await?;
        let turns = turn_scope(kind, scope);
        let mut next = v.thread.head;
        for _ in 0..crate::responses::MAX_HOPS {
            let Some(id) = next.take() else { break };
            let Some(turn) = self.turns.get(&turns, &id).await? else { break };
            self.turns.delete(&turns, &id).await?;
            next = turn.previous_response_id;
        }
        Ok(existed)
    }

    pub async fn list(
        &self,
        scope: &str,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ThreadPage, StoreError> {
        self.threads.list(scope, kind, after, limit.clamp(1, MAX_LIST)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["a", "550e8400-e29b-41d4-a716-446655440000", "chat_abc.1-x", &"x".repeat(MAX_NAME)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a:b", "ü", "a{b}", &"x".repeat(MAX_NAME + 1)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn threads_round_trip_without_empty_fields() {
        let t = Thread {
            agent: None,
            head: None,
            turns: 0,
            summary: None,
            lease: None,
            created_at: 1,
            updated_at: 1,
            expires_at: 2,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"turns":0,"created_at":1,"updated_at":1,"expires_at":2}"#);
        assert_eq!(serde_json::from_str::<Thread>(&json).unwrap(), t);
    }
}
