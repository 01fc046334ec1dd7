//! Stored responses on Redis, shared by every replica.
//!
//! # Schema
//!
//! `S` is the scope and `I` a response id, each in key form (see
//! [`key_part`]); `P` the store's prefix. The scope is the hash tag, so all of
//! a scope's responses share one Cluster slot — the history script walks from
//! one to the next inside it.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:resp:{S}:I` | hash | `created_at`, `expires_at` (Unix s), `inputs` (how many items are inputs), `response` (the Response JSON), `prev` (the previous response's id in key form; absent when none) |
//! | `P:resp:{S}:I:items` | list | the turn's items as given, inputs first, then outputs |
//! | `P:resp:{S}:I:ids` | list | their ids, in the same order (the `input_items` cursor, found with `LPOS`) |
//! | `P:resp-item:{S}:T` | list | the index of item id `T` (key form): one entry `<position> I` per stored item with that id, `I` the response holding it at that position of its lists, oldest first |
//!
//! A response's three keys expire at its `expires_at` (`EXPIREAT`): Redis
//! deletes them itself, so [`prune`](ResponseStore::prune) has nothing to do
//! here and the visibility of a response follows Redis's clock. An item
//! index expires with the longest-lived response it names; an entry whose
//! response is gone meanwhile (deleted, expired, or its id stored again with
//! other items) is skipped when read, so [`items`](ResponseStore::items)
//! never finds a gone response's item.
//!
//! The item index came with `put.lua` version 2: the items of responses
//! stored before are not found by id. Nothing relied on that — until then
//! an `item_reference` resolved only against the `previous_response_id`
//! history, which still works for them — and they leave with their
//! retention, so no migration rewrites them.
//!
//! # Scripts
//!
//! Each call is one round trip: a write is `put.lua` (all or nothing, so a
//! half-written response is never seen), reads are `get.lua`,
//! `input_items.lua`, `history.lua` and `items.lua` (each one consistent
//! step; `items.lua` takes every index of one call as its keys), a delete
//! is one pipeline of two `DEL`s. The scripts live in `src/responses/redis/`,
//! each versioned in its header.
//!
//! # When Redis is unreachable
//!
//! Every call fails with [`StoreError::Unavailable`] once the store's command
//! timeout has passed (see [`crate::store::redis`]); the caller answers 503.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use ::redis::{Pipeline, Script};
use async_trait::async_trait;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::value::RawValue;

use super::store::{
    distinct_ids, item_ids, raw, ItemsPage, ItemsQuery, Order, ResponseStore, StoredResponse, MAX_HOPS,
};
use crate::store::redis::RedisStore;
use crate::store::StoreError;

/// Writes a response whole; see `src/responses/redis/put.lua` (version 2).
const PUT: &str = include_str!("redis/put.lua");
/// Reads a response; see `src/responses/redis/get.lua` (version 1).
const GET: &str = include_str!("redis/get.lua");
/// One page of input items; see `src/responses/redis/input_items.lua` (version 1).
const INPUT_ITEMS: &str = include_str!("redis/input_items.lua");
/// Walks a chain; see `src/responses/redis/history.lua` (version 1).
const HISTORY: &str = include_str!("redis/history.lua");
/// Finds items by id; see `src/responses/redis/items.lua` (version 1).
const ITEMS: &str = include_str!("redis/items.lua");

/// Bytes kept as they are in key names: the characters of workspace ids and
/// generated ids, so their keys read as written (`P:resp:{acme}:resp_1`).
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');

/// A scope or id as it appears in a key name: percent-encoded outside
/// `[A-Za-z0-9_.-]`. Static-key scopes (`static:<name>`) and ids from a URL
/// can hold `{`, `}` or `:`, which would move the hash tag or let an id like
/// `resp_1:items` name another response's list; encoded, no two scopes or ids
/// share a name.
pub fn key_part(s: &str) -> Cow<'_, str> {
    utf8_percent_encode(s, KEY_SAFE).into()
}

pub struct RedisResponses {
    store: Arc<RedisStore>,
    put: Script,
    get: Script,
    input_items: Script,
    history: Script,
    items: Script,
}

/// The three key names of one response.
struct Names {
    record: String,
    items: String,
    ids: String,
}

