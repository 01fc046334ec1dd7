//! Records on Redis, shared by every replica.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:F:{C:S}:I` | hash | `v` (the version), `record` (the JSON); expires at the record's `expires_at` |
//! | `P:Fs:{C:S}` | sorted set | the collection's ids in the scope, score 0 (id order, for lists) |
//!
//! `C:S` is the collection and the scope in key form — the hash tag, so a
//! scope's records of one collection share a Cluster slot — and `I` the id,
//! which callers keep to characters that are their own key form. `F` is the
//! key family: `thread` for sessions and chats (the names they had before
//! this store was shared, so their records stay readable), `rec` for the
//! rest. A save is `save.lua` (one compare-and-set), a load one `HMGET`, a
//! removal one pipeline, a page `list.lua`, which also drops index entries
//! of records Redis expired.

use std::sync::Arc;

use ::redis::{Pipeline, Script};
use async_trait::async_trait;

use super::{Page, RecordStore, Stored};
use crate::responses::redis::key_part;
use crate::store::redis::RedisStore;
use crate::store::StoreError;

/// See `src/records/redis/save.lua` (version 1).
const SAVE: &str = include_str!("redis/save.lua");
/// See `src/records/redis/list.lua` (version 1).
const LIST: &str = include_str!("redis/list.lua");

pub struct RedisRecords {
    store: Arc<RedisStore>,
    save: Script,
    list: Script,
}

/// The key family of a collection (see the module doc).
fn family(collection: &str) -> &'static str {
    match collection {
        "session" | "chat" => "thread",
        _ => "rec",
    }
}

impl RedisRecords {
    pub fn new(store: Arc<RedisStore>) -> Self {
        RedisRecords { store, save: Script::new(SAVE), list: Script::new(LIST) }
    }

    /// `P:F:{C:S}:`, the start of every record name of one scope and collection.
    fn prefix(&self, scope: &str, collection: &str) -> String {
        let tag = key_part(&format!("{collection}:{scope}")).into_owned();
        format!("{}:{}:{{{tag}}}:", self.store.prefix(), family(collection))
    }

    fn index(&self, scope: &str, collection: &str) -> String {
        let tag = key_part(&format!("{collection}:{scope}")).into_owned();
        format!("{}:{}s:{{{tag}}}", self.store.prefix(), family(collection))
    }

    fn record(&self, scope: &str, collection: &str, id: &str) -> String {
        format!("{}{}", self.prefix(scope, collection), key_part(id))
    }
}

fn stored(collection: &str, id: &str, version: &str, json: String) -> Result<Stored, StoreError> {
    let version =
        version.parse().map_err(|_| StoreError::Corrupt(format!("{collection} {id}: version {version:?}")))?;
    Ok(Stored { version, json })
}

#[async_trait]
impl RecordStore for RedisRecords {
    async fn load(&self, scope: &str, collection: &str, id: &str) -> Result<Option<Stored>, StoreError> {
        let cmd = ::redis::cmd("HMGET").arg(self.record(scope, collection, id)).arg("v").arg("record").to_owned();
        let (version, json): (Option<String>, Option<String>) = self.store.query(cmd).await?;
        match (version, json) {
            (Some(version), Some(json)) => stored(collection, id, &version, json).map(Some),
            _ => Ok(None),
        }
    }

    async fn save(
        &self,
        scope: &str,
        collection: &str,
        id: &str,
        expected: Option<u64>,
        json: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let keys = [self.record(scope, collection, id), self.index(scope, collection)];
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        let args = [expected, json.to_owned(), expires_at.to_string(), id.to_owned()];
        Ok(self.store.eval::<i64>(&self.save, &keys, &args).await? == 1)
    }

    async fn remove(&self, scope: &str, collection: &str, id: &str) -> Result<bool, StoreError> {
        let mut pipe = Pipeline::new();
        pipe.cmd("DEL").arg(self.record(scope, collection, id));
        pipe.cmd("ZREM").arg(self.index(scope, collection)).arg(id).ignore();
        let (deleted,): (i64,) = self.store.pipeline(pipe).await?;
        Ok(deleted == 1)
    }

    async fn list(&self, scope: &str, collection: &str, after: Option<&str>, limit: usize) -> Result<Page, StoreError> {
        let keys = [self.index(scope, collection)];
        let args = [self.prefix(scope, collection), after.unwrap_or("").to_owned(), (limit + 1).to_string()];
        let flat: Vec<String> = self.store.eval(&self.list, &keys, &args).await?;
        let mut records = Vec::with_capacity(flat.len() / 3);
        let mut rows = flat.into_iter();
        while let (Some(id), Some(version), Some(json)) = (rows.next(), rows.next(), rows.next()) {
            let stored = stored(collection, &id, &version, json)?;
            records.push((id, stored));
        }
        let has_more = records.len() > limit;
        records.truncate(limit);
        Ok(Page { records, has_more })
    }

    async fn prune(&self, _now: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
}
