//! The timelines in the embedded SQLite file: table `timeline` (line,
//! member, at_ms). An advance is one transaction on the store's single
//! thread: an `UPDATE ... WHERE at_ms = ?` and, when it matched, the run's row.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::params;

use super::{Line, Timeline};
use crate::store::embedded::{sql, EmbeddedStore};
use crate::store::StoreError;

pub struct EmbeddedTimeline {
    store: Arc<EmbeddedStore>,
}

impl EmbeddedTimeline {
    pub fn new(store: Arc<EmbeddedStore>) -> Self {
        EmbeddedTimeline { store }
    }
}

fn put(conn: &rusqlite::Connection, line: Line, member: &str, at: Option<i64>) -> Result<(), StoreError> {
    match at {
        Some(at) => conn
            .prepare_cached("INSERT OR REPLACE INTO timeline (line, member, at_ms) VALUES (?1, ?2, ?3)")
            .map_err(sql)?
            .execute(params![line.as_str(), member, at]),
        None => conn
            .prepare_cached("DELETE FROM timeline WHERE line = ?1 AND member = ?2")
            .map_err(sql)?
            .execute(params![line.as_str(), member]),
    }
    .map_err(sql)?;
    Ok(())
}

#[async_trait]
impl Timeline for EmbeddedTimeline {
    async fn put(&self, line: Line, member: &str, at: Option<i64>) -> Result<(), StoreError> {
        let member = member.to_owned();
        self.store.call(move |conn| put(conn, line, &member, at)).await
    }

    async fn upto(&self, line: Line, upto: i64, limit: usize) -> Result<Vec<(String, i64)>, StoreError> {
        self.store
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT member, at_ms FROM timeline WHERE line = ?1 AND at_ms <= ?2 \
                         ORDER BY at_ms, member LIMIT ?3",
                    )
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![line.as_str(), upto, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sql)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sql)
            })
            .await
    }

    async fn advance(
        &self,
        line: Line,
        member: &str,
        expected: i64,
        next: Option<i64>,
        run: Option<(&str, i64)>,
    ) -> Result<bool, StoreError> {
        let member = member.to_owned();
        let run = run.map(|(m, at)| (m.to_owned(), at));
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let moved = match next {
                    Some(next) => tx
                        .prepare_cached("UPDATE timeline SET at_ms = ?4 WHERE line = ?1 AND member = ?2 AND at_ms = ?3")
                        .map_err(sql)?
                        .execute(params![line.as_str(), member, expected, next]),
                    None => tx
                        .prepare_cached("DELETE FROM timeline WHERE line = ?1 AND member = ?2 AND at_ms = ?3")
                        .map_err(sql)?
                        .execute(params![line.as_str(), member, expected]),
                }
                .map_err(sql)?
                    == 1;
                if let (true, Some((run, at))) = (moved, run) {
                    put(&tx, Line::Runs, &run, Some(at))?;
                }
                tx.commit().map_err(sql)?;
                Ok(moved)
            })
            .await
    }
}
