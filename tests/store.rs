//! The store layer's behaviour, written once and run against every backend:
//! the embedded SQLite file, a standalone Redis and a one-node Redis Cluster
//! (which enforces the Cluster's one-slot rules). Each behaviour is a generic
//! function over [`Backend`]; `behaviours!` turns it into one test per backend
//! (`on_embedded::name`, `on_redis::name`, `on_redis_cluster::name`).
//!
//! Every Redis test starts its own `redis-server` on a free port (see
//! `support/redis_server.rs`); without one installed they are skipped, loudly,
//! outside CI. Redis-only behaviours (failure and recovery, prefixes, damaged
//! data) follow the shared suite.

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis_server::{Options, RedisServer};
use tollgate::scope::Scope;
use tollgate::store::embedded::EmbeddedStore;
use tollgate::store::redis::{RedisStore, Timeouts};
use tollgate::store::{KeyRecord, KeyStore, StoreError, Workspace, WorkspaceStore};

/// The longest a wait for recovery may take before the test fails; generous,
/// for a slow, loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);

/// One backend under test: fresh, empty storage, and handles onto it.
#[async_trait]
trait Backend: Sized + Send + Sync + 'static {
    type Store: KeyStore + WorkspaceStore;
    /// `None` when the backend cannot run here (no `redis-server`).
    async fn start() -> Option<Self>;
    /// A new handle onto the same data, as a restarted replica would open it.
    async fn open(&self) -> Arc<Self::Store>;
}

struct Embedded {
    dir: PathBuf,
}

#[async_trait]
impl Backend for Embedded {
    type Store = EmbeddedStore;

    async fn start() -> Option<Embedded> {
        Some(Embedded { dir: temp_dir("embedded") })
    }

    async fn open(&self) -> Arc<EmbeddedStore> {
        Arc::new(EmbeddedStore::open(&self.dir.join("tollgate.db")).expect("open the embedded store"))
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Redis {
    server: RedisServer,
    cluster: bool,
}

#[async_trait]
impl Backend for Redis {
    type Store = RedisStore;

    async fn start() -> Option<Redis> {
        Some(Redis { server: RedisServer::start()?, cluster: false })
    }

    async fn open(&self) -> Arc<RedisStore> {
        Arc::new(connect(&self.server, self.cluster, "tollgate").await)
    }
}

/// A one-node Redis Cluster.
struct RedisCluster(Redis);

#[async_trait]
impl Backend for RedisCluster {
    type Store = RedisStore;

    async fn start() -> Option<RedisCluster> {
        let server = RedisServer::start_with(Options { cluster: true, ..Options::default() })?;
        Some(RedisCluster(Redis { server, cluster: true }))
    }

    async fn open(&self) -> Arc<RedisStore> {
        self.0.open().await
    }
}

async fn connect(server: &RedisServer, cluster: bool, prefix: &str) -> RedisStore {
    let timeouts = Timeouts { connect: Duration::from_secs(2), response: Duration::from_secs(1) };
    RedisStore::connect(&[server.url()], cluster, prefix, timeouts).await.expect("connect to redis-server")
}

fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-store-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts backend `B` and runs one behaviour on it.
async fn run<B: Backend, F: Future<Output = ()>>(test: &str, behaviour: impl FnOnce(B) -> F) {
    match B::start().await {
        Some(backend) => behaviour(backend).await,
        None => tools::skip(test, tools::NO_REDIS),
    }
}

macro_rules! behaviours {
    ($($name:ident),* $(,)?) => {
        mod on_embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::run(concat!(module_path!(), "::", stringify!($name)), super::$name::<super::Embedded>).await
            })*
        }
        mod on_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::run(concat!(module_path!(), "::", stringify!($name)), super::$name::<super::Redis>).await
            })*
        }
        mod on_redis_cluster {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::run(concat!(module_path!(), "::", stringify!($name)), super::$name::<super::RedisCluster>).await
            })*
        }
    };
}

behaviours!(
    keys_round_trip_every_field,
    duplicate_id_or_hash_conflicts,
    list_keys_is_one_workspace_oldest_first,
    revoke_sets_revoked_at_once,
    touch_keys_only_moves_forward,
    workspaces_round_trip_conflict_and_list_by_id,
    data_survives_reopening,
    concurrent_inserts_all_land_and_duplicates_lose,
);

