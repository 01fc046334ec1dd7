//! Versioned JSON records by (scope, collection, id): the one document store
//! under every subsystem whose state is "a record per id, listed by id,
//! changed by compare-and-set" — sessions and chats (their thread records),
//! schedules, tasks, notes and missions.
//!
//! Each subsystem keeps its rules and its types; this module keeps only the
//! four calls, written once per backend ([`embedded`], [`redis`]): a load, a
//! compare-and-set save, a removal and a page by id. A record expires on its
//! own (`expires_at`, Unix seconds): from then on it is absent to every call,
//! and its id is free again.
//!
//! Ids are the caller's; they are listed in byte order, so ids that begin
//! with their creation time ([`crate::ids::timed`]) list oldest first.

pub mod embedded;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::StoreError;

/// The most records one list call returns.
pub const MAX_LIST: usize = 100;

/// A record as stored: its JSON and the version its next save must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: u64,
    pub json: String,
}

/// One page of a collection, by id.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<(String, Stored)>,
    pub has_more: bool,
}

/// One backend's records. Every call is one round trip and fails with
/// [`StoreError::Unavailable`] when the backend cannot answer. `collection`
/// is one of the subsystems' constants; `id` keeps to `[A-Za-z0-9._-]`.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    async fn load(&self, scope: &str, collection: &str, id: &str) -> Result<Option<Stored>, StoreError>;
    /// Writes `json` if the stored version is `expected` (`None`: only if
    /// there is no live record); whether it was written. The new version is
    /// `expected + 1` (1 for a new record).
    async fn save(
        &self,
        scope: &str,
        collection: &str,
        id: &str,
        expected: Option<u64>,
        json: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes the record; whether a live one existed.
    async fn remove(&self, scope: &str, collection: &str, id: &str) -> Result<bool, StoreError>;
    /// Live records by id, after `after`, at most `limit` (≤ [`MAX_LIST`]).
    async fn list(&self, scope: &str, collection: &str, after: Option<&str>, limit: usize) -> Result<Page, StoreError>;
    /// Deletes records expired at `now` (Unix s); how many. The embedded
    /// file keeps expired rows (absent, but on disk) until this runs; Redis
    /// expires its own keys, so there it does nothing.
    async fn prune(&self, now: i64) -> Result<u64, StoreError>;
}

/// The record store of the configured backend.
pub fn open(stores: &crate::store::Stores) -> Arc<dyn RecordStore> {
    match &stores.backend {
        crate::store::Backend::Embedded(s) => Arc::new(embedded::EmbeddedRecords::new(s.clone())),
        crate::store::Backend::Redis(s) => Arc::new(redis::RedisRecords::new(s.clone())),
    }
}

/// Reads a record's JSON as `T`; unreadable JSON is [`StoreError::Corrupt`].
pub fn decode<T: DeserializeOwned>(collection: &str, id: &str, stored: &Stored) -> Result<T, StoreError> {
    serde_json::from_str(&stored.json).map_err(|e| StoreError::Corrupt(format!("{collection} {id}: {e}")))
}

/// A record's JSON.
pub fn encode<T: Serialize>(record: &T) -> String {
    serde_json::to_string(record).expect("a record serialises")
}
