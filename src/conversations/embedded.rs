//! Thread records in the embedded SQLite file (table `threads`, see the
//! migrations in `store::embedded`): one row per (scope, kind, name), the
//! record as JSON beside its version. A compare-and-set is one `UPDATE ...
//! WHERE version = ?` (or an `INSERT` that finds no live row) on the store's
//! single thread, so it is exact. Expired rows are absent to every call and
//! replaced on the next write; the Responses pruner's retention bounds them.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{Kind, Thread, ThreadPage, ThreadStore, Versioned};
use crate::store::embedded::{sql, EmbeddedStore};
use crate::store::{now, StoreError};

pub struct EmbeddedThreads {
    store: Arc<EmbeddedStore>,
}

impl EmbeddedThreads {
    pub fn new(store: Arc<EmbeddedStore>) -> Self {
        EmbeddedThreads { store }
    }
}

fn decode(name: &str, version: i64, record: &str) -> Result<Versioned, StoreError> {
    let thread: Thread =
        serde_json::from_str(record).map_err(|e| StoreError::Corrupt(format!("thread {name}: {e}")))?;
    Ok(Versioned { version: version as u64, thread })
}

fn encode(thread: &Thread) -> String {
    serde_json::to_string(thread).expect("a thread serialises")
}

#[async_trait]
impl ThreadStore for EmbeddedThreads {
    async fn load(&self, scope: &str, kind: Kind, name: &str) -> Result<Option<Versioned>, StoreError> {
        let (scope, name) = (scope.to_owned(), name.to_owned());
        self.store
            .call(move |conn| {
                let row: Option<(i64, String)> = conn
                    .prepare_cached(
                        "SELECT version, record FROM threads WHERE scope = ?1 AND kind = ?2 AND name = ?3 \
                         AND expires_at > ?4",
                    )
                    .map_err(sql)?
                    .query_row(params![scope, kind.as_str(), name, now()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(sql)?;
                row.map(|(version, record)| decode(&name, version, &record)).transpose()
            })
            .await
    }

    async fn save(
        &self,
        scope: &str,
        kind: Kind,
        name: &str,
        expected: Option<u64>,
        thread: &Thread,
    ) -> Result<bool, StoreError> {
        let (scope, name, record, expires_at) = (scope.to_owned(), name.to_owned(), encode(thread), thread.expires_at);
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let now = now();
                let written = match expected {
                    Some(version) => tx
                        .prepare_cached(
                            "UPDATE threads SET version = version + 1, record = ?5, expires_at = ?6 \
                             WHERE scope = ?1 AND kind = ?2 AND name = ?3 AND version = ?4 AND expires_at > ?7",
                        )
                        .map_err(sql)?
                        .execute(params![scope, kind.as_str(), name, version as i64, record, expires_at, now])
                        .map_err(sql)?,
                    None => {
                        // An expired row is gone: its name is free again.
                        tx.prepare_cached(
                            "DELETE FROM threads WHERE scope = ?1 AND kind = ?2 AND name = ?3 AND expires_at <= ?4",
                        )
                        .map_err(sql)?
                        .execute(params![scope, kind.as_str(), name, now])
                        .map_err(sql)?;
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO threads (scope, kind, name, version, record, expires_at) \
                             VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                        )
                        .map_err(sql)?
                        .execute(params![scope, kind.as_str(), name, record, expires_at])
                        .map_err(sql)?
                    }
                };
                tx.commit().map_err(sql)?;
                Ok(written == 1)
            })
            .await
    }

    async fn remove(&self, scope: &str, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let (scope, name) = (scope.to_owned(), name.to_owned());
        self.store
            .call(move |conn| {
                let expires_at: Option<i64> = conn
                    .prepare_cached(
                        "DELETE FROM threads WHERE scope = ?1 AND kind = ?2 AND name = ?3 RETURNING expires_at",
                    )
                    .map_err(sql)?
                    .query_row(params![scope, kind.as_str(), name], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                Ok(expires_at.is_some_and(|at| at > now()))
            })
            .await
    }

    async fn list(&self, scope: &str, kind: Kind, after: Option<&str>, limit: usize) -> Result<ThreadPage, StoreError> {
        let (scope, after) = (scope.to_owned(), after.unwrap_or("").to_owned());
        self.store
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT name, version, record FROM threads WHERE scope = ?1 AND kind = ?2 AND name > ?3 \
                         AND expires_at > ?4 ORDER BY name LIMIT ?5",
                    )
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![scope, kind.as_str(), after, now(), limit as i64 + 1], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                    })
                    .map_err(sql)?;
                let mut threads = Vec::new();
                for row in rows {
                    let (name, version, record) = row.map_err(sql)?;
                    let thread = decode(&name, version, &record)?.thread;
                    threads.push((name, thread));
                }
                let has_more = threads.len() > limit;
                threads.truncate(limit);
                Ok(ThreadPage { threads, has_more })
            })
            .await
    }
}