impl RedisResponses {
    pub fn new(store: Arc<RedisStore>) -> RedisResponses {
        RedisResponses {
            store,
            put: Script::new(PUT),
            get: Script::new(GET),
            input_items: Script::new(INPUT_ITEMS),
            history: Script::new(HISTORY),
            items: Script::new(ITEMS),
        }
    }

    /// `P:resp:{S}:`, the start of every record name of scope `scope`.
    fn scope_prefix(&self, scope: &str) -> String {
        format!("{}:resp:{{{}}}:", self.store.prefix(), key_part(scope))
    }

    /// `P:resp-item:{S}:T`, the index of item id `item` in scope `scope`.
    fn item_index(&self, scope: &str, item: &str) -> String {
        format!("{}:resp-item:{{{}}}:{}", self.store.prefix(), key_part(scope), key_part(item))
    }

    fn names(&self, scope: &str, id: &str) -> Names {
        let record = format!("{}{}", self.scope_prefix(scope), key_part(id));
        Names { items: format!("{record}:items"), ids: format!("{record}:ids"), record }
    }
}

/// Reads a record's hash fields and items back into a response.
fn from_record(scope: &str, id: &str, fields: Vec<String>, items: Vec<String>) -> Result<StoredResponse, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("response {id} in scope {scope}: {what}"));
    let mut map: HashMap<String, String> = HashMap::with_capacity(fields.len() / 2);
    let mut flat = fields.into_iter();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        map.insert(k, v);
    }
    let number = |field: &str| -> Result<i64, StoreError> {
        map.get(field).and_then(|v| v.parse().ok()).ok_or_else(|| corrupt(&format!("no number {field}")))
    };
    let (created_at, expires_at, inputs) = (number("created_at")?, number("expires_at")?, number("inputs")?);
    let inputs = usize::try_from(inputs).ok().filter(|n| *n <= items.len()).ok_or_else(|| corrupt("inputs"))?;
    let previous_response_id = match map.remove("prev") {
        None => None,
        Some(prev) => Some(percent_decode_str(&prev).decode_utf8().map_err(|_| corrupt("prev"))?.into_owned()),
    };
    let response = map.remove("response").ok_or_else(|| corrupt("no response"))?;
    let mut items = items
        .into_iter()
        .enumerate()
        .map(|(n, json)| raw(json, || format!("item {n} of response {id} in scope {scope}")))
        .collect::<Result<Vec<_>, _>>()?;
    let output_items = items.split_off(inputs);
    Ok(StoredResponse {
        id: id.to_owned(),
        scope: scope.to_owned(),
        created_at,
        previous_response_id,
        response: raw(response, || format!("response {id} in scope {scope}"))?,
        input_items: items,
        output_items,
        expires_at,
    })
}

#[async_trait]
impl ResponseStore for RedisResponses {
    async fn put(&self, r: &StoredResponse) -> Result<(), StoreError> {
        let ids = item_ids(r)?;
        let names = self.names(&r.scope, &r.id);
        let prev = r.previous_response_id.as_deref().map(key_part).unwrap_or_default();
        let mut put = self.put.prepare_invoke();
        put.key(&names.record).key(&names.items).key(&names.ids);
        for id in &ids {
            put.key(self.item_index(&r.scope, id));
        }
        put.arg(r.created_at).arg(r.expires_at).arg(prev.as_ref()).arg(r.input_items.len());
        put.arg(r.response.get()).arg(key_part(&r.id).as_ref()).arg(ids.len());
        for item in r.input_items.iter().chain(&r.output_items) {
            put.arg(item.get());
        }
        for id in &ids {
            put.arg(id);
        }
        match self.store.invoke::<i64>(&put).await? {
            1 => Ok(()),
            _ => Err(StoreError::Conflict(format!("response {}", r.id))),
        }
    }

    async fn get(&self, scope: &str, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let names = self.names(scope, id);
        let mut get = self.get.prepare_invoke();
        get.key(&names.record).key(&names.items);
        let found: Option<(Vec<String>, Vec<String>)> = self.store.invoke(&get).await?;
        found.map(|(fields, items)| from_record(scope, id, fields, items)).transpose()
    }