fn key(id: &str, hash: &str, workspace: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        hash: hash.into(),
        prefix: "tg_0123abcd".into(),
        name: "ci".into(),
        workspace: workspace.into(),
        scope: Scope::Chat,
        expires_at: None,
        rpm: None,
        tpm: None,
        models: None,
        created_at,
        last_used_at: None,
        revoked_at: None,
    }
}

fn workspace(id: &str, time_zone: Option<&str>) -> Workspace {
    Workspace {
        id: id.into(),
        name: format!("Workspace {id}"),
        plan: "free".into(),
        time_zone: time_zone.map(Into::into),
        low_credits_threshold: Some(1_000_000),
        created_at: 1_700_000_000,
    }
}

async fn keys_round_trip_every_field<B: Backend>(backend: B) {
    let store = backend.open().await;
    let full = KeyRecord {
        id: "key_full".into(),
        hash: "a".repeat(64),
        prefix: "tg_1a2b3c4d".into(),
        name: "deploy bot / \"prod\" {ws} — ünïcode".into(),
        workspace: "ws_1".into(),
        scope: Scope::Admin,
        expires_at: Some(i64::MAX),
        rpm: Some(u32::MAX),
        tpm: Some(0),
        models: Some(vec!["support-agent".into(), "gpt-4o-mini".into()]),
        created_at: 1_700_000_000,
        last_used_at: Some(1_700_000_100),
        revoked_at: Some(1_700_000_200),
    };
    let bare = KeyRecord { scope: Scope::Webhook, name: String::new(), ..key("key_bare", &"b".repeat(64), "ws_1", 0) };
    let no_models = KeyRecord { scope: Scope::Full, models: Some(vec![]), ..key("key_empty", "c", "ws_1", -5) };
    for k in [&full, &bare, &no_models] {
        store.insert_key(k).await.unwrap();
    }
    for k in [&full, &bare, &no_models] {
        assert_eq!(store.key_by_hash(&k.hash).await.unwrap().as_ref(), Some(k), "by hash");
        assert_eq!(store.key_by_id(&k.id).await.unwrap().as_ref(), Some(k), "by id");
    }
    assert_eq!(store.key_by_hash(&"f".repeat(64)).await.unwrap(), None);
    assert_eq!(store.key_by_id("key_unknown").await.unwrap(), None);
    assert_eq!(store.key_by_id(&full.hash).await.unwrap(), None, "a hash is not an id");
}

async fn duplicate_id_or_hash_conflicts<B: Backend>(backend: B) {
    let store = backend.open().await;
    let original = key("key_a", "h1", "ws_1", 10);
    store.insert_key(&original).await.unwrap();
    assert_eq!(store.insert_key(&key("key_a", "h2", "ws_2", 20)).await, Err(StoreError::Conflict("key key_a".into())));
    assert!(matches!(store.insert_key(&key("key_b", "h1", "ws_1", 20)).await, Err(StoreError::Conflict(_))));
    // The losers left nothing behind: the original is intact, their ids and
    // hashes are free.
    assert_eq!(store.key_by_hash("h1").await.unwrap(), Some(original.clone()));
    assert_eq!(store.key_by_id("key_a").await.unwrap(), Some(original.clone()));
    assert_eq!(store.key_by_hash("h2").await.unwrap(), None);
    assert_eq!(store.key_by_id("key_b").await.unwrap(), None);
    assert_eq!(store.list_keys("ws_1").await.unwrap(), vec![original.clone()]);
    assert_eq!(store.list_keys("ws_2").await.unwrap(), vec![]);
    store.insert_key(&key("key_b", "h2", "ws_1", 30)).await.unwrap();
    assert_eq!(store.key_by_id("key_b").await.unwrap().map(|k| k.hash), Some("h2".into()));
}

