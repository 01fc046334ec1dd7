//! The workspace agent store (`tollgate::agents::store`, issue 12 item 4),
//! written once and run on every backend — the embedded file, a standalone
//! `redis-server` and a one-node Redis Cluster (which refuses keys of two
//! slots in one script): `on_embedded::*`, `on_redis::*`,
//! `on_redis_cluster::*`. Each store is opened as the gateway opens it, from
//! a `[store]` section through `Stores::open`.
//!
//! Covered: a record round trips; ids conflict within a workspace only;
//! another workspace sees nothing; pages by id with a cursor; replace and
//! delete of present and absent agents; the default agent set, cleared, and
//! cleared by deleting its agent; a full workspace refuses more; two
//! handles on one backend see each other's writes (two replicas).

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

use serde_json::json;
use store_suite::{Backend, StoreEnv};
use tollgate::agents::store::{AgentRecord, AgentStore, Caps, Inserted, MAX_AGENTS};
use tollgate::config::Price;
use tollgate::memory::{MemoryPolicy, Strategy};
use tollgate::store::Stores;

store_suite!(
    a_record_round_trips,
    ids_conflict_within_a_workspace_only,
    pages_by_id_with_a_cursor,
    replace_and_delete,
    the_default_agent_is_set_cleared_and_follows_deletion,
    a_full_workspace_refuses_more,
    two_handles_see_each_others_writes,
);

struct Env {
    store: StoreEnv,
}

impl Env {
    async fn start(backend: Backend, test: &str) -> Option<Env> {
        Some(Env { store: StoreEnv::start(backend, &format!("agents-{test}"), "tga").await? })
    }

    /// A new handle onto the same data, as another replica opens it.
    async fn open(&self) -> Arc<dyn AgentStore> {
        let stores = Stores::open(&self.store.config.store).await.expect("the store opens");
        tollgate::agents::store::open(&stores)
    }
}

fn agent(ws: &str, id: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        workspace: ws.into(),
        provider: "up".into(),
        upstream_model: "up-model".into(),
        model: None,
        instructions: Some("Be brief. \"Quotes\", ünïcode and\nnewlines survive.".into()),
        defaults: json!({"temperature": 0.25, "seed": 12345678901234567_u64, "stop": []}).as_object().unwrap().clone(),
        caps: Caps { max_tokens: Some(64) },
        price: Price { request: 1000, input_per_1k: 2, output_per_1k: 3 },
        memory: Some(MemoryPolicy { max_messages: Some(4), max_input_tokens: None, strategy: Strategy::Summarize }),
        created_at: 1_700_000_000,
        updated_at: 1_700_000_001,
    }
}

async fn a_record_round_trips(backend: Backend) {
    let Some(env) = Env::start(backend, "round_trip").await else { return };
    let store = env.open().await;
    let a = agent("acme", "support.v2_beta-1");
    assert_eq!(store.insert(&a).await.unwrap(), Inserted::Created);
    assert_eq!(store.get("acme", &a.id).await.unwrap(), Some(a.clone()), "byte for byte, large integers too");
    assert_eq!(store.get("acme", "nope").await.unwrap(), None);
    assert_eq!(store.get("other", &a.id).await.unwrap(), None, "another workspace sees nothing");
    let bare = AgentRecord { instructions: None, memory: None, defaults: Default::default(), ..agent("acme", "bare") };
    store.insert(&bare).await.unwrap();
    assert_eq!(store.get("acme", "bare").await.unwrap(), Some(bare));
}

async fn ids_conflict_within_a_workspace_only(backend: Backend) {
    let Some(env) = Env::start(backend, "conflict").await else { return };
    let store = env.open().await;
    assert_eq!(store.insert(&agent("acme", "a")).await.unwrap(), Inserted::Created);
    let mut other = agent("acme", "a");
    other.instructions = Some("a second one".into());
    assert_eq!(store.insert(&other).await.unwrap(), Inserted::Exists);
    assert_eq!(store.get("acme", "a").await.unwrap(), Some(agent("acme", "a")), "the first one stays");
    assert_eq!(store.insert(&agent("beta", "a")).await.unwrap(), Inserted::Created, "same id, other workspace");
    assert_eq!(store.ids("acme").await.unwrap(), vec!["a"]);
    assert_eq!(store.ids("beta").await.unwrap(), vec!["a"]);
}

