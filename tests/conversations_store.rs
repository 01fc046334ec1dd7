//! The conversation store (`tollgate::conversations`, issue 12 item 1),
//! written once and run on every backend — the embedded file, a standalone
//! `redis-server` and a one-node Redis Cluster, each its own on a free port.
//!
//! Covered: thread records are compare-and-set (a stale version or a second
//! creation loses, also racing: exactly one of many wins), pages by name
//! with a cursor, scope and kind isolation, removal, an expired record is
//! absent and its name free again; and over them the rules of
//! `Conversations`: one lease at a time (the second message is busy), a
//! released or committed lease frees the thread, a commit after the lease was
//! taken over is `LeaseLost`, committed turns chain into the history, and a
//! delete takes the turns with it. Two handles on one backend act as two
//! replicas. Without `redis-server` the Redis tests are skipped loudly
//! (failed under `CI=true`).

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

use serde_json::value::RawValue;
use store_suite::{Backend, StoreEnv};
use tollgate::conversations::{Answered, ConversationError, Conversations, Kind, Thread, ThreadStore};
use tollgate::store::Stores;

store_suite!(
    saves_are_compare_and_set,
    of_racing_saves_exactly_one_wins,
    lists_page_by_name_within_scope_and_kind,
    removed_and_expired_records_are_gone,
    one_message_holds_a_thread_at_a_time,
    committed_turns_chain_and_delete_takes_them,
);

struct Env {
    store: StoreEnv,
}

impl Env {
    async fn start(backend: Backend, test: &str) -> Option<Env> {
        Some(Env { store: StoreEnv::start(backend, &format!("threads-{test}"), "tgt").await? })
    }

    /// A handle onto the backend, as one replica opens it.
    async fn open(&self) -> Conversations {
        let stores = Stores::open(&self.store.config.store).await.expect("the store opens");
        let turns = tollgate::responses::Responses::open(&stores, &self.store.config.responses).store;
        let tasks = tollgate::tasks::Tasks::on_current_runtime();
        Conversations::open(&stores, turns, &self.store.config.responses, &tasks)
    }
}

fn thread(expires_in: i64) -> Thread {
    let now = tollgate::store::now();
    Thread {
        agent: Some("a".into()),
        head: None,
        turns: 0,
        summary: None,
        lease: None,
        created_at: now,
        updated_at: now,
        expires_at: now + expires_in,
    }
}

fn threads(c: &Conversations) -> Arc<dyn ThreadStore> {
    c.threads.clone()
}

async fn saves_are_compare_and_set(backend: Backend) {
    let Some(env) = Env::start(backend, "cas").await else { return };
    let (a, b) = (threads(&env.open().await), threads(&env.open().await));
    assert!(a.load("ws", Kind::Session, "t").await.unwrap().is_none());
    assert!(a.save("ws", Kind::Session, "t", None, &thread(60)).await.unwrap());
    assert!(!b.save("ws", Kind::Session, "t", None, &thread(60)).await.unwrap(), "it exists already");
    let v = b.load("ws", Kind::Session, "t").await.unwrap().unwrap();
    assert_eq!(v.version, 1);
    let mut next = v.thread.clone();
    next.turns = 7;
    assert!(b.save("ws", Kind::Session, "t", Some(1), &next).await.unwrap());
    assert!(!a.save("ws", Kind::Session, "t", Some(1), &thread(60)).await.unwrap(), "a stale version loses");
    let v = a.load("ws", Kind::Session, "t").await.unwrap().unwrap();
    assert_eq!((v.version, v.thread.turns), (2, 7));
    assert_eq!(v.thread, next, "the record round-trips whole");
}

