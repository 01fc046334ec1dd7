//! Records in the embedded SQLite file (table `records`, see the migrations
//! in `store::embedded`): one row per (scope, collection, id), the JSON
//! beside its version. A compare-and-set is one `UPDATE ... WHERE version = ?`
//! (or an `INSERT` that finds no live row) on the store's single thread, so
//! it is exact. Expired rows are absent to every call and replaced on the
//! next write.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{Page, RecordStore, Stored};
use crate::store::embedded::{sql, EmbeddedStore};
use crate::store::{now, StoreError};

pub struct EmbeddedRecords {
    store: Arc<EmbeddedStore>,
}

impl EmbeddedRecords {
    pub fn new(store: Arc<EmbeddedStore>) -> Self {
        EmbeddedRecords { store }
    }
}

#[async_trait]
impl RecordStore for EmbeddedRecords {
    async fn load(&self, scope: &str, collection: &str, id: &str) -> Result<Option<Stored>, StoreError> {
        let (scope, collection, id) = (scope.to_owned(), collection.to_owned(), id.to_owned());
        self.store
            .call(move |conn| {
                conn.prepare_cached(
                    "SELECT version, record FROM records WHERE scope = ?1 AND collection = ?2 AND id = ?3 \
                     AND expires_at > ?4",
                )
                .map_err(sql)?
                .query_row(params![scope, collection, id, now()], |r| {
                    Ok(Stored { version: r.get::<_, i64>(0)? as u64, json: r.get(1)? })
                })
                .optional()
                .map_err(sql)
            })
            .await
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
        let (scope, collection, id, json) = (scope.to_owned(), collection.to_owned(), id.to_owned(), json.to_owned());
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let now = now();
                let written = match expected {
                    Some(version) => tx
                        .prepare_cached(
                            "UPDATE records SET version = version + 1, record = ?5, expires_at = ?6 \
                             WHERE scope = ?1 AND collection = ?2 AND id = ?3 AND version = ?4 AND expires_at > ?7",
                        )
                        .map_err(sql)?
                        .execute(params![scope, collection, id, version as i64, json, expires_at, now])
                        .map_err(sql)?,
                    None => {
                        // An expired row is gone: its id is free again.
                        tx.prepare_cached(
                            "DELETE FROM records WHERE scope = ?1 AND collection = ?2 AND id = ?3 AND expires_at <= ?4",
                        )
                        .map_err(sql)?
                        .execute(params![scope, collection, id, now])
                        .map_err(sql)?;
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO records (scope, collection, id, version, record, expires_at) \
                             VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                        )
                        .map_err(sql)?
                        .execute(params![scope, collection, id, json, expires_at])
                        .map_err(sql)?
                    }
                };
                tx.commit().map_err(sql)?;
                Ok(written == 1)
            })
            .await
    }

    async fn remove(&self, scope: &str, collection: &str, id: &str) -> Result<bool, StoreError> {
        let (scope, collection, id) = (scope.to_owned(), collection.to_owned(), id.to_owned());
        self.store
            .call(move |conn| {
                let expires_at: Option<i64> = conn
                    .prepare_cached(
                        "DELETE FROM records WHERE scope = ?1 AND collection = ?2 AND id = ?3 RETURNING expires_at",
                    )
                    .map_err(sql)?
                    .query_row(params![scope, collection, id], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                Ok(expires_at.is_some_and(|at| at > now()))
            })
            .await
    }

    async fn list(&self, scope: &str, collection: &str, after: Option<&str>, limit: usize) -> Result<Page, StoreError> {
        let (scope, collection, after) = (scope.to_owned(), collection.to_owned(), after.unwrap_or("").to_owned());
        self.store
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, version, record FROM records WHERE scope = ?1 AND collection = ?2 AND id > ?3 \
                         AND expires_at > ?4 ORDER BY id LIMIT ?5",
                    )
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![scope, collection, after, now(), limit as i64 + 1], |r| {
                        Ok((r.get::<_, String>(0)?, Stored { version: r.get::<_, i64>(1)? as u64, json: r.get(2)? }))
                    })
                    .map_err(sql)?;
                let mut records = rows.collect::<Result<Vec<_>, _>>().map_err(sql)?;
                let has_more = records.len() > limit;
                records.truncate(limit);
                Ok(Page { records, has_more })
            })
            .await
    }

    async fn prune(&self, now: i64) -> Result<u64, StoreError> {
        // In batches, so the store's one thread is never held for long.
        const BATCH: usize = 1000;
        let mut deleted = 0;
        loop {
            let n = self
                .store
                .call(move |conn| {
                    conn.prepare_cached(
                        "DELETE FROM records WHERE rowid IN \
                         (SELECT rowid FROM records WHERE expires_at <= ?1 LIMIT ?2)",
                    )
                    .map_err(sql)?
                    .execute(params![now, BATCH as i64])
                    .map_err(sql)
                })
                .await?;
            deleted += n as u64;
            if n < BATCH {
                return Ok(deleted);
            }
        }
    }
}