async fn pages_by_id_with_a_cursor(backend: Backend) {
    let Some(env) = Env::start(backend, "pages").await else { return };
    let store = env.open().await;
    for id in ["d", "a", "c", "B", "e"] {
        store.insert(&agent("acme", id)).await.unwrap();
    }
    store.insert(&agent("beta", "zz")).await.unwrap();
    let ids = |v: Vec<AgentRecord>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list("acme", None, 2).await.unwrap()), ["B", "a"], "by id, bytewise");
    assert_eq!(ids(store.list("acme", Some("a"), 2).await.unwrap()), ["c", "d"]);
    assert_eq!(ids(store.list("acme", Some("d"), 10).await.unwrap()), ["e"]);
    assert!(store.list("acme", Some("e"), 10).await.unwrap().is_empty());
    assert_eq!(ids(store.list("acme", Some("b"), 10).await.unwrap()), ["c", "d", "e"], "a cursor need not exist");
    assert_eq!(store.ids("acme").await.unwrap(), ["B", "a", "c", "d", "e"]);
    assert!(store.list("nobody", None, 10).await.unwrap().is_empty());
}

async fn replace_and_delete(backend: Backend) {
    let Some(env) = Env::start(backend, "replace").await else { return };
    let store = env.open().await;
    let mut a = agent("acme", "a");
    assert!(!store.replace(&a).await.unwrap(), "nothing to replace yet");
    assert_eq!(store.get("acme", "a").await.unwrap(), None, "and nothing written");
    store.insert(&a).await.unwrap();
    a.instructions = None;
    a.upstream_model = "another".into();
    assert!(store.replace(&a).await.unwrap());
    assert_eq!(store.get("acme", "a").await.unwrap(), Some(a.clone()));
    assert!(!store.delete("beta", "a").await.unwrap(), "another workspace deletes nothing");
    assert!(store.delete("acme", "a").await.unwrap());
    assert!(!store.delete("acme", "a").await.unwrap(), "deleted once");
    assert_eq!(store.get("acme", "a").await.unwrap(), None);
    assert!(store.ids("acme").await.unwrap().is_empty());
    assert_eq!(store.insert(&a).await.unwrap(), Inserted::Created, "the id is free again");
}

async fn the_default_agent_is_set_cleared_and_follows_deletion(backend: Backend) {
    let Some(env) = Env::start(backend, "default").await else { return };
    let store = env.open().await;
    assert_eq!(store.default_agent("acme").await.unwrap(), None);
    store.insert(&agent("acme", "a")).await.unwrap();
    store.insert(&agent("acme", "b")).await.unwrap();
    store.set_default_agent("acme", Some("a")).await.unwrap();
    assert_eq!(store.default_agent("acme").await.unwrap().as_deref(), Some("a"));
    assert_eq!(store.default_agent("beta").await.unwrap(), None);
    store.set_default_agent("acme", None).await.unwrap();
    assert_eq!(store.default_agent("acme").await.unwrap(), None);
    store.set_default_agent("acme", Some("helper")).await.unwrap(); // a config agent: any id the API accepted
    store.delete("acme", "a").await.unwrap();
    assert_eq!(store.default_agent("acme").await.unwrap().as_deref(), Some("helper"), "another agent's deletion");
    store.set_default_agent("acme", Some("b")).await.unwrap();
    store.delete("acme", "b").await.unwrap();
    assert_eq!(store.default_agent("acme").await.unwrap(), None, "deleting the default clears it");
}

async fn a_full_workspace_refuses_more(backend: Backend) {
    let Some(env) = Env::start(backend, "full").await else { return };
    let store = env.open().await;
    let inserts = (0..MAX_AGENTS).map(|i| {
        let store = store.clone();
        async move { store.insert(&agent("acme", &format!("a{i:04}"))).await }
    });
    let done = futures_util::future::join_all(inserts).await;
    assert!(done.iter().all(|r| *r == Ok(Inserted::Created)));
    assert_eq!(store.insert(&agent("acme", "one-more")).await.unwrap(), Inserted::Full);
    assert_eq!(store.insert(&agent("acme", "a0000")).await.unwrap(), Inserted::Exists, "a taken id says so first");
    assert_eq!(store.insert(&agent("beta", "one-more")).await.unwrap(), Inserted::Created, "per workspace");
    assert_eq!(store.list("acme", None, 5000).await.unwrap().len(), MAX_AGENTS, "a list is bounded");
    store.delete("acme", "a0500").await.unwrap();
    assert_eq!(store.insert(&agent("acme", "one-more")).await.unwrap(), Inserted::Created);
}

async fn two_handles_see_each_others_writes(backend: Backend) {
    let Some(env) = Env::start(backend, "replicas").await else { return };
    let (a, b) = (env.open().await, env.open().await);
    a.insert(&agent("acme", "x")).await.unwrap();
    assert_eq!(b.get("acme", "x").await.unwrap(), Some(agent("acme", "x")));
    assert_eq!(b.insert(&agent("acme", "x")).await.unwrap(), Inserted::Exists);
    b.set_default_agent("acme", Some("x")).await.unwrap();
    assert_eq!(a.default_agent("acme").await.unwrap().as_deref(), Some("x"));
    assert!(b.delete("acme", "x").await.unwrap());
    assert_eq!(a.get("acme", "x").await.unwrap(), None);
    assert_eq!(a.default_agent("acme").await.unwrap(), None);
}
