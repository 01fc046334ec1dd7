//! Thread records on Redis, shared by every replica.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:thread:{T}:N` | hash | `v` (the version), `record` (the thread JSON); expires at the record's `expires_at` |
//! | `P:threads:{T}` | sorted set | the scope's thread names, score 0 (name order, for lists) |
//!
//! `T` is the thread's turn scope ([`turn_scope`]: kind and scope) in key
//! form — the hash tag, so a scope's threads of one kind share a Cluster
//! slot — and `N` the name, which [`check_name`](super::check_name) keeps to
//! characters that are their own key form. A save is `save.lua` (one
//! compare-and-set), a load one `HMGET`, a removal one pipeline, a page
//! `list.lua`, which also drops index entries of records Redis expired.

use std::sync::Arc;

use ::redis::{Pipeline, Script};
use async_trait::async_trait;

use super::{turn_scope, Kind, Thread, ThreadPage, ThreadStore, Versioned};
use crate::responses::redis::key_part;
use crate::store::redis::RedisStore;
use crate::store::StoreError;

/// See `src/conversations/redis/save.lua` (version 1).
const SAVE: &str = include_str!("redis/save.lua");
/// See `src/conversations/redis/list.lua` (version 1).
const LIST: &str = include_str!("redis/list.lua");

pub struct RedisThreads {
    store: Arc<RedisStore>,
    save: Script,
    list: Script,
}

impl RedisThreads {
    pub fn new(store: Arc<RedisStore>) -> Self {
        RedisThreads { store, save: Script::new(SAVE), list: Script::new(LIST) }
    }

    /// `P:thread:{T}:`, the start of every record name of one scope and kind.
    fn prefix(&self, scope: &str, kind: Kind) -> String {
        format!("{}:thread:{{{}}}:", self.store.prefix(), key_part(&turn_scope(kind, scope)))
    }

    fn index(&self, scope: &str, kind: Kind) -> String {
        format!("{}:threads:{{{}}}", self.store.prefix(), key_part(&turn_scope(kind, scope)))
    }

    fn record(&self, scope: &str, kind: Kind, name: &str) -> String {
        format!("{}{}", self.prefix(scope, kind), key_part(name))
    }
}

fn decode(name: &str, version: &str, record: &str) -> Result<Versioned, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("thread {name}: {e}"));
    let version = version.parse().map_err(|_| corrupt(format!("version {version:?}")))?;
    let thread: Thread = serde_json::from_str(record).map_err(|e| corrupt(e.to_string()))?;
    Ok(Versioned { version, thread })
}

#[async_trait]
impl ThreadStore for RedisThreads {
    async fn load(&self, scope: &str, kind: Kind, name: &str) -> Result<Option<Versioned>, StoreError> {
        let cmd = ::redis::cmd("HMGET").arg(self.record(scope, kind, name)).arg("v").arg("record").to_owned();
        let (version, record): (Option<String>, Option<String>) = self.store.query(cmd).await?;
        match (version, record) {
            (Some(version), Some(record)) => decode(name, &version, &record).map(Some),
            _ => Ok(None),
        }
    }

    async fn save(
        &self,
        scope: &str,
        kind: Kind,
        name: &str,
        expected: Option<u64>,
        thread: &Thread,
    ) -> Result<bool, StoreError> {
        let keys = [self.record(scope, kind, name), self.index(scope, kind)];
        let record = serde_json::to_string(thread).expect("a thread serialises");
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        let args = [expected, record, thread.expires_at.to_string(), name.to_owned()];
        Ok(self.store.eval::<i64>(&self.save, &keys, &args).await? == 1)
    }

    async fn remove(&self, scope: &str, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let mut pipe = Pipeline::new();
        pipe.cmd("DEL").arg(self.record(scope, kind, name));
        pipe.cmd("ZREM").arg(self.index(scope, kind)).arg(name).ignore();
        let (deleted,): (i64,) = self.store.pipeline(pipe).await?;
        Ok(deleted == 1)
    }

    async fn list(&self, scope: &str, kind: Kind, after: Option<&str>, limit: usize) -> Result<ThreadPage, StoreError> {
        let keys = [self.index(scope, kind)];
        let args = [self.prefix(scope, kind), after.unwrap_or("").to_owned(), (limit + 1).to_string()];
        let flat: Vec<String> = self.store.eval(&self.list, &keys, &args).await?;
        let mut threads = Vec::with_capacity(flat.len() / 3);
        for row in flat.chunks_exact(3) {
            threads.push((row[0].clone(), decode(&row[0], &row[1], &row[2])?.thread));
        }
        let has_more = threads.len() > limit;
        threads.truncate(limit);
        Ok(ThreadPage { threads, has_more })
    }
}