async fn of_racing_saves_exactly_one_wins(backend: Backend) {
    let Some(env) = Env::start(backend, "race").await else { return };
    let store = threads(&env.open().await);
    store.save("ws", Kind::Chat, "r", None, &thread(60)).await.unwrap();
    let mut racers = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            let mut t = thread(60);
            t.turns = n;
            store.save("ws", Kind::Chat, "r", Some(1), &t).await.unwrap()
        }));
    }
    let mut won = 0;
    for racer in racers {
        won += usize::from(racer.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(store.load("ws", Kind::Chat, "r").await.unwrap().unwrap().version, 2);
}

async fn lists_page_by_name_within_scope_and_kind(backend: Backend) {
    let Some(env) = Env::start(backend, "list").await else { return };
    let store = threads(&env.open().await);
    for name in ["c", "a", "e", "b", "d"] {
        store.save("ws", Kind::Session, name, None, &thread(60)).await.unwrap();
    }
    store.save("ws", Kind::Chat, "chat-only", None, &thread(60)).await.unwrap();
    store.save("other", Kind::Session, "a0", None, &thread(60)).await.unwrap();
    let names = |p: &tollgate::conversations::ThreadPage| p.threads.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let first = store.list("ws", Kind::Session, None, 2).await.unwrap();
    assert_eq!((names(&first), first.has_more), (vec!["a".to_owned(), "b".to_owned()], true));
    let second = store.list("ws", Kind::Session, Some("b"), 2).await.unwrap();
    assert_eq!((names(&second), second.has_more), (vec!["c".to_owned(), "d".to_owned()], true));
    let last = store.list("ws", Kind::Session, Some("d"), 2).await.unwrap();
    assert_eq!((names(&last), last.has_more), (vec!["e".to_owned()], false));
    assert_eq!(names(&store.list("ws", Kind::Chat, None, 10).await.unwrap()), ["chat-only"]);
    assert_eq!(names(&store.list("other", Kind::Session, None, 10).await.unwrap()), ["a0"]);
    assert!(store.load("other", Kind::Session, "a").await.unwrap().is_none(), "another scope's name is absent");
}

async fn removed_and_expired_records_are_gone(backend: Backend) {
    let Some(env) = Env::start(backend, "gone").await else { return };
    let store = threads(&env.open().await);
    store.save("ws", Kind::Session, "x", None, &thread(60)).await.unwrap();
    assert!(store.remove("ws", Kind::Session, "x").await.unwrap());
    assert!(!store.remove("ws", Kind::Session, "x").await.unwrap());
    assert!(store.load("ws", Kind::Session, "x").await.unwrap().is_none());
    store.save("ws", Kind::Session, "old", None, &thread(-1)).await.unwrap();
    assert!(store.load("ws", Kind::Session, "old").await.unwrap().is_none(), "expired is absent at once");
    assert!(store.list("ws", Kind::Session, None, 10).await.unwrap().threads.is_empty());
    assert!(store.save("ws", Kind::Session, "old", None, &thread(60)).await.unwrap(), "its name is free again");
}

fn answered(text: &str) -> Answered {
    let item = |role: &str, id: String| {
        let json = serde_json::json!({"id": id, "role": role, "content": text, "created_at": 0});
        RawValue::from_string(json.to_string()).unwrap()
    };
    Answered {
        items: vec![item("user", format!("u-{text}")), item("assistant", format!("a-{text}"))],
        inputs: 1,
        meta: RawValue::from_string("{}".into()).unwrap(),
        summary: None,
        agent: "a".into(),
    }
}

async fn one_message_holds_a_thread_at_a_time(backend: Backend) {
    let Some(env) = Env::start(backend, "lease").await else { return };
    let (a, b) = (env.open().await, env.open().await);
    let held = a.begin("ws", Kind::Session, "l", Some("a")).await.unwrap().unwrap();
    assert!(held.created);
    let busy = b.begin("ws", Kind::Session, "l", None).await.unwrap().unwrap_err();
    assert!(matches!(busy, ConversationError::Busy { retry_after_s } if retry_after_s >= 1), "{busy:?}");
    assert!(a.renew(&held).await.unwrap());
    // Released unanswered, a thread the message created is gone again.
    a.release(&held).await.unwrap();
    assert!(b.get("ws", Kind::Session, "l").await.unwrap().is_none());
    let held = b.begin("ws", Kind::Session, "l", Some("a")).await.unwrap().unwrap();
    b.commit(&held, answered("one")).await.unwrap().unwrap();
    // Committed, it is free for the next message, which does not create it.
    let next = a.begin("ws", Kind::Session, "l", None).await.unwrap().unwrap();
    assert!(!next.created);
    assert_eq!(next.thread.agent.as_deref(), Some("a"));
    a.release(&next).await.unwrap();
    assert_eq!(a.get("ws", Kind::Session, "l").await.unwrap().unwrap().turns, 1, "a release keeps the thread");
}

async fn committed_turns_chain_and_delete_takes_them(backend: Backend) {
    let Some(env) = Env::start(backend, "turns").await else { return };
    let (a, b) = (env.open().await, env.open().await);
    for text in ["one", "two"] {
        let held = a.begin("ws", Kind::Chat, "c", Some("a")).await.unwrap().unwrap();
        a.commit(&held, answered(text)).await.unwrap().unwrap();
    }
    let t = b.get("ws", Kind::Chat, "c").await.unwrap().unwrap();
    let ids: Vec<String> = b
        .messages("ws", Kind::Chat, &t)
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(m.get()).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["u-one", "a-one", "u-two", "a-two"]);
    // A lease taken over (its holder outlived it) makes the late commit lose.
    let late = a.begin("ws", Kind::Chat, "c", None).await.unwrap().unwrap();
    let v = a.threads.load("ws", Kind::Chat, "c").await.unwrap().unwrap();
    let mut taken = v.thread.clone();
    taken.lease = Some(tollgate::conversations::Lease { token: "someone-else".into(), until_ms: i64::MAX });
    assert!(a.threads.save("ws", Kind::Chat, "c", Some(v.version), &taken).await.unwrap());
    assert_eq!(a.commit(&late, answered("three")).await.unwrap(), Err(ConversationError::LeaseLost));
    assert_eq!(b.get("ws", Kind::Chat, "c").await.unwrap().unwrap().turns, 2, "the late turn is not linked");
    // Delete takes the thread and its turns.
    let head = t.head.clone().unwrap();
    assert!(b.delete("ws", Kind::Chat, "c").await.unwrap());
    assert!(b.get("ws", Kind::Chat, "c").await.unwrap().is_none());
    let turn_scope = tollgate::conversations::turn_scope(Kind::Chat, "ws");
    assert!(b.turns.get(&turn_scope, &head).await.unwrap().is_none(), "its turns went with it");
    assert!(!b.delete("ws", Kind::Chat, "c").await.unwrap());
}
