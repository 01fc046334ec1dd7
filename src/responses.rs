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
//! context budget) and by [`MAX_HOPS`] turns.
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

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub use store::{ItemsPage, ItemsQuery, Order, ResponseStore, StoredResponse, DEFAULT_PAGE, MAX_HOPS, MAX_PAGE};

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
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.prune(crate::store::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned expired stored responses"),
            Err(e) => tracing::warn!(error = %e, "pruning stored responses failed; will retry"),
        }
    }
}

/// Why a stored response cannot be served, beyond bad input (the front
/// door's errors about this store; mapped to the error JSON in `error.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredError {
    #[error("No response found with id '{0}'.")]
    NotFound(String),
    #[error("Previous response with id '{0}' not found.")]
    UnknownPrevious(String),
    #[error("This gateway has no store, so responses cannot be stored or continued; send `store: false`.")]
    NoStore,
}
