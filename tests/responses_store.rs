//! The stored-responses store (`tollgate::responses`, issue 11), written once
//! and run on every backend — the embedded file, a standalone `redis-server`
//! and a one-node Redis Cluster (which refuses keys of two slots in one
//! command or script), each of its own on a free port: `on_embedded::*`,
//! `on_redis::*`, `on_redis_cluster::*`. Every store is opened as the gateway
//! opens it, from a `[store]` section through `Stores::open`.
//!
//! Covered: round trips byte for byte (and ids with key-name characters),
//! scope isolation, duplicate ids (also racing), `input_items` paging both
//! ways with cursors and bounds, history over a chain (order, trimming, a
//! deleted or expired turn ending it), retention (expired is absent at once,
//! `prune` deletes on the embedded backend, Redis expires by itself), items
//! found by id (inputs and outputs, own scope only, never a gone response's,
//! the newest of one id, at most `MAX_ITEM_IDS` ids a call), two
//! handles on one backend as two replicas (and a reopen), 1 MiB items, and —
//! Redis only, there being no way to take an in-process file away — a stopped
//! server answered with `Unavailable` within a bound, then recovery.
//! Without `redis-server` the Redis tests are skipped loudly (failed under
//! `CI=true`). Waits are bounded polls, never fixed sleeps.

#[macro_use]
#[path = "support/backends.rs"]
mod backends;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;
#[macro_use]
#[path = "support/store_suite.rs"]
mod store_suite;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use store_suite::{Backend, StoreEnv};
use tollgate::responses::{ItemsQuery, Order, ResponseStore, StoredResponse, MAX_ITEM_IDS, MAX_PAGE};
use tollgate::store::{StoreError, Stores};

store_suite!(
    round_trip_keeps_every_byte,
    another_scope_sees_nothing,
    a_duplicate_id_conflicts,
    input_items_page_both_ways,
    history_follows_the_chain,
    a_deleted_or_expired_turn_ends_the_chain,
    retention_hides_then_prune_removes,
    another_handle_continues_the_chain,
    large_items_round_trip,
    items_are_found_by_id_in_their_scope,
    items_by_id_skip_gone_responses_and_take_the_newest,
    items_by_id_are_bounded,
);

/// The longest a bounded wait may take on a slow, loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);
const DAY: i64 = 86_400;

struct Env {
    store: StoreEnv,
}

impl Env {
    async fn start(backend: Backend, test: &str) -> Option<Env> {
        Some(Env { store: StoreEnv::start(backend, &format!("responses-{test}"), "tgr").await? })
    }

    /// A new handle onto the same data, as another replica (or a restarted
    /// gateway) opens it.
    async fn open(&self) -> Arc<dyn ResponseStore> {
        let stores = Stores::open(&self.store.config.store).await.expect("the store opens");
        tollgate::responses::Responses::open(&stores, &self.store.config.responses).store
    }
}

fn now() -> i64 {
    tollgate::store::now()
}

fn json(text: impl Into<String>) -> Box<RawValue> {
    RawValue::from_string(text.into()).expect("valid JSON")
}