async fn list_keys_is_one_workspace_oldest_first<B: Backend>(backend: B) {
    let store = backend.open().await;
    for (id, ws, created_at) in [
        ("key_c", "ws_1", 30),
        ("key_x", "ws_2", 5),
        ("key_a", "ws_1", 10),
        ("key_e", "ws_1", 20),
        ("key_d", "ws_1", 20),
    ] {
        store.insert_key(&key(id, &format!("hash_{id}"), ws, created_at)).await.unwrap();
    }
    store.revoke_key("key_a", 40).await.unwrap();
    let listed = store.list_keys("ws_1").await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["key_a", "key_d", "key_e", "key_c"], "by created_at, then id; revoked included");
    assert_eq!(listed[0].revoked_at, Some(40));
    assert_eq!(store.list_keys("ws_2").await.unwrap(), vec![key("key_x", "hash_key_x", "ws_2", 5)]);
    assert_eq!(store.list_keys("ws_unknown").await.unwrap(), vec![]);
}

async fn revoke_sets_revoked_at_once<B: Backend>(backend: B) {
    let store = backend.open().await;
    let k = KeyRecord { models: Some(vec!["demo".into()]), rpm: Some(60), ..key("key_a", "h1", "ws_1", 10) };
    store.insert_key(&k).await.unwrap();
    assert!(store.revoke_key("key_a", 1_800_000_000).await.unwrap());
    assert!(!store.revoke_key("key_a", 1_900_000_000).await.unwrap(), "already revoked");
    let expected = KeyRecord { revoked_at: Some(1_800_000_000), ..k };
    assert_eq!(store.key_by_id("key_a").await.unwrap(), Some(expected.clone()), "first time kept, rest untouched");
    assert_eq!(store.key_by_hash("h1").await.unwrap(), Some(expected), "a revoked key is still found");
    assert!(!store.revoke_key("key_unknown", 1).await.unwrap());
    assert_eq!(store.key_by_id("key_unknown").await.unwrap(), None, "revoking creates nothing");
}

async fn touch_keys_only_moves_forward<B: Backend>(backend: B) {
    let store = backend.open().await;
    store.insert_key(&key("key_a", "h1", "ws_1", 10)).await.unwrap();
    store.insert_key(&key("key_b", "h2", "ws_1", 10)).await.unwrap();
    let last_used = |id: &'static str| {
        let store = store.clone();
        async move { store.key_by_id(id).await.unwrap().unwrap().last_used_at }
    };
    store.touch_keys(&[]).await.unwrap();
    assert_eq!(last_used("key_a").await, None);
    store.touch_keys(&[("key_a".into(), 100), ("key_unknown".into(), 100)]).await.unwrap();
    assert_eq!(last_used("key_a").await, Some(100));
    assert_eq!(last_used("key_b").await, None, "only the keys named");
    assert_eq!(store.key_by_id("key_unknown").await.unwrap(), None, "touching creates nothing");
    store.touch_keys(&[("key_a".into(), 50)]).await.unwrap();
    assert_eq!(last_used("key_a").await, Some(100), "never backwards");
    store.touch_keys(&[("key_a".into(), 300), ("key_a".into(), 250), ("key_b".into(), 7)]).await.unwrap();
    assert_eq!(last_used("key_a").await, Some(300), "the latest of a batch wins");
    assert_eq!(last_used("key_b").await, Some(7));
    store.revoke_key("key_b", 8).await.unwrap();
    store.touch_keys(&[("key_b".into(), 9)]).await.unwrap();
    let b = store.key_by_id("key_b").await.unwrap().unwrap();
    assert_eq!((b.last_used_at, b.revoked_at), (Some(9), Some(8)), "touch and revoke leave each other's field alone");
}

async fn workspaces_round_trip_conflict_and_list_by_id<B: Backend>(backend: B) {
    let store = backend.open().await;
    assert_eq!(store.list_workspaces().await.unwrap(), vec![]);
    let (b, a, c) = (workspace("ws_b", Some("Europe/Berlin")), workspace("ws_a", None), workspace("ws_c", None));
    for ws in [&b, &a, &c] {
        store.insert_workspace(ws).await.unwrap();
    }
    let rival = Workspace { name: "Impostor".into(), ..a.clone() };
    assert_eq!(store.insert_workspace(&rival).await, Err(StoreError::Conflict("workspace ws_a".into())));
    assert_eq!(store.workspace("ws_a").await.unwrap(), Some(a.clone()), "the first one stands");
    assert_eq!(store.workspace("ws_b").await.unwrap(), Some(b.clone()));
    assert_eq!(store.workspace("ws_unknown").await.unwrap(), None);
    assert_eq!(store.list_workspaces().await.unwrap(), vec![a, b, c]);
}

