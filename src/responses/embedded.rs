//! Stored responses in the embedded SQLite file (tables `responses` and
//! `response_items`, see the migrations in `store::embedded`).
//!
//! A turn is one row of `responses`, keyed by (scope, id); its items are rows
//! of `response_items` keyed by (scope, response id, position) — inputs
//! first, then outputs (`output` = 1) — and go with it (`ON DELETE CASCADE`).
//! Each call is one closure on the store's thread, so a page or a history is
//! read in one consistent step, and a chain walk (or a lookup of many items
//! by id) is one round trip for the caller however many rows it visits.
//! Items are found by id through the index on (scope, item_id); among
//! several with one id the newest row (highest rowid) is taken.
//!
//! Expired rows stay until [`prune`](ResponseStore::prune) deletes them;
//! every read filters on `expires_at > now` (the system clock, read on the
//! store's thread), so they are absent meanwhile.
//!
//! When the file is unusable (disk full, permissions) calls fail with
//! [`StoreError::Unavailable`], as every embedded store does.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::value::RawValue;

use super::store::{
    distinct_ids, item_ids, raw, ItemsPage, ItemsQuery, Order, ResponseStore, StoredResponse, MAX_HOPS,
};
use crate::store::embedded::{insert_error, sql, EmbeddedStore};
use crate::store::{now, StoreError};

/// Expired responses deleted per transaction: a large backlog is pruned in
/// steps, so requests queued behind the pruner on the store's thread wait
/// for one step, not for all of it.
const PRUNE_BATCH: usize = 500;

pub struct EmbeddedResponses {
    store: Arc<EmbeddedStore>,
}

impl EmbeddedResponses {
    pub fn new(store: Arc<EmbeddedStore>) -> EmbeddedResponses {
        EmbeddedResponses { store }
    }
}

/// The link of a live response: `Some(previous id or None)`, `None` when it
/// is missing or expired.
fn live_link(conn: &Connection, scope: &str, id: &str, now: i64) -> Result<Option<Option<String>>, StoreError> {
    conn.prepare_cached("SELECT previous_response_id FROM responses WHERE scope = ?1 AND id = ?2 AND expires_at > ?3")
        .map_err(sql)?
        .query_row(params![scope, id, now], |r| r.get(0))
        .optional()
        .map_err(sql)
}

fn insert(tx: &Transaction<'_>, r: &StoredResponse, ids: &[String], now: i64) -> Result<(), StoreError> {
    // An expired response is gone: its id is free again, as on Redis.
    tx.prepare_cached("DELETE FROM responses WHERE scope = ?1 AND id = ?2 AND expires_at <= ?3")
        .map_err(sql)?
        .execute(params![r.scope, r.id, now])
        .map_err(sql)?;
    tx.prepare_cached(
        "INSERT INTO responses (scope, id, created_at, previous_response_id, response, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(sql)?
    .execute(params![r.scope, r.id, r.created_at, r.previous_response_id, r.response.get(), r.expires_at])
    .map_err(insert_error(format!("response {}", r.id)))?;
    let mut item = tx
        .prepare_cached(
            "INSERT INTO response_items (scope, response_id, position, output, item_id, json) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql)?;
    let items = r.input_items.iter().map(|i| (false, i)).chain(r.output_items.iter().map(|i| (true, i)));
    for (position, ((output, json), id)) in items.zip(ids).enumerate() {
        item.execute(params![r.scope, r.id, position as i64, output, id, json.get()]).map_err(sql)?;
    }
    Ok(())
}

fn get(conn: &Connection, scope: &str, id: &str, now: i64) -> Result<Option<StoredResponse>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT created_at, previous_response_id, response, expires_at FROM responses \
             WHERE scope = ?1 AND id = ?2 AND expires_at > ?3",
        )
        .map_err(sql)?
        .query_row(params![scope, id, now], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })
        .optional()
        .map_err(sql)?;
    let Some((created_at, previous_response_id, response, expires_at)) = row else { return Ok(None) };
    let mut stored = StoredResponse {
        id: id.to_owned(),
        scope: scope.to_owned(),
        created_at,
        previous_response_id,
        response: raw(response, || format!("response {id}"))?,
        input_items: Vec::new(),
        output_items: Vec::new(),
        expires_at,
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT position, output, json FROM response_items WHERE scope = ?1 AND response_id = ?2 \
             ORDER BY position",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![scope, id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?, r.get::<_, String>(2)?)))
        .map_err(sql)?;
    for row in rows {
        let (position, output, json) = row.map_err(sql)?;
        let item = raw(json, || format!("item {position} of response {id}"))?;
        if output { &mut stored.output_items } else { &mut stored.input_items }.push(item);
    }
    Ok(Some(stored))
}

fn input_page(
    conn: &Connection,
    scope: &str,
    id: &str,
    q: &ItemsQuery,
    now: i64,
) -> Result<Option<ItemsPage>, StoreError> {
    if live_link(conn, scope, id, now)?.is_none() {
        return Ok(None);
    }
    let after = match &q.after {
        None => None,
        // A response holds tens of items, not thousands: finding the cursor
        // by scanning its rows is cheaper than an index kept on every insert.
        Some(after) => match conn
            .prepare_cached(
                "SELECT position FROM response_items WHERE scope = ?1 AND response_id = ?2 AND output = 0 \
                 AND item_id = ?3 ORDER BY position LIMIT 1",
            )
            .map_err(sql)?
            .query_row(params![scope, id, after], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(sql)?
        {
            Some(position) => Some(position),
            None => return Ok(Some(ItemsPage::default())),
        },
    };
    let (cmp, order, start) = match q.order {
        Order::Asc => (">", "ASC", after.unwrap_or(-1)),
        Order::Desc => ("<", "DESC", after.unwrap_or(i64::MAX)),
    };
    let size = q.page_size();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT item_id, json FROM response_items WHERE scope = ?1 AND response_id = ?2 AND output = 0 \
             AND position {cmp} ?3 ORDER BY position {order} LIMIT ?4"
        ))
        .map_err(sql)?;
    let mut rows = stmt
        .query_map(params![scope, id, start, size as i64 + 1], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let has_more = rows.len() > size;
    rows.truncate(size);
    let first_id = rows.first().map(|(id, _)| id.clone());
    let last_id = rows.last().map(|(id, _)| id.clone());
    let items = rows
        .into_iter()
        .map(|(item, json)| raw(json, || format!("item {item} of response {id}")))
        .collect::<Result<_, _>>()?;
    Ok(Some(ItemsPage { items, first_id, last_id, has_more }))
}