/// A message item with this id.
fn item(id: &str) -> Box<RawValue> {
    json(format!(r#"{{"type":"message","id":"{id}","role":"user","content":[{{"type":"input_text","text":"{id}"}}]}}"#))
}

/// A live turn (a day to go) of `scope` with these item ids.
fn turn(scope: &str, id: &str, previous: Option<&str>, inputs: &[&str], outputs: &[&str]) -> StoredResponse {
    StoredResponse {
        id: id.into(),
        scope: scope.into(),
        created_at: now(),
        previous_response_id: previous.map(Into::into),
        response: json(format!(r#"{{"id":"{id}","object":"response","status":"completed","output":[]}}"#)),
        input_items: inputs.iter().map(|i| item(i)).collect(),
        output_items: outputs.iter().map(|i| item(i)).collect(),
        expires_at: now() + DAY,
    }
}

/// Turn `n` of a chain in `scope`: `resp_<n>`, continuing `resp_<n-1>`, with
/// inputs `t<n>_a`, `t<n>_b` and output `t<n>_out`.
fn chain_turn(scope: &str, n: usize) -> StoredResponse {
    let (a, b, out) = (format!("t{n}_a"), format!("t{n}_b"), format!("t{n}_out"));
    let previous = (n > 1).then(|| format!("resp_{}", n - 1));
    turn(scope, &format!("resp_{n}"), previous.as_deref(), &[&a, &b], &[&out])
}

/// The item ids of turns `turns` of [`chain_turn`]'s chain, in history order.
fn chain_ids(turns: std::ops::RangeInclusive<usize>) -> Vec<String> {
    turns.flat_map(|n| [format!("t{n}_a"), format!("t{n}_b"), format!("t{n}_out")]).collect()
}

fn ids(items: &[Box<RawValue>]) -> Vec<String> {
    items
        .iter()
        .map(|i| serde_json::from_str::<serde_json::Value>(i.get()).unwrap()["id"].as_str().unwrap().to_owned())
        .collect()
}

fn texts(items: &[Box<RawValue>]) -> Vec<&str> {
    items.iter().map(|i| i.get()).collect()
}

fn assert_same(got: &StoredResponse, want: &StoredResponse) {
    assert_eq!((&got.id, &got.scope), (&want.id, &want.scope));
    assert_eq!((got.created_at, got.expires_at), (want.created_at, want.expires_at), "{}", want.id);
    assert_eq!(got.previous_response_id, want.previous_response_id, "{}", want.id);
    assert_eq!(got.response.get(), want.response.get(), "{}: the Response JSON as given", want.id);
    assert_eq!(texts(&got.input_items), texts(&want.input_items), "{}: input items as given", want.id);
    assert_eq!(texts(&got.output_items), texts(&want.output_items), "{}: output items as given", want.id);
}

fn query(after: Option<&str>, limit: usize, order: Order) -> ItemsQuery {
    ItemsQuery { after: after.map(Into::into), limit, order }
}

async fn history(store: &Arc<dyn ResponseStore>, scope: &str, id: &str, max: usize) -> Option<Vec<String>> {
    store.history(scope, id, max).await.expect("history").map(|items| ids(&items))
}

/// The ids of the items [`ResponseStore::items`] finds for `wanted`.
async fn found(store: &Arc<dyn ResponseStore>, scope: &str, wanted: &[&str]) -> Vec<String> {
    ids(&store.items(scope, wanted).await.expect("items by id"))
}

// ---------------------------------------------------------------------------

async fn round_trip_keeps_every_byte(backend: Backend) {
    let Some(env) = Env::start(backend, "round_trip").await else { return };
    let store = env.open().await;
    // Spacing, number spelling, escapes, unicode and `{}` stay as they came.
    let odd = json(
        r#"{ "id" : "msg_odd", "content": [ {"type":"input_text","text":"ünï \"q\" \u00e9 {x}"} ], "n": 1.0e3, "e": {}, "a": [] }"#,
    );
    let first = StoredResponse {
        input_items: vec![odd, item("msg_2")],
        output_items: vec![item("out_1"), item("out_2")],
        response: json(r#"{"id":"resp_1", "usage": {"input_tokens": 12}, "metadata": {}}"#),
        ..turn("ws_a", "resp_1", None, &[], &[])
    };
    let second = turn("ws_a", "resp_2", Some("resp_1"), &[], &[]);
    store.put(&first).await.unwrap();
    store.put(&second).await.unwrap();
    assert_same(&store.get("ws_a", "resp_1").await.unwrap().expect("stored"), &first);
    assert_same(&store.get("ws_a", "resp_2").await.unwrap().expect("stored, without items"), &second);
    assert!(store.get("ws_a", "resp_unknown").await.unwrap().is_none());

    assert!(store.delete("ws_a", "resp_1").await.unwrap());
    assert!(store.get("ws_a", "resp_1").await.unwrap().is_none(), "deleted");
    assert!(!store.delete("ws_a", "resp_1").await.unwrap(), "already gone");
    assert!(!store.delete("ws_a", "resp_unknown").await.unwrap());
    assert!(store.input_items("ws_a", "resp_1", &ItemsQuery::default()).await.unwrap().is_none());
    assert_eq!(history(&store, "ws_a", "resp_1", 100).await, None);
    assert_same(&store.get("ws_a", "resp_2").await.unwrap().expect("a continuation outlives its parent"), &second);
    assert_eq!(history(&store, "ws_a", "resp_2", 100).await, Some(vec![]), "its chain ends at the deleted turn");

    // Scopes and ids with key-name characters are just names.
    let odd_names = turn("static:ops {prod}", "resp_x:items", None, &["in:1"], &["out}"]);
    store.put(&odd_names).await.unwrap();
    assert_same(&store.get("static:ops {prod}", "resp_x:items").await.unwrap().expect("stored"), &odd_names);
    assert!(store.get("static:ops {prod}", "resp_x").await.unwrap().is_none());
    assert!(store.get("static:ops", "resp_x:items").await.unwrap().is_none());
    let next = turn("static:ops {prod}", "resp_y", Some("resp_x:items"), &["in:2"], &[]);
    store.put(&next).await.unwrap();
    assert_eq!(history(&store, "static:ops {prod}", "resp_y", 10).await.unwrap(), ["in:1", "out}", "in:2"]);

    // An item without a string id is refused, and nothing is written.
    let bad = StoredResponse {
        input_items: vec![item("ok"), json(r#"{"role":"user"}"#)],
        ..turn("ws_a", "resp_bad", None, &[], &[])
    };
    let refused = store.put(&bad).await;
    assert!(matches!(&refused, Err(StoreError::Corrupt(e)) if e.contains("input item 1")), "{refused:?}");
    assert!(store.get("ws_a", "resp_bad").await.unwrap().is_none());
}

async fn another_scope_sees_nothing(backend: Backend) {
    let Some(env) = Env::start(backend, "scopes").await else { return };
    let store = env.open().await;
    let mine = turn("ws_a", "resp_1", None, &["a1", "a2"], &["a3"]);
    store.put(&mine).await.unwrap();
    for other in ["ws_b", "static:ws_a", "ws_", "ws_a:x", "{ws_a}"] {
        assert!(store.get(other, "resp_1").await.unwrap().is_none(), "{other}");
        assert!(store.input_items(other, "resp_1", &ItemsQuery::default()).await.unwrap().is_none(), "{other}");
        assert_eq!(history(&store, other, "resp_1", 100).await, None, "{other}");
        assert!(!store.delete(other, "resp_1").await.unwrap(), "{other}");
    }
    assert_same(&store.get("ws_a", "resp_1").await.unwrap().expect("untouched by the others' deletes"), &mine);

    // The same id elsewhere is another response, and a link never leaves its scope.
    let theirs = turn("ws_b", "resp_1", None, &["b1"], &[]);
    store.put(&theirs).await.unwrap();
    assert_same(&store.get("ws_b", "resp_1").await.unwrap().unwrap(), &theirs);
    assert_same(&store.get("ws_a", "resp_1").await.unwrap().unwrap(), &mine);
    store.put(&turn("ws_a", "resp_only_a", None, &["secret"], &[])).await.unwrap();
    store.put(&turn("ws_b", "resp_2", Some("resp_only_a"), &["b2"], &[])).await.unwrap();
    assert_eq!(history(&store, "ws_b", "resp_2", 100).await.unwrap(), ["b2"], "nothing of ws_a's chain");
    assert!(store.delete("ws_b", "resp_1").await.unwrap());
    assert_same(&store.get("ws_a", "resp_1").await.unwrap().expect("deleting ws_b's leaves ws_a's"), &mine);
}

async fn a_duplicate_id_conflicts(backend: Backend) {
    let Some(env) = Env::start(backend, "duplicates").await else { return };
    let store = env.open().await;
    let original = turn("ws_a", "resp_1", None, &["first"], &[]);
    store.put(&original).await.unwrap();
    let rival = turn("ws_a", "resp_1", None, &["second"], &["more"]);
    assert_eq!(store.put(&rival).await.unwrap_err(), StoreError::Conflict("response resp_1".into()));
    assert_same(&store.get("ws_a", "resp_1").await.unwrap().unwrap(), &original);

    // Twenty racers on one id: one wins, whole; the rest conflict.
    let racers = (0..20).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let racer = format!("racer_{n}");
            (n, store.put(&turn("ws_a", "resp_race", None, &[&racer], &[&racer])).await)
        })
    });
    let mut winners = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        match racer.await.unwrap() {
            (n, Ok(())) => winners.push(n),
            (_, Err(StoreError::Conflict(_))) => {}
            (_, Err(e)) => panic!("a racer failed: {e}"),
        }
    }
    let [winner] = winners[..] else { panic!("exactly one put wins: {winners:?}") };
    let stored = store.get("ws_a", "resp_race").await.unwrap().unwrap();
    let racer = format!("racer_{winner}");
    assert_eq!((ids(&stored.input_items), ids(&stored.output_items)), (vec![racer.clone()], vec![racer]));
}

async fn input_items_page_both_ways(backend: Backend) {
    let Some(env) = Env::start(backend, "input_items").await else { return };
    let store = env.open().await;
    let inputs: Vec<String> = (0..23).map(|n| format!("in_{n:02}")).collect();
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    store.put(&turn("ws_a", "resp_1", None, &refs, &["out_0", "out_1"])).await.unwrap();

    for order in [Order::Asc, Order::Desc] {
        let mut expected = inputs.clone();
        if order == Order::Desc {
            expected.reverse();
        }
        for limit in [1, 5, 7, 22, 23, 24, MAX_PAGE] {
            let (mut seen, mut after, mut pages) = (Vec::new(), None::<String>, 0);
            loop {
                let q = query(after.as_deref(), limit, order);
                let page = store.input_items("ws_a", "resp_1", &q).await.unwrap().expect("the response exists");
                pages += 1;
                let got = ids(&page.items);
                assert!(!got.is_empty() && got.len() <= limit, "{order:?} limit {limit}: {got:?}");
                assert_eq!((page.first_id.as_ref(), page.last_id.as_ref()), (got.first(), got.last()));
                assert_eq!(page.has_more, seen.len() + got.len() < inputs.len(), "{order:?} limit {limit}");
                if page.has_more {
                    assert_eq!(got.len(), limit, "only the last page is short");
                }
                seen.extend(got);
                if !page.has_more {
                    break;
                }
                after = page.last_id;
            }
            assert_eq!(seen, expected, "{order:?} limit {limit}: every input once, in order, no output");
            assert_eq!(pages, inputs.len().div_ceil(limit), "{order:?} limit {limit}");
        }
        // Limits outside 1..=100 are taken as the nearest bound.
        let one = store.input_items("ws_a", "resp_1", &query(None, 0, order)).await.unwrap().unwrap();
        assert_eq!((ids(&one.items), one.has_more), (vec![expected[0].clone()], true));
        let all = store.input_items("ws_a", "resp_1", &query(None, 1000, order)).await.unwrap().unwrap();
        assert_eq!((ids(&all.items), all.has_more), (expected.clone(), false));
        // After the last item, or a cursor that is no input item: an empty page.
        for cursor in [expected.last().unwrap().as_str(), "out_0", "in_99", ""] {
            let page = store.input_items("ws_a", "resp_1", &query(Some(cursor), 5, order)).await.unwrap().unwrap();
            assert!(page.items.is_empty() && !page.has_more && page.first_id.is_none(), "{order:?} after {cursor:?}");
        }
    }
    // OpenAI's defaults: 20, newest first.
    let page = store.input_items("ws_a", "resp_1", &ItemsQuery::default()).await.unwrap().unwrap();
    let newest: Vec<String> = inputs.iter().rev().take(20).cloned().collect();
    assert_eq!((ids(&page.items), page.has_more), (newest, true));
    // The page bound holds on a longer list.
    let many: Vec<String> = (0..150).map(|n| format!("m_{n:03}")).collect();
    store
        .put(&turn("ws_a", "resp_many", None, &many.iter().map(String::as_str).collect::<Vec<_>>(), &[]))
        .await
        .unwrap();
    let first = store.input_items("ws_a", "resp_many", &query(None, 1000, Order::Asc)).await.unwrap().unwrap();
    assert_eq!((ids(&first.items), first.has_more), (many[..MAX_PAGE].to_vec(), true));
    let rest = query(first.last_id.as_deref(), 1000, Order::Asc);
    let rest = store.input_items("ws_a", "resp_many", &rest).await.unwrap().unwrap();
    assert_eq!((ids(&rest.items), rest.has_more), (many[MAX_PAGE..].to_vec(), false));

    // A response without inputs lists nothing; an unknown one is None.
    store.put(&turn("ws_a", "resp_empty", None, &[], &["out_x"])).await.unwrap();
    for (order, after) in [(Order::Asc, None), (Order::Desc, None), (Order::Desc, Some("out_x"))] {
        let page = store.input_items("ws_a", "resp_empty", &query(after, 20, order)).await.unwrap().unwrap();
        assert!(page.items.is_empty() && !page.has_more && page.last_id.is_none());
    }
    assert!(store.input_items("ws_a", "resp_unknown", &ItemsQuery::default()).await.unwrap().is_none());
}

async fn history_follows_the_chain(backend: Backend) {
    let Some(env) = Env::start(backend, "history").await else { return };
    let store = env.open().await;
    for n in 1..=5 {
        store.put(&chain_turn("ws_a", n)).await.unwrap();
    }
    let all = chain_ids(1..=5);
    assert_eq!(history(&store, "ws_a", "resp_5", 1000).await.unwrap(), all, "oldest turn first, inputs then outputs");
    assert_eq!(history(&store, "ws_a", "resp_3", 1000).await.unwrap(), chain_ids(1..=3), "up to the turn asked for");
    assert_eq!(history(&store, "ws_a", "resp_1", 1000).await.unwrap(), chain_ids(1..=1));
    assert_eq!(history(&store, "ws_a", "resp_5", 15).await.unwrap(), all);
    // Trimming keeps the newest, cutting the oldest turn taken part-way.
    assert_eq!(history(&store, "ws_a", "resp_5", 4).await.unwrap(), all[11..]);
    assert_eq!(history(&store, "ws_a", "resp_5", 3).await.unwrap(), chain_ids(5..=5));
    assert_eq!(history(&store, "ws_a", "resp_5", 1).await.unwrap(), ["t5_out"]);
    assert_eq!(history(&store, "ws_a", "resp_5", 0).await.unwrap(), Vec::<String>::new());
    assert_eq!(history(&store, "ws_a", "resp_6", 10).await, None);
    // The items come back as stored.
    let items = store.history("ws_a", "resp_2", 10).await.unwrap().unwrap();
    assert_eq!(
        texts(&items),
        [item("t1_a"), item("t1_b"), item("t1_out"), item("t2_a"), item("t2_b"), item("t2_out")]
            .iter()
            .map(|i| i.get())
            .collect::<Vec<_>>()
    );
}

async fn a_deleted_or_expired_turn_ends_the_chain(backend: Backend) {
    let Some(env) = Env::start(backend, "broken_chain").await else { return };
    let store = env.open().await;
    for n in 1..=5 {
        store.put(&chain_turn("ws_a", n)).await.unwrap();
    }
    assert!(store.delete("ws_a", "resp_3").await.unwrap());
    assert_eq!(history(&store, "ws_a", "resp_5", 1000).await.unwrap(), chain_ids(4..=5), "ends after the deleted turn");
    assert_eq!(history(&store, "ws_a", "resp_2", 1000).await.unwrap(), chain_ids(1..=2), "older turns keep theirs");
    assert_eq!(history(&store, "ws_a", "resp_3", 1000).await, None);

    // A turn that expired ends its chain the same way, before any pruning.
    for n in 1..=4 {
        let mut t = chain_turn("ws_b", n);
        if n == 2 {
            t.expires_at = now() - 10;
        }
        store.put(&t).await.unwrap();
    }
    assert_eq!(history(&store, "ws_b", "resp_4", 1000).await.unwrap(), chain_ids(3..=4), "ends after the expired turn");
    assert_eq!(history(&store, "ws_b", "resp_1", 1000).await.unwrap(), chain_ids(1..=1));
    assert_eq!(history(&store, "ws_b", "resp_2", 1000).await, None);
    assert!(store.get("ws_b", "resp_2").await.unwrap().is_none());
    assert!(store.input_items("ws_b", "resp_2", &ItemsQuery::default()).await.unwrap().is_none());
    assert!(!store.delete("ws_b", "resp_2").await.unwrap(), "an expired response is already gone");
}

async fn retention_hides_then_prune_removes(backend: Backend) {
    let Some(env) = Env::start(backend, "retention").await else { return };
    let store = env.open().await;
    let start = now();
    let expiring = |id: &str, expires_at: i64| StoredResponse { expires_at, ..turn("ws_a", id, None, &["i"], &["o"]) };
    store.put(&expiring("resp_expired", start - 10)).await.unwrap();
    store.put(&expiring("resp_hour", start + 3600)).await.unwrap();
    store.put(&expiring("resp_month", start + 30 * DAY)).await.unwrap();
    assert!(store.get("ws_a", "resp_expired").await.unwrap().is_none(), "absent before any pruning");
    assert!(store.get("ws_a", "resp_hour").await.unwrap().is_some());

    // The embedded pruner deletes what expired by its clock; Redis expires
    // keys by its own, so prune has nothing to do there.
    let (now_pass, hour_later) = (store.prune(start).await.unwrap(), store.prune(start + 7200).await.unwrap());
    let hour_left = store.get("ws_a", "resp_hour").await.unwrap().is_some();
    match backend {
        Backend::Embedded => assert_eq!((now_pass, hour_later, hour_left), (1, 1, false)),
        Backend::Redis | Backend::RedisCluster => assert_eq!((now_pass, hour_later, hour_left), (0, 0, true)),
    }
    assert!(store.get("ws_a", "resp_month").await.unwrap().is_some(), "not expired anywhere");
    assert_eq!(store.prune(start).await.unwrap(), 0, "nothing left to prune");

    // An expired id is free again.
    let again = expiring("resp_expired", start + DAY);
    store.put(&again).await.unwrap();
    assert_same(&store.get("ws_a", "resp_expired").await.unwrap().unwrap(), &again);

    // A response expires while stored, with nobody pruning.
    store.put(&expiring("resp_brief", now() + 3)).await.unwrap();
    assert!(store.get("ws_a", "resp_brief").await.unwrap().is_some());
    let deadline = Instant::now() + WAIT;
    while store.get("ws_a", "resp_brief").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "resp_brief still visible after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(history(&store, "ws_a", "resp_brief", 10).await, None);
    assert!(store.input_items("ws_a", "resp_brief", &ItemsQuery::default()).await.unwrap().is_none());
}

async fn another_handle_continues_the_chain(backend: Backend) {
    let Some(env) = Env::start(backend, "replicas").await else { return };
    let (one, two) = (env.open().await, env.open().await);
    one.put(&chain_turn("ws_a", 1)).await.unwrap();
    two.put(&chain_turn("ws_a", 2)).await.unwrap();
    one.put(&chain_turn("ws_a", 3)).await.unwrap();
    for store in [&one, &two] {
        assert_eq!(history(store, "ws_a", "resp_3", 100).await.unwrap(), chain_ids(1..=3));
        assert_same(&store.get("ws_a", "resp_2").await.unwrap().unwrap(), &chain_turn("ws_a", 2));
    }
    assert_eq!(two.put(&chain_turn("ws_a", 3)).await.unwrap_err(), StoreError::Conflict("response resp_3".into()));
    assert!(two.delete("ws_a", "resp_1").await.unwrap());
    assert!(one.get("ws_a", "resp_1").await.unwrap().is_none(), "a delete on one is seen by the other");
    // Both gone, as after a restart: the data stays.
    drop((one, two));
    let three = env.open().await;
    assert_eq!(history(&three, "ws_a", "resp_3", 100).await.unwrap(), chain_ids(2..=3));
}

async fn large_items_round_trip(backend: Backend) {
    let Some(env) = Env::start(backend, "large").await else { return };
    let store = env.open().await;
    let mib: String = "0123456789abcdef".repeat(1 << 16);
    let big = |id: &str| {
        json(format!(r#"{{"id":"{id}","type":"message","content":[{{"type":"input_text","text":"{mib}"}}]}}"#))
    };
    let large = StoredResponse {
        input_items: vec![big("big_in"), item("small_in")],
        output_items: vec![big("big_out")],
        ..turn("ws_a", "resp_big", None, &[], &[])
    };
    assert!(large.input_items[0].get().len() > 1 << 20);
    store.put(&large).await.unwrap();
    assert_same(&store.get("ws_a", "resp_big").await.unwrap().unwrap(), &large);
    let page = store.input_items("ws_a", "resp_big", &query(None, 10, Order::Asc)).await.unwrap().unwrap();
    assert_eq!(texts(&page.items), texts(&large.input_items));
    store.put(&turn("ws_a", "resp_next", Some("resp_big"), &["next"], &[])).await.unwrap();
    let items = store.history("ws_a", "resp_next", 100).await.unwrap().unwrap();
    assert_eq!(
        texts(&items[..3]),
        [large.input_items[0].get(), large.input_items[1].get(), large.output_items[0].get()]
    );
    assert_eq!(ids(&items), ["big_in", "small_in", "big_out", "next"]);
}

async fn items_are_found_by_id_in_their_scope(backend: Backend) {
    let Some(env) = Env::start(backend, "items_by_id").await else { return };
    let store = env.open().await;
    let first = turn("ws_a", "resp_1", None, &["msg_in_1", "msg_in_2"], &["msg_out_1"]);
    store.put(&first).await.unwrap();
    store.put(&turn("ws_a", "resp_2", Some("resp_1"), &["msg_in_3"], &["fc_out_2", "msg_out_2"])).await.unwrap();

    // Inputs and outputs of any turn, in the order asked, a repeat once, the
    // unknown left out; no chain is needed.
    let wanted = ["msg_out_2", "msg_unknown", "msg_in_1", "msg_out_1", "msg_in_1", "fc_out_2", "msg_in_3"];
    assert_eq!(found(&store, "ws_a", &wanted).await, ["msg_out_2", "msg_in_1", "msg_out_1", "fc_out_2", "msg_in_3"]);
    assert!(found(&store, "ws_a", &[]).await.is_empty());
    assert!(found(&store, "ws_a", &["msg_unknown", "resp_1", ""]).await.is_empty(), "response ids are no item ids");
    // Byte for byte as stored.
    let items = store.items("ws_a", &["msg_in_2", "msg_out_1"]).await.unwrap();
    assert_eq!(texts(&items), [first.input_items[1].get(), first.output_items[0].get()]);

    // Another scope finds none of them, whatever its name.
    for other in ["ws_b", "static:ws_a", "ws_", "ws_a:x", "{ws_a}"] {
        assert!(found(&store, other, &wanted).await.is_empty(), "{other}");
    }
    // The same item id in another scope is that scope's own item.
    let theirs = StoredResponse {
        output_items: vec![json(r#"{"type":"message","id":"msg_out_1","role":"assistant","content":[]}"#)],
        ..turn("ws_b", "resp_b", None, &[], &[])
    };
    store.put(&theirs).await.unwrap();
    assert_eq!(texts(&store.items("ws_b", &["msg_out_1", "msg_in_1"]).await.unwrap()), [theirs.output_items[0].get()]);
    assert_eq!(texts(&store.items("ws_a", &["msg_out_1"]).await.unwrap()), [first.output_items[0].get()]);

    // Ids with key-name characters are just ids.
    store.put(&turn("static:ops {prod}", "resp_x:items", None, &["in:1", "a b"], &["out}", "{x}"])).await.unwrap();
    let odd = ["{x}", "out}", "a b", "in:1", "resp_x:items"];
    assert_eq!(found(&store, "static:ops {prod}", &odd).await, ["{x}", "out}", "a b", "in:1"]);
    assert!(found(&store, "static:ops", &odd).await.is_empty());
}

async fn items_by_id_skip_gone_responses_and_take_the_newest(backend: Backend) {
    let Some(env) = Env::start(backend, "items_gone").await else { return };
    let store = env.open().await;
    let with_text = |id: &str, text: &str| {
        json(format!(
            r#"{{"type":"message","id":"{id}","role":"user","content":[{{"type":"input_text","text":"{text}"}}]}}"#
        ))
    };
    let text_of = |items: &[Box<RawValue>]| -> Vec<String> {
        items
            .iter()
            .map(|i| serde_json::from_str::<serde_json::Value>(i.get()).unwrap()["content"][0]["text"].to_string())
            .collect()
    };

    // An expired response's items are absent at once; a deleted one's too.
    store
        .put(&StoredResponse { expires_at: now() - 10, ..turn("ws_a", "resp_old", None, &["gone_in"], &["gone_out"]) })
        .await
        .unwrap();
    store.put(&turn("ws_a", "resp_deleted", None, &["del_in"], &["del_out"])).await.unwrap();
    store.put(&turn("ws_a", "resp_kept", None, &["kept_in"], &["kept_out"])).await.unwrap();
    assert!(store.delete("ws_a", "resp_deleted").await.unwrap());
    let wanted = ["gone_in", "gone_out", "del_in", "del_out", "kept_in", "kept_out"];
    assert_eq!(found(&store, "ws_a", &wanted).await, ["kept_in", "kept_out"]);

    // One id in several turns (a turn keeps what it referenced as its own
    // input): the newest stored is found, and an older one once it is gone.
    let one = |id: &str, text: &str| StoredResponse {
        input_items: vec![item("other"), with_text("msg_shared", text)],
        ..turn("ws_a", id, None, &[], &[])
    };
    store.put(&one("resp_s1", "first")).await.unwrap();
    store.put(&one("resp_s2", "second")).await.unwrap();
    store
        .put(&StoredResponse {
            output_items: vec![with_text("msg_shared", "third")],
            ..turn("ws_a", "resp_s3", None, &[], &[])
        })
        .await
        .unwrap();
    assert_eq!(text_of(&store.items("ws_a", &["msg_shared"]).await.unwrap()), [r#""third""#]);
    assert!(store.delete("ws_a", "resp_s3").await.unwrap());
    assert_eq!(text_of(&store.items("ws_a", &["msg_shared"]).await.unwrap()), [r#""second""#]);
    assert!(store.delete("ws_a", "resp_s2").await.unwrap());
    assert_eq!(text_of(&store.items("ws_a", &["msg_shared"]).await.unwrap()), [r#""first""#]);
    // An already expired newer one does not hide the live older one.
    store.put(&StoredResponse { expires_at: now() - 10, ..one("resp_s4", "expired") }).await.unwrap();
    assert_eq!(text_of(&store.items("ws_a", &["msg_shared"]).await.unwrap()), [r#""first""#]);

    // A response id stored again after its expiry holds its new items only,
    // even where another response keeps an old item's id alive.
    store.put(&turn("ws_a", "resp_long", None, &["reused"], &[])).await.unwrap();
    let old = turn("ws_a", "resp_again", None, &["reused", "old_b", "old_c"], &[]);
    store.put(&StoredResponse { expires_at: now() - 10, ..old }).await.unwrap();
    store.put(&turn("ws_a", "resp_again", None, &["new_a"], &["old_b"])).await.unwrap();
    let wanted = ["reused", "old_b", "old_c", "new_a"];
    assert_eq!(found(&store, "ws_a", &wanted).await, ["reused", "old_b", "new_a"], "no item under another's id");
    assert!(store.delete("ws_a", "resp_long").await.unwrap());
    assert_eq!(found(&store, "ws_a", &wanted).await, ["old_b", "new_a"]);

    // A response that expires while stored takes its items with it.
    store
        .put(&StoredResponse { expires_at: now() + 3, ..turn("ws_a", "resp_brief", None, &["brief"], &[]) })
        .await
        .unwrap();
    assert_eq!(found(&store, "ws_a", &["brief"]).await, ["brief"]);
    let deadline = Instant::now() + WAIT;
    while !found(&store, "ws_a", &["brief"]).await.is_empty() {
        assert!(Instant::now() < deadline, "brief still found after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found(&store, "ws_a", &["kept_in", "msg_shared"]).await, ["kept_in", "msg_shared"]);
}

async fn items_by_id_are_bounded(backend: Backend) {
    let Some(env) = Env::start(backend, "items_bound").await else { return };
    let store = env.open().await;
    let names: Vec<String> = (0..=MAX_ITEM_IDS).map(|n| format!("msg_{n:04}")).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    // One turn holds them all; the call looks up at most MAX_ITEM_IDS of the
    // distinct ids asked for, the first ones (repeats do not count).
    store.put(&turn("ws_a", "resp_many", None, &all, &[])).await.unwrap();
    assert_eq!(
        found(&store, "ws_a", &all[..MAX_ITEM_IDS]).await,
        names[..MAX_ITEM_IDS],
        "the bound itself, in one call"
    );
    assert_eq!(found(&store, "ws_a", &all).await, names[..MAX_ITEM_IDS], "the one past the bound is not looked up");
    let mut repeated = vec![all[0]; 5];
    repeated.extend(&all[1..MAX_ITEM_IDS]);
    repeated.push(all[MAX_ITEM_IDS]);
    assert_eq!(found(&store, "ws_a", &repeated).await, names[..MAX_ITEM_IDS]);
    assert_eq!(found(&store, "ws_a", &all[1..]).await, names[1..], "the last one, within the bound");
}

// ---- Redis only: a backend that stops answering ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_stopped_server_is_unavailable_fast_then_recovers() {
    redis_down(Backend::Redis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_a_stopped_server_is_unavailable_fast() {
    redis_down(Backend::RedisCluster).await
}

/// Every call to a stopped Redis fails with `Unavailable` within a bound
/// (the command timeout is 1 s), never hangs; `prune` does not ask Redis. A
/// standalone server that comes back is used again by the same handle.
async fn redis_down(backend: Backend) {
    let Some(mut env) = Env::start(backend, "redis_down").await else { return };
    let store = env.open().await;
    store.put(&chain_turn("ws_a", 1)).await.unwrap();
    env.store.server.as_mut().expect("a Redis backend").stop();

    let bounded = |what: &str, took: Duration, unavailable: bool| {
        assert!(unavailable, "{what}: not Unavailable");
        assert!(took < Duration::from_secs(5), "{what} took {took:?} against a stopped Redis");
    };
    let is_down = |e: &StoreError| matches!(e, StoreError::Unavailable(_));
    for _ in 0..2 {
        let t = Instant::now();
        let put = store.put(&chain_turn("ws_a", 2)).await;
        bounded("put", t.elapsed(), put.as_ref().is_err_and(is_down));
        let t = Instant::now();
        let get = store.get("ws_a", "resp_1").await;
        bounded("get", t.elapsed(), get.as_ref().is_err_and(is_down));
        let t = Instant::now();
        let delete = store.delete("ws_a", "resp_1").await;
        bounded("delete", t.elapsed(), delete.as_ref().is_err_and(is_down));
        let t = Instant::now();
        let page = store.input_items("ws_a", "resp_1", &ItemsQuery::default()).await;
        bounded("input_items", t.elapsed(), page.as_ref().is_err_and(is_down));
        let t = Instant::now();
        let chain = store.history("ws_a", "resp_1", 100).await;
        bounded("history", t.elapsed(), chain.as_ref().is_err_and(is_down));
        let t = Instant::now();
        let items = store.items("ws_a", &["t1_a"]).await;
        bounded("items", t.elapsed(), items.as_ref().is_err_and(is_down));
    }
    assert_eq!(store.prune(now()).await.unwrap(), 0, "prune does not need Redis");
    if backend == Backend::RedisCluster {
        return;
    }

    // Back (empty: the test server keeps nothing on disk); the same handle works again.
    env.store.server.as_mut().unwrap().restart();
    let deadline = Instant::now() + WAIT;
    loop {
        match store.put(&chain_turn("ws_a", 1)).await {
            Ok(()) => break,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("Redis did not come back within {WAIT:?}: {e}"),
        }
    }
    assert_eq!(history(&store, "ws_a", "resp_1", 10).await.unwrap(), chain_ids(1..=1));
}
