//! The [`ResponseStore`] trait and the types it stores and returns.

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::store::StoreError;

/// The most turns [`ResponseStore::history`] walks back from the response it
/// starts at; a longer chain is cut there, as if the older turns were gone.
/// Bounds the work of one call whatever the chain (and a cycle, which the
/// gateway never writes: ids are random and a turn names an older one).
pub const MAX_HOPS: usize = 1000;

/// The most items one [`ResponseStore::input_items`] page holds (OpenAI's bound).
pub const MAX_PAGE: usize = 100;
/// The page size of [`ItemsQuery::default`] (OpenAI's default `limit`).
pub const DEFAULT_PAGE: usize = 20;

/// The most distinct ids one [`ResponseStore::items`] call looks up (the
/// default `responses.max_history_items`): bounds the work of one call, and
/// on Redis the keys of one script.
pub const MAX_ITEM_IDS: usize = 1000;

/// One stored response: one turn of a conversation.
///
/// Items are kept as the JSON the caller gave, byte for byte (no re-encoding:
/// what the client sent is what goes upstream again and what `input_items`
/// lists), so the same record can later hold the turns of a session or a chat.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// `resp_...`; unique within its scope.
    pub id: String,
    /// Whose response this is: a workspace id, or `static:<key name>` for a
    /// static config key. Every call names the scope, and none reaches into
    /// another: another scope's id is simply absent.
    pub scope: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The turn this one continues, in the same scope.
    pub previous_response_id: Option<String>,
    /// The Response object, as the client is answered on `GET`.
    pub response: Box<RawValue>,
    /// This turn's input items, in order; each a JSON object with a string
    /// `"id"` (the caller gives ids to items that came without one).
    pub input_items: Vec<Box<RawValue>>,
    /// This turn's output items, in order; each with an `"id"` as well.
    pub output_items: Vec<Box<RawValue>>,
    /// Unix seconds; from then on the response is gone (`responses.retention_days`).
    pub expires_at: i64,
}

/// Which way an [`ItemsPage`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest (first given) first.
    Asc,
    /// Newest first: OpenAI's default for `input_items`.
    #[default]
    Desc,
}

/// A page request on one response's input items; the default is OpenAI's:
/// the first [`DEFAULT_PAGE`] items, newest first.
#[derive(Debug, Clone)]
pub struct ItemsQuery {
    /// The id of the item the page starts after (the previous page's
    /// `last_id`, same order). An id that is not one of the response's input
    /// items gives an empty page.
    pub after: Option<String>,
    /// 1 to [`MAX_PAGE`]; a value outside is taken as the nearest bound (the
    /// HTTP layer refuses those before asking).
    pub limit: usize,
    pub order: Order,
}

impl Default for ItemsQuery {
    fn default() -> Self {
        ItemsQuery { after: None, limit: DEFAULT_PAGE, order: Order::Desc }
    }
}

impl ItemsQuery {
    /// `limit` within 1..=[`MAX_PAGE`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}

/// One page of input items; the caller wraps it in OpenAI's list shape.
#[derive(Debug, Clone, Default)]
pub struct ItemsPage {
    pub items: Vec<Box<RawValue>>,
    /// The ids of the page's first and last items; `None` on an empty page.
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    /// Whether more items follow `last_id` in this order.
    pub has_more: bool,
}

/// Stored responses, per scope; see the module doc of [`crate::responses`].
///
/// Expired responses (`expires_at` reached) are absent from every call even
/// before [`prune`](ResponseStore::prune) deletes them. Every call fails with
/// [`StoreError::Unavailable`] when the backend cannot answer (on Redis within
/// the store's command timeout).
#[async_trait]
pub trait ResponseStore: Send + Sync + 'static {
    /// Stores a new response with its items, all or nothing. `Conflict` when
    /// its scope already holds a live response with this id; `Corrupt` (and
    /// nothing written) when an item has no string `"id"`, a caller bug. The
    /// previous response is not checked: the caller read it to build the call.
    async fn put(&self, response: &StoredResponse) -> Result<(), StoreError>;
    /// The response, its items included.
    async fn get(&self, scope: &str, id: &str) -> Result<Option<StoredResponse>, StoreError>;
    /// Deletes the response and its items; whether it existed. Turns that
    /// continue it stay, and their history ends after it from now on.
    async fn delete(&self, scope: &str, id: &str) -> Result<bool, StoreError>;
    /// A page of the response's own input items (not earlier turns'); `None`
    /// when there is no such response.
    async fn input_items(&self, scope: &str, id: &str, query: &ItemsQuery) -> Result<Option<ItemsPage>, StoreError>;
    /// The items of the chain ending at `id`, oldest turn first, each turn's
    /// inputs then outputs: what continuing `id` sends upstream. At most the
    /// newest `max_items` (an older turn may be cut part-way), from at most
    /// [`MAX_HOPS`] turns. The chain ends at the first turn that is missing —
    /// deleted, expired or pruned — so history only ever shrinks from the
    /// old end. `None` when `id` itself is missing. One round trip.
    async fn history(&self, scope: &str, id: &str, max_items: usize) -> Result<Option<Vec<Box<RawValue>>>, StoreError>;
    /// The items with these ids among the scope's live responses' input and
    /// output items, as stored: what an `item_reference` names. One per id
    /// found, in the order of `ids` (a repeated id once); an id that no live
    /// response of the scope holds is simply absent — another scope's, an
    /// expired or deleted response's. When several responses hold an item
    /// with the id (a turn stores the items it referenced as its own inputs),
    /// the most recently stored one's. At most the first [`MAX_ITEM_IDS`]
    /// distinct ids are looked up (the HTTP layer refuses more before
    /// asking). One round trip.
    async fn items(&self, scope: &str, ids: &[&str]) -> Result<Vec<Box<RawValue>>, StoreError>;
    /// Deletes responses expired at `now` (Unix s); how many. Redis expires
    /// them by itself: there it does nothing and returns 0.
    async fn prune(&self, now: i64) -> Result<u64, StoreError>;
}

