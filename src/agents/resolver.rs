//! Resolving a model id for a caller: the config's catalog first, then the
//! caller's workspace agents through a cache.
//!
//! The config's models and agents are a `HashMap` lookup with no store
//! round trip: the hot path never waits on the store for them. Only an id
//! the config does not know is looked up among the caller's workspace's
//! agents (never another workspace's: the cache and the store are keyed by
//! workspace), through a moka cache whose entries live
//! `store.key_cache_ttl` — the same bound as keys, so a change made on one
//! replica is in force on every replica within it. Answers that an id is
//! *not* an agent are cached too, so a client sending an unknown model does
//! not cost a store round trip per request. This replica's own writes
//! invalidate its entries at once ([`Agents::forget`]).
//!
//! A store failure while resolving an id the config does not know is an
//! error (503 `store_unavailable`), not a 404: the agent may well exist.

use std::sync::Arc;
use std::time::Duration;

use super::store::{AgentRecord, AgentStore};
use super::{Catalog, CatalogError, Target};
use crate::auth::Principal;
use crate::store::StoreError;

/// Workspace agents and defaults kept per replica (each entry is small).
const CACHE_CAPACITY: u64 = 10_000;

/// Why a model id did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The agent store could not answer for an id the config does not know.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The catalog and the workspace agents: what every front door resolves
/// model ids through.
pub struct Agents {
    /// Swapped whole by a config reload; a request keeps the targets it
    /// resolved.
    catalog: arc_swap::ArcSwap<Catalog>,
    store: Arc<dyn AgentStore>,
    /// `(workspace, id)` → the agent's target, or `None` when the workspace
    /// has no such agent. moka: concurrent, bounded, with a TTL and
    /// coalesced misses (one store read however many requests wait).
    targets: moka::future::Cache<(Arc<str>, String), Option<Arc<Target>>>,
    /// Workspace → its default agent id, cached the same way.
    defaults: moka::future::Cache<Arc<str>, Option<String>>,
}

impl Agents {
    /// `ttl` is `store.key_cache_ttl`: how long another replica's change may
    /// take to be seen here.
    pub fn new(catalog: Catalog, store: Arc<dyn AgentStore>, ttl: Duration) -> Agents {
        let targets = moka::future::Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(ttl).build();
        let defaults = moka::future::Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(ttl).build();
        Agents { catalog: arc_swap::ArcSwap::from_pointee(catalog), store, targets, defaults }
    }

    /// The config's models and agents, as in force now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// A reloaded config's catalog. Workspace agents' cached targets were
    /// built on the old providers: they are built again on next use.
    pub fn replace_catalog(&self, catalog: Catalog) {
        self.catalog.store(Arc::new(catalog));
        self.targets.invalidate_all();
    }

    /// The workspace agent store (for the management API).
    pub fn store(&self) -> &Arc<dyn AgentStore> {
        &self.store
    }

    /// Resolves `model` for a caller: a config model or agent, else an agent
    /// of the caller's workspace; the caller's allow-list applies to both.
    pub async fn resolve(&self, model: &str, principal: &Principal) -> Result<Arc<Target>, ResolveError> {
        match self.catalog.load().resolve(model, principal) {
            Err(CatalogError::NotFound(_)) => {}
            found => return Ok(found?),
        }
        let Some(ws) = &principal.workspace else {
            return Err(CatalogError::NotFound(model.into()).into());
        };
        let target = self.workspace_target(ws, model).await?.ok_or_else(|| CatalogError::NotFound(model.into()))?;
        if !principal.may_use(model) {
            return Err(CatalogError::NotAllowed(model.into()).into());
        }
        Ok(target)
    }

    /// Whether `id` resolves inside `workspace` (config or workspace agent),
    /// regardless of any key's allow-list.
    pub async fn exists_in(&self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        if self.catalog.load().get(id).is_some() {
            return Ok(true);
        }
        Ok(self.workspace_target(&Arc::from(workspace), id).await?.is_some())
    }

    /// The workspace agent `id` of `ws`, through the cache.
    async fn workspace_target(&self, ws: &Arc<str>, id: &str) -> Result<Option<Arc<Target>>, StoreError> {
        let load = async {
            let record = self.store.get(ws, id).await?;
            Ok::<_, StoreError>(record.and_then(|r| self.target_of(&r)))
        };
        self.targets.try_get_with((ws.clone(), id.to_owned()), load).await.map_err(|e| (*e).clone())
    }

    /// The target of a stored agent; `None` (and a warning) when its
    /// provider has left the config since it was stored.
    pub fn target_of(&self, record: &AgentRecord) -> Option<Arc<Target>> {
        let target = self.catalog.load().build(&record.spec());
        if target.is_none() {
            tracing::warn!(
                workspace = %record.workspace, agent = %record.id, provider = %record.provider,
                "a workspace agent names a provider the config no longer has; it does not resolve"
            );
        }
        target
    }

    /// The agent ids of the caller's workspace it may use, by id, for
    /// `/v1/models` (after the config's). Read from the store, not the cache:
    /// a list is not on the hot path, and a fresh one shows a change at once.
    pub async fn workspace_ids(&self, principal: &Principal) -> Result<Vec<String>, StoreError> {
        let Some(ws) = &principal.workspace else {
            return Ok(Vec::new());
        };
        let ids = self.store.ids(ws).await?;
        let catalog = self.catalog.load();
        Ok(ids.into_iter().filter(|id| catalog.get(id).is_none() && principal.may_use(id)).collect())
    }

    /// The workspace's default agent id (what the sessions front door uses
    /// when a message names none), cached like agents.
    pub async fn default_for(&self, workspace: &str) -> Result<Option<String>, StoreError> {
        let ws: Arc<str> = Arc::from(workspace);
        let load = async { self.store.default_agent(workspace).await };
        self.defaults.try_get_with(ws, load).await.map_err(|e| (*e).clone())
    }

    /// Drops this replica's cached answer for agent `id` of `workspace`
    /// (after it created, changed or deleted it).
    pub async fn forget(&self, workspace: &str, id: &str) {
        self.targets.invalidate(&(Arc::from(workspace), id.to_owned())).await;
    }

    /// Drops this replica's cached default agent of `workspace`.
    pub async fn forget_default(&self, workspace: &str) {
        self.defaults.invalidate(workspace).await;
    }
}