async fn data_survives_reopening<B: Backend>(backend: B) {
    let ws = workspace("ws_1", Some("America/New_York"));
    let k = KeyRecord { models: Some(vec!["demo".into()]), ..key("key_a", "h1", "ws_1", 10) };
    {
        let store = backend.open().await;
        store.insert_workspace(&ws).await.unwrap();
        store.insert_key(&k).await.unwrap();
        store.insert_key(&key("key_b", "h2", "ws_1", 20)).await.unwrap();
        store.revoke_key("key_b", 30).await.unwrap();
        store.touch_keys(&[("key_a".into(), 40)]).await.unwrap();
    }
    let store = backend.open().await;
    assert_eq!(store.list_workspaces().await.unwrap(), vec![ws]);
    let listed = store.list_keys("ws_1").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], KeyRecord { last_used_at: Some(40), ..k });
    assert_eq!(listed[1].revoked_at, Some(30));
    assert!(matches!(store.insert_key(&key("key_a", "h3", "ws_1", 50)).await, Err(StoreError::Conflict(_))));
}

async fn concurrent_inserts_all_land_and_duplicates_lose<B: Backend>(backend: B) {
    let store = backend.open().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.insert_key(&key(&format!("key_{i:03}"), &format!("hash_{i}"), "ws_1", 1_000 + i)).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let listed = store.list_keys("ws_1").await.unwrap();
    let ids: Vec<String> = listed.iter().map(|k| k.id.clone()).collect();
    assert_eq!(ids, (0..50).map(|i| format!("key_{i:03}")).collect::<Vec<_>>());

    // Twenty racers on one id, then twenty on one hash: one winner each.
    for same_id in [true, false] {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                let (id, hash) = if same_id {
                    ("key_race".to_string(), format!("race_{i}"))
                } else {
                    (format!("key_race_{i}"), "race_hash".to_string())
                };
                tokio::spawn(async move { store.insert_key(&key(&id, &hash, "ws_2", i)).await })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => won += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(e) => panic!("a racer failed: {e}"),
            }
        }
        assert_eq!(won, 1, "exactly one insert wins (same id: {same_id})");
    }
    assert_eq!(store.list_keys("ws_2").await.unwrap().len(), 2);
}

// ---- Redis only ----

/// Starts a Redis backend with `options`, or records the skip.
fn redis_server(test: &str, options: Options) -> Option<RedisServer> {
    let server = RedisServer::start_with(options);
    if server.is_none() {
        tools::skip(test, tools::NO_REDIS);
    }
    server
}

/// A stopped Redis makes calls fail with `Unavailable` within a bound, never
/// hang; once it is back (same append-only file), the same store — not
/// rebuilt — serves the data written before the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_fast_then_reconnects_with_data_intact() {
    let Some(mut server) = redis_server("redis_down_fails_fast", Options { persistent: true, cluster: false }) else {
        return;
    };
    let store = connect(&server, false, "tollgate").await;
    store.insert_workspace(&workspace("ws_1", None)).await.unwrap();
    store.insert_key(&key("key_a", "h1", "ws_1", 10)).await.unwrap();

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let answer = store.key_by_hash("h1").await;
        let took = started.elapsed();
        assert!(matches!(answer, Err(StoreError::Unavailable(_))), "got {answer:?}");
        assert!(took < Duration::from_secs(5), "a call to a stopped Redis took {took:?}");
        let answer = store.insert_key(&key("key_b", "h2", "ws_1", 20)).await;
        assert!(matches!(answer, Err(StoreError::Unavailable(_))), "got {answer:?}");
    }

    server.restart();
    let deadline = Instant::now() + WAIT;
    let found = loop {
        match store.key_by_hash("h1").await {
            Ok(found) => break found,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("Redis did not come back within {WAIT:?}: {e}"),
        }
    };
    assert_eq!(found, Some(key("key_a", "h1", "ws_1", 10)), "the append-only file kept the key");
    assert_eq!(store.list_workspaces().await.unwrap(), vec![workspace("ws_1", None)]);
    store.insert_key(&key("key_b", "h2", "ws_1", 20)).await.unwrap();
}