/// The `"id"` of each item, inputs then outputs; `Corrupt` names the first
/// item without one.
pub(crate) fn item_ids(response: &StoredResponse) -> Result<Vec<String>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let read = |kind: &str, n: usize, item: &RawValue| {
        // Only an object: serde would also read `["x"]` as a struct, by position.
        let object = item.get().trim_start().starts_with('{');
        let id = if object { serde_json::from_str::<Id>(item.get()).ok() } else { None };
        id.map(|i| i.id).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{kind} item {n} of response {} is not a JSON object with a string \"id\"",
                response.id
            ))
        })
    };
    let inputs = response.input_items.iter().enumerate().map(|(n, item)| read("input", n, item));
    let outputs = response.output_items.iter().enumerate().map(|(n, item)| read("output", n, item));
    inputs.chain(outputs).collect()
}

/// The distinct ids of `ids`, first occurrence first, at most [`MAX_ITEM_IDS`]
/// of them: what [`ResponseStore::items`] looks up.
pub(crate) fn distinct_ids<'a>(ids: &[&'a str]) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len().min(MAX_ITEM_IDS));
    ids.iter().copied().filter(|id| seen.insert(*id)).take(MAX_ITEM_IDS).collect()
}

/// Reads back an item or response stored as text; `Corrupt` names it.
pub(crate) fn raw(json: String, what: impl FnOnce() -> String) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(json).map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(inputs: &[&str], outputs: &[&str]) -> StoredResponse {
        let raw = |s: &&str| RawValue::from_string((*s).to_owned()).unwrap();
        StoredResponse {
            id: "resp_1".into(),
            scope: "ws".into(),
            created_at: 0,
            previous_response_id: None,
            response: RawValue::from_string("{}".into()).unwrap(),
            input_items: inputs.iter().map(raw).collect(),
            output_items: outputs.iter().map(raw).collect(),
            expires_at: 1,
        }
    }

    #[test]
    fn item_ids_are_read_in_order_and_a_missing_one_is_named() {
        let ok = response(&[r#"{"type":"message","id":"msg_a","content":[]}"#, r#"{"id":"b"}"#], &[r#"{"id":"c"}"#]);
        assert_eq!(item_ids(&ok).unwrap(), ["msg_a", "b", "c"]);
        for (inputs, outputs, named) in [
            (&[r#"{"role":"user"}"#][..], &[][..], "input item 0"),
            (&[r#"{"id":"a"}"#], &[r#"{"id":"b"}"#, r#"{"id":7}"#], "output item 1"),
            (&[r#"["id"]"#], &[], "input item 0"),
        ] {
            let e = item_ids(&response(inputs, outputs)).unwrap_err().to_string();
            assert!(e.contains(named) && e.contains("resp_1"), "{e}");
        }
    }

    #[test]
    fn distinct_ids_keep_the_first_of_each_up_to_the_bound() {
        assert_eq!(distinct_ids(&["b", "a", "b", "c", "a"]), ["b", "a", "c"]);
        assert!(distinct_ids(&[]).is_empty());
        let many: Vec<String> = (0..MAX_ITEM_IDS + 5).map(|n| format!("id_{n}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let kept = distinct_ids(&refs);
        assert_eq!((kept.len(), kept[0], kept[MAX_ITEM_IDS - 1]), (MAX_ITEM_IDS, "id_0", "id_999"));
    }

    #[test]
    fn page_size_stays_within_bounds() {
        assert_eq!((ItemsQuery::default().page_size(), ItemsQuery::default().order), (DEFAULT_PAGE, Order::Desc));
        for (limit, size) in [(0, 1), (1, 1), (20, 20), (100, 100), (101, 100), (usize::MAX, 100)] {
            assert_eq!(ItemsQuery { limit, ..ItemsQuery::default() }.page_size(), size);
        }
    }
}