    async fn delete(&self, scope: &str, id: &str) -> Result<bool, StoreError> {
        let names = self.names(scope, id);
        let mut pipe = Pipeline::new();
        pipe.cmd("DEL").arg(&names.record);
        pipe.cmd("DEL").arg(&names.items).arg(&names.ids).ignore();
        let (record,): (i64,) = self.store.pipeline(pipe).await?;
        Ok(record == 1)
    }

    async fn input_items(&self, scope: &str, id: &str, q: &ItemsQuery) -> Result<Option<ItemsPage>, StoreError> {
        let names = self.names(scope, id);
        let order = match q.order {
            Order::Asc => "asc",
            Order::Desc => "desc",
        };
        let mut page = self.input_items.prepare_invoke();
        page.key(&names.record).key(&names.items).key(&names.ids);
        page.arg(q.page_size()).arg(order);
        if let Some(after) = &q.after {
            page.arg(after);
        }
        let found: Option<(i64, Vec<String>, Vec<String>)> = self.store.invoke(&page).await?;
        let Some((more, mut ids, mut items)) = found else { return Ok(None) };
        if q.order == Order::Desc {
            ids.reverse();
            items.reverse();
        }
        let items = items
            .into_iter()
            .zip(&ids)
            .map(|(json, item)| raw(json, || format!("item {item} of response {id} in scope {scope}")))
            .collect::<Result<_, _>>()?;
        Ok(Some(ItemsPage { items, first_id: ids.first().cloned(), last_id: ids.last().cloned(), has_more: more == 1 }))
    }

    async fn history(&self, scope: &str, id: &str, max_items: usize) -> Result<Option<Vec<Box<RawValue>>>, StoreError> {
        let names = self.names(scope, id);
        let mut walk = self.history.prepare_invoke();
        walk.key(&names.record).arg(self.scope_prefix(scope)).arg(max_items).arg(MAX_HOPS);
        let found: Option<Vec<String>> = self.store.invoke(&walk).await?;
        let Some(items) = found else { return Ok(None) };
        let items = items.into_iter().map(|json| raw(json, || format!("an item in the history of response {id}")));
        items.collect::<Result<_, _>>().map(Some)
    }

    async fn items(&self, scope: &str, ids: &[&str]) -> Result<Vec<Box<RawValue>>, StoreError> {
        let ids = distinct_ids(ids);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut find = self.items.prepare_invoke();
        for id in &ids {
            find.key(self.item_index(scope, id));
        }
        find.arg(self.scope_prefix(scope));
        for id in &ids {
            find.arg(*id);
        }
        let found: Vec<String> = self.store.invoke(&find).await?;
        let items = found.into_iter().map(|json| raw(json, || format!("an item found by id in scope {scope}")));
        items.collect()
    }

    async fn prune(&self, _now: i64) -> Result<u64, StoreError> {
        // Every key expires by itself (EXPIREAT at put); Redis is not asked.
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_keep_plain_ids_and_never_collide() {
        assert_eq!(key_part("acme"), "acme");
        assert_eq!(key_part("resp_0123abc-9.x"), "resp_0123abc-9.x");
        assert_eq!(key_part("static:ops {prod}"), "static%3Aops%20%7Bprod%7D");
        assert_eq!(key_part("resp_1:items"), "resp_1%3Aitems", "an id never names another key's list");
        assert_eq!(key_part("50%"), "50%25", "the escape itself is escaped");
        assert_eq!(key_part("ü"), "%C3%BC");
        assert_eq!(percent_decode_str(&key_part("static:a}b")).decode_utf8().unwrap(), "static:a}b");
    }

    #[test]
    fn every_script_names_its_version_and_this_file() {
        let scripts = [
            ("put", PUT, 2),
            ("get", GET, 1),
            ("input_items", INPUT_ITEMS, 1),
            ("history", HISTORY, 1),
            ("items", ITEMS, 1),
        ];
        for (name, script, version) in scripts {
            let header = script.lines().next().unwrap();
            assert_eq!(header, format!("-- tollgate responses {name}, version {version}."), "{name}.lua");
            assert!(script.contains("src/responses/redis.rs"), "{name}.lua names its Rust side");
        }
    }
}
