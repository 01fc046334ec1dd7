//! Stored responses of the OpenAI Responses API: what `store: true` (the
//! default, as at OpenAI) keeps, what `previous_response_id` continues from,
//! and what `GET`/`DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items` read. The HTTP routes and the
//! translation live elsewhere; this is the storage they call.
//!
//! **A response is one turn** ([`StoredResponse`]): the Response object, the
//! turn's input items and output items (raw JSON, each with an `"id"`), and a
//! link to the turn it continues. A conversation is a chain of turns linked
//! newest to oldest; [`ResponseStore::history`] walks it back in one call and
//! returns the items to send upstream, oldest first, bounded by
//! `responses.max_history_items` (the caller trims further to the agent's
//! context budget) and by [`MAX_HOPS`] turns. [`ResponseStore::items`] finds
//! items by id instead, in any live turn of the scope (inputs and outputs
//! alike, the newest of an id stored twice, at most [`MAX_ITEM_IDS`] ids a
//! call): what an `item_reference` outside that history names.
//!
//! **Per scope.** Every call takes the scope — the caller's workspace, or
//! `static:<key name>` for a static config key — and sees only that scope's
//! responses: another workspace's id is absent (the route answers 404), and a
//! link never leads out of its scope.
//!
//! **Retention.** Each response carries its `expires_at` (created +
//! `responses.retention_days`). From then on it is absent from every call; the
//! embedded backend deletes it when [`run_pruner`] next runs, Redis by its own
//! key expiry. Each turn expires on its own, oldest first, so a long chain's
//! history loses its oldest turns as they expire: the chain ends at the first
//! turn that is missing (expired, pruned or deleted).
//!
//! **Backends** ([`embedded`], [`redis`]), chosen by `[store]`: a turn is
//! written whole in one transaction or one script, and every read is one
//! round trip. On Redis every replica reads and writes the same keys, so any
//! replica continues any response: no affinity between a client and a
//! replica is needed.
//!
//! **When the backend is down** every call fails with
//! [`StoreError::Unavailable`](crate::store::StoreError::Unavailable) — on
//! Redis within the store's command timeout (`store.command_timeout_ms`),
//! never hanging — and the caller answers 503 `store_unavailable`
//! (fail-closed: a continuation without its history would be answered as a
//! different conversation, and a `store: true` response that cannot be
//! stored could not be fetched or continued). Nothing is retried or buffered
//! here; the Redis connection reconnects by itself.
//!
//! **Towards one conversation store.** Sessions and chats are chains of turns
//! too; a later issue moves them onto this model (a turn keyed by its own id,
//! items as raw JSON in order, a link to the previous turn) rather than adding
//! a store per front door.

pub mod embedded;
pub mod redis;
pub mod store;

use http::StatusCode;

use crate::json::typed::TypedError;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub use store::{
    ItemsPage, ItemsQuery, Order, ResponseStore, StoredResponse, DEFAULT_PAGE, MAX_HOPS, MAX_ITEM_IDS, MAX_PAGE,
};

/// How often the composition root runs [`run_pruner`]'s pass.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Deletes expired responses every `every`, forever, logging what it did.
///
/// Not spawned here: the composition root must poll it beside the other
/// background loops — `runtime`'s control runtime, next to `credits::upkeep`
/// and `events::run`, dropped at shutdown (a pass cut short loses nothing) —
/// on the embedded backend, where nothing else deletes expired rows (they are
/// absent already, but take disk). On Redis it is not needed
/// ([`ResponseStore::prune`] does nothing there) and costs nothing.
pub async fn run_pruner(store: Arc<dyn ResponseStore>, every: Duration) -> Infallible {
    crate::tasks::every(every, "pruned expired stored responses", || store.prune(crate::store::now())).await
}

/// Why a stored response cannot be served, beyond bad input (the front
/// door's errors about this store; mapped to the error JSON in `error.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredError {
    #[error("No response found with id '{0}'.")]
    NotFound(String),
    #[error("Previous response with id '{0}' not found.")]
    UnknownPrevious(String),
}

/// The Responses API's storage as the handlers see it: the store of the
/// configured backend and the retention settings.
#[derive(Clone)]
pub struct Responses {
    pub store: Arc<dyn ResponseStore>,
    pub config: crate::config::ResponsesConfig,
}

impl Responses {
    /// The stored responses of `stores`' backend.
    pub fn open(stores: &crate::store::Stores, config: &crate::config::ResponsesConfig) -> Responses {
        let store: Arc<dyn ResponseStore> = match &stores.backend {
            crate::store::Backend::Embedded(s) => Arc::new(embedded::EmbeddedResponses::new(s.clone())),
            crate::store::Backend::Redis(s) => Arc::new(redis::RedisResponses::new(s.clone())),
        };
        Responses { store, config: config.clone() }
    }
}

/// Why a Responses request could not be translated, or a chat answer could
/// not be read. Request errors are 400s with the offending field's path in
/// `param` (`input[2].content[0].type`), as OpenAI reports them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponsesError {
    /// The request: the same typed errors every API's body parsing reports.
    #[error(transparent)]
    Request(#[from] TypedError),
    /// The upstream's chat answer is not what the chat API promises.
    #[error("The upstream sent an answer that could not be read: {0}")]
    Upstream(String),
}

impl ResponsesError {
    pub(crate) fn missing(param: impl Into<String>) -> Self {
        TypedError::Missing { param: param.into() }.into()
    }

    pub(crate) fn invalid(param: impl Into<String>, reason: impl Into<String>) -> Self {
        TypedError::InvalidValue { param: param.into(), reason: reason.into() }.into()
    }

    pub(crate) fn invalid_type(param: impl Into<String>, expected: impl Into<String>) -> Self {
        TypedError::InvalidType { param: param.into(), expected: expected.into() }.into()
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ResponsesError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ResponsesError::Request(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The OpenAI error `code`; the upstream's garbage is the gateway's
    /// `upstream_invalid_response`, as for chat completions.
    pub fn code(&self) -> &'static str {
        match self {
            ResponsesError::Request(e) => e.code(),
            ResponsesError::Upstream(_) => "upstream_invalid_response",
        }
    }

    /// The OpenAI error `type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            ResponsesError::Upstream(_) => "upstream_error",
            ResponsesError::Request(_) => "invalid_request_error",
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            ResponsesError::Request(e) => e.param(),
            ResponsesError::Upstream(_) => None,
        }
    }
}