#[tokio::test]
async fn redis_connect_to_nothing_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let timeouts = Timeouts { connect: Duration::from_millis(500), response: Duration::from_millis(500) };
    let started = Instant::now();
    let answer = RedisStore::connect(&[format!("redis://127.0.0.1:{port}/")], false, "tollgate", timeouts).await;
    assert!(matches!(answer, Err(StoreError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    for (urls, prefix) in [(vec![], "tollgate"), (vec!["redis://a/".into(), "redis://b/".into()], "tollgate")] {
        assert!(matches!(RedisStore::connect(&urls, false, prefix, timeouts).await, Err(StoreError::Unavailable(_))));
    }
    let one = [format!("redis://127.0.0.1:{port}/")];
    for prefix in ["", "a{b}"] {
        assert!(matches!(RedisStore::connect(&one, false, prefix, timeouts).await, Err(StoreError::Unavailable(_))));
    }
}

/// Two deployments sharing one Redis under different prefixes see nothing of
/// each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_key_prefixes_keep_deployments_apart() {
    let Some(server) = redis_server("redis_key_prefixes", Options::default()) else {
        return;
    };
    let (one, two) = (connect(&server, false, "one").await, connect(&server, false, "two").await);
    one.insert_workspace(&workspace("ws_1", None)).await.unwrap();
    one.insert_key(&key("key_a", "h1", "ws_1", 10)).await.unwrap();
    assert_eq!(two.key_by_hash("h1").await.unwrap(), None);
    assert_eq!(two.list_workspaces().await.unwrap(), vec![]);
    two.insert_workspace(&workspace("ws_1", None)).await.unwrap();
    two.insert_key(&key("key_a", "h1", "ws_1", 10)).await.unwrap();
    assert_eq!(server.command(&["EXISTS", "one:key:{ws_1}:key_a"]), ":1", "the schema's key names");
}

/// What a crash mid-insert can leave (an index without its record) reads as
/// absent; data the gateway cannot read is `Corrupt`, not a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dangling_indexes_are_absent_and_bad_data_is_corrupt() {
    let Some(server) = redis_server("redis_dangling_indexes", Options::default()) else {
        return;
    };
    let store = connect(&server, false, "tollgate").await;
    store.insert_key(&key("key_ok", "h_ok", "ws_1", 5)).await.unwrap();
    // An insert that stopped after claiming its id and hash and listing itself.
    server.command(&["SET", "tollgate:keyid:key_x", "ws_1"]);
    server.command(&["SET", "tollgate:keyhash:h_x", r#"["ws_1","key_x"]"#]);
    server.command(&["ZADD", "tollgate:ws:{ws_1}:keys", "1", "key_x"]);
    server.command(&["SADD", "tollgate:workspaces", "ws_x"]);
    assert_eq!(store.key_by_hash("h_x").await.unwrap(), None);
    assert_eq!(store.key_by_id("key_x").await.unwrap(), None);
    assert!(!store.revoke_key("key_x", 1).await.unwrap());
    store.touch_keys(&[("key_x".into(), 1)]).await.unwrap();
    assert_eq!(store.key_by_id("key_x").await.unwrap(), None, "touch wrote no partial record");
    let ids: Vec<String> = store.list_keys("ws_1").await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(ids, ["key_ok"]);
    assert_eq!(store.list_workspaces().await.unwrap(), vec![]);
    assert!(matches!(store.insert_key(&key("key_x", "h_new", "ws_1", 1)).await, Err(StoreError::Conflict(_))));

    server.command(&["HSET", "tollgate:key:{ws_1}:key_ok", "scope", "root"]);
    assert!(matches!(store.key_by_hash("h_ok").await, Err(StoreError::Corrupt(_))));
    server.command(&["HSET", "tollgate:key:{ws_1}:key_ok", "scope", "chat", "models", "not json"]);
    assert!(matches!(store.key_by_id("key_ok").await, Err(StoreError::Corrupt(_))));
    server.command(&["SET", "tollgate:ws:{ws_1}", "{"]);
    assert!(matches!(store.workspace("ws_1").await, Err(StoreError::Corrupt(_))));
    server.command(&["SET", "tollgate:keyid:key_str", "ws_1"]);
    server.command(&["SET", "tollgate:key:{ws_1}:key_str", "a string, not a hash"]);
    assert!(matches!(store.key_by_id("key_str").await, Err(StoreError::Corrupt(_))));
}