fn history(
    conn: &Connection,
    scope: &str,
    id: &str,
    max_items: usize,
    now: i64,
) -> Result<Option<Vec<Box<RawValue>>>, StoreError> {
    // Newest item first while walking back; reversed at the end.
    let mut items: Vec<String> = Vec::new();
    let mut current = id.to_owned();
    for hop in 0..MAX_HOPS {
        let Some(previous) = live_link(conn, scope, &current, now)? else {
            if hop == 0 {
                return Ok(None);
            }
            break; // a missing turn ends the chain
        };
        if items.len() >= max_items {
            break;
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT json FROM response_items WHERE scope = ?1 AND response_id = ?2 \
                 ORDER BY position DESC LIMIT ?3",
            )
            .map_err(sql)?;
        let wanted = (max_items - items.len()).min(i64::MAX as usize) as i64;
        let rows = stmt.query_map(params![scope, current, wanted], |r| r.get::<_, String>(0)).map_err(sql)?;
        for json in rows {
            items.push(json.map_err(sql)?);
        }
        match previous {
            Some(previous) => current = previous,
            None => break,
        }
    }
    items.reverse();
    let items = items.into_iter().map(|json| raw(json, || format!("an item in the history of response {id}")));
    items.collect::<Result<_, _>>().map(Some)
}

/// The newest stored item of each id among the scope's live responses, by
/// the index on (scope, item_id): one indexed lookup per id.
fn items_by_id(conn: &Connection, scope: &str, ids: &[String], now: i64) -> Result<Vec<Box<RawValue>>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT i.json FROM response_items i \
             JOIN responses r ON r.scope = i.scope AND r.id = i.response_id \
             WHERE i.scope = ?1 AND i.item_id = ?2 AND r.expires_at > ?3 \
             ORDER BY i.rowid DESC LIMIT 1",
        )
        .map_err(sql)?;
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        let json: Option<String> = stmt.query_row(params![scope, id, now], |r| r.get(0)).optional().map_err(sql)?;
        if let Some(json) = json {
            items.push(raw(json, || format!("item {id} in scope {scope}"))?);
        }
    }
    Ok(items)
}

#[async_trait]
impl ResponseStore for EmbeddedResponses {
    async fn put(&self, response: &StoredResponse) -> Result<(), StoreError> {
        let ids = item_ids(response)?;
        let response = response.clone();
        self.store
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                insert(&tx, &response, &ids, now())?;
                tx.commit().map_err(sql)
            })
            .await
    }

    async fn get(&self, scope: &str, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let (scope, id) = (scope.to_owned(), id.to_owned());
        self.store.call(move |conn| get(conn, &scope, &id, now())).await
    }

    async fn delete(&self, scope: &str, id: &str) -> Result<bool, StoreError> {
        let (scope, id) = (scope.to_owned(), id.to_owned());
        self.store
            .call(move |conn| {
                let expires_at: Option<i64> = conn
                    .prepare_cached("DELETE FROM responses WHERE scope = ?1 AND id = ?2 RETURNING expires_at")
                    .map_err(sql)?
                    .query_row(params![scope, id], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                // An expired one is deleted too, but was already gone.
                Ok(expires_at.is_some_and(|at| at > now()))
            })
            .await
    }

    async fn input_items(&self, scope: &str, id: &str, query: &ItemsQuery) -> Result<Option<ItemsPage>, StoreError> {
        let (scope, id, query) = (scope.to_owned(), id.to_owned(), query.clone());
        self.store.call(move |conn| input_page(conn, &scope, &id, &query, now())).await
    }

    async fn history(&self, scope: &str, id: &str, max_items: usize) -> Result<Option<Vec<Box<RawValue>>>, StoreError> {
        let (scope, id) = (scope.to_owned(), id.to_owned());
        self.store.call(move |conn| history(conn, &scope, &id, max_items, now())).await
    }

    async fn items(&self, scope: &str, ids: &[&str]) -> Result<Vec<Box<RawValue>>, StoreError> {
        let ids: Vec<String> = distinct_ids(ids).into_iter().map(str::to_owned).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let scope = scope.to_owned();
        self.store.call(move |conn| items_by_id(conn, &scope, &ids, now())).await
    }

    async fn prune(&self, now: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let n = self
                .store
                .call(move |conn| {
                    // Their items go with them (ON DELETE CASCADE).
                    conn.prepare_cached(
                        "DELETE FROM responses WHERE rowid IN \
                         (SELECT rowid FROM responses WHERE expires_at <= ?1 LIMIT ?2)",
                    )
                    .map_err(sql)?
                    .execute(params![now, PRUNE_BATCH as i64])
                    .map_err(sql)
                })
                .await?;
            deleted += n as u64;
            if n < PRUNE_BATCH {
                return Ok(deleted);
            }
        }
    }
}
