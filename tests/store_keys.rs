//! Store-backed keys through the real gateway: a key issued into the store
//! authenticates; expiry and revocation refuse it; two replicas on one Redis
//! see each other's keys and revocations within the cache TTL (the stated
//! bound); a store that cannot answer refuses unknown keys with 503 while
//! cached keys keep working; `/readyz` is 503 with the reason while Redis
//! is down and 200 again once it returns.

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tollgate::auth::keys::{issue, IssuedKey, NewKey};
use tollgate::scope::Scope;
use tollgate::store::embedded::EmbeddedStore;
use tollgate::store::redis::{RedisStore, Timeouts};
use tollgate::store::{KeyStore, Stores};

/// The key cache TTL of these gateways: the revocation bound under test.
const TTL_MS: u64 = 300;

fn skip(test: &str) {
    tools::skip(test, tools::NO_REDIS);
}

/// A gateway replica on `store`, in front of a mock upstream.
async fn replica(stores: Stores) -> (MockUpstream, std::net::SocketAddr, common::Running) {
    let mock = MockUpstream::start().await;
    let toml =
        format!("{}\n[store]\nkey_cache_ttl_ms = {TTL_MS}\n", config_toml(&Settings::default(), &mock.base_url()));
    let config = tollgate::config::Config::from_toml(&toml, "test.toml").expect("valid config");
    let running = common::Running::start(tollgate::gateway::Gateway::builder(config).stores(stores)).await;
    (mock, running.addr, running)
}

fn new_key(expires_at: Option<i64>) -> IssuedKey {
    let new = NewKey {
        name: "e2e".into(),
        workspace: "ws_e2e".into(),
        scope: Scope::Chat,
        expires_at,
        rpm: None,
        tpm: None,
        models: Some(vec![AGENT.into()]),
    };
    issue(new, tollgate::store::now()).expect("valid key request")
}

async fn models_status(addr: std::net::SocketAddr, key: &str) -> (u16, String) {
    let response = within("models", client().get(format!("http://{addr}/v1/models")).bearer_auth(key).send())
        .await
        .expect("gateway answers");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    (status, body)
}

/// Polls until `addr` refuses `key`; returns how long that took.
async fn until_refused(addr: std::net::SocketAddr, key: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = models_status(addr, key).await;
        if status == 401 {
            assert!(body.contains("invalid_api_key"), "{body}");
            return started.elapsed();
        }
        assert!(started.elapsed() < WAIT, "the revoked key was still accepted after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `tollgate_key_cache_lookups_total{result}` from the replica's `/metrics`.
async fn key_cache(addr: std::net::SocketAddr, result: &str) -> u64 {
    let text =
        within("metrics", client().get(format!("http://{addr}/metrics")).send()).await.unwrap().text().await.unwrap();
    let sample = format!("tollgate_key_cache_lookups_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&sample)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

async fn issue_use_expire_revoke(stores: Stores) {
    let store = stores.keys.clone();
    let (_mock, addr, _stop) = replica(stores).await;
    let live = new_key(None);
    let expired = new_key(Some(tollgate::store::now() + 1));
    store.insert_key(&live.record).await.unwrap();
    store.insert_key(&expired.record).await.unwrap();

    let (status, body) = models_status(addr, live.plaintext.expose()).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![AGENT.to_string()], "the key's allow-list filters /v1/models");
    // The first use asked the store; a second one within the TTL is a cache hit.
    assert_eq!(models_status(addr, live.plaintext.expose()).await.0, 200);
    let (hits, misses) = (key_cache(addr, "hit").await, key_cache(addr, "miss").await);
    assert!(hits >= 1 && misses >= 1, "key cache lookups on /metrics: {hits} hits, {misses} misses");

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = models_status(addr, expired.plaintext.expose()).await;
    assert_eq!((status, body.contains("expired_api_key")), (401, true), "{body}");

    assert!(store.revoke_key(&live.record.id, tollgate::store::now()).await.unwrap());
    let took = until_refused(addr, live.plaintext.expose()).await;
    eprintln!("revocation took effect after {took:?} (cache TTL {TTL_MS} ms)");
    let unknown = format!("tg_{}", "ab".repeat(32));
    assert_eq!(models_status(addr, &unknown).await.0, 401);
}

#[tokio::test]
async fn embedded_store_keys_authenticate_expire_and_revoke() {
    let dir = std::env::temp_dir().join(format!("tollgate-e2e-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(EmbeddedStore::open(&dir.join("t.db")).unwrap());
    issue_use_expire_revoke(Stores::embedded(store)).await;
}

#[tokio::test]
async fn redis_store_keys_authenticate_expire_and_revoke() {
    let Some(server) = redis_server::RedisServer::start() else { return skip("redis_store_keys") };
    let store = RedisStore::connect(&[server.url()], false, "e2e", Timeouts::default()).await.unwrap();
    issue_use_expire_revoke(Stores::redis(Arc::new(store))).await;
}

#[tokio::test]
async fn two_replicas_on_one_redis_share_keys_and_revocations() {
    let Some(server) = redis_server::RedisServer::start() else { return skip("two_replicas") };
    let urls = [server.url()];
    let connect = || RedisStore::connect(&urls, false, "e2e", Timeouts::default());
    let (a, b) = (Arc::new(connect().await.unwrap()), Arc::new(connect().await.unwrap()));
    let (_ma, replica_a, _sa) = replica(Stores::redis(a.clone())).await;
    let (_mb, replica_b, _sb) = replica(Stores::redis(b.clone())).await;

    let key = new_key(None);
    a.insert_key(&key.record).await.unwrap();
    assert_eq!(models_status(replica_a, key.plaintext.expose()).await.0, 200);
    assert_eq!(models_status(replica_b, key.plaintext.expose()).await.0, 200, "replica B sees A's key");

    a.revoke_key(&key.record.id, tollgate::store::now()).await.unwrap();
    let on_b = until_refused(replica_b, key.plaintext.expose()).await;
    let on_a = until_refused(replica_a, key.plaintext.expose()).await;
    eprintln!("revocation seen by replica B after {on_b:?}, A after {on_a:?} (bound: {TTL_MS} ms cache TTL)");
}

#[tokio::test]
async fn an_unreachable_store_refuses_unknown_keys_with_503_and_serves_cached_ones() {
    let Some(mut server) = redis_server::RedisServer::start() else { return skip("unreachable_store") };
    let timeouts = Timeouts { connect: Duration::from_millis(500), response: Duration::from_millis(500) };
    let store = Arc::new(RedisStore::connect(&[server.url()], false, "e2e", timeouts).await.unwrap());
    let mock = MockUpstream::start().await;
    // A long TTL, so the first key stays cached while Redis is down.
    let toml = format!("{}\n[store]\nkey_cache_ttl_ms = 600000\n", config_toml(&Settings::default(), &mock.base_url()));
    let config = tollgate::config::Config::from_toml(&toml, "test.toml").unwrap();
    let running =
        common::Running::start(tollgate::gateway::Gateway::builder(config).stores(Stores::redis(store.clone()))).await;
    let addr = running.addr;

    let cached = new_key(None);
    let uncached = new_key(None);
    store.insert_key(&cached.record).await.unwrap();
    store.insert_key(&uncached.record).await.unwrap();
    assert_eq!(models_status(addr, cached.plaintext.expose()).await.0, 200);

    server.stop();
    let (status, body) = models_status(addr, uncached.plaintext.expose()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store_unavailable"), "{body}");
    assert_eq!(models_status(addr, cached.plaintext.expose()).await.0, 200, "a cached key keeps working");
}

#[tokio::test]
async fn a_store_outage_longer_than_the_ttl_serves_last_known_keys_and_keeps_revocations() {
    let Some(server) = redis_server::RedisServer::start() else { return skip("stale_if_error") };
    let timeouts = Timeouts { connect: Duration::from_millis(300), response: Duration::from_millis(300) };
    let store = Arc::new(RedisStore::connect(&[server.url()], false, "e2e", timeouts).await.unwrap());
    let (_mock, addr, _stop) = replica(Stores::redis(store.clone())).await;
    let (live, revoked, unseen) = (new_key(None), new_key(None), new_key(None));
    for key in [&live, &revoked, &unseen] {
        store.insert_key(&key.record).await.unwrap();
    }
    assert_eq!(models_status(addr, live.plaintext.expose()).await.0, 200);
    assert_eq!(models_status(addr, revoked.plaintext.expose()).await.0, 200);
    // Revoked elsewhere (straight in the store) before the outage; this
    // replica learns it within its TTL.
    store.revoke_key(&revoked.record.id, tollgate::store::now()).await.unwrap();
    until_refused(addr, revoked.plaintext.expose()).await;
    assert_eq!(models_status(addr, live.plaintext.expose()).await.0, 200, "read again within the last TTL");

    server.pause();
    tokio::time::sleep(Duration::from_millis(2 * TTL_MS)).await;
    for _ in 0..3 {
        let (status, body) = models_status(addr, live.plaintext.expose()).await;
        assert_eq!(status, 200, "a key known before the outage keeps working past its TTL: {body}");
    }
    let (status, body) = models_status(addr, revoked.plaintext.expose()).await;
    assert_eq!((status, body.contains("invalid_api_key")), (401, true), "still revoked: {body}");
    let (status, body) = models_status(addr, unseen.plaintext.expose()).await;
    assert_eq!((status, body.contains("store_unavailable")), (503, true), "never seen: {body}");

    // The store answers again: its word wins at once (within the TTL).
    server.resume();
    store.revoke_key(&live.record.id, tollgate::store::now()).await.unwrap();
    until_refused(addr, live.plaintext.expose()).await;
    assert_eq!(models_status(addr, unseen.plaintext.expose()).await.0, 200);
}

async fn readyz(addr: std::net::SocketAddr) -> (u16, String) {
    let response =
        within("readyz", client().get(format!("http://{addr}/readyz")).send()).await.expect("gateway answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn readyz_is_503_with_the_reason_while_redis_is_stopped_and_200_after_it_returns() {
    let Some(mut server) = redis_server::RedisServer::start() else { return skip("readyz_store") };
    let timeouts = Timeouts { connect: Duration::from_millis(300), response: Duration::from_millis(300) };
    let store = Arc::new(RedisStore::connect(&[server.url()], false, "e2e", timeouts).await.unwrap());
    let (_mock, addr, _stop) = replica(Stores::redis(store)).await;
    assert_eq!(readyz(addr).await, (200, r#"{"status":"ready"}"#.to_owned()));

    server.stop();
    let (status, body) = readyz(addr).await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["status"], "store_unavailable");
    assert!(!body["reason"].as_str().unwrap_or_default().is_empty(), "the reason is given: {body}");
    let health = within("healthz", client().get(format!("http://{addr}/healthz")).send()).await.expect("answers");
    assert_eq!(health.status(), 200, "liveness does not ask the store");

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(addr).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready 20 s after Redis returned: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_is_200_on_the_embedded_store() {
    let dir = std::env::temp_dir().join(format!("tollgate-readyz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(EmbeddedStore::open(&dir.join("ready.db")).unwrap());
    let (_mock, addr, _stop) = replica(Stores::embedded(store)).await;
    assert_eq!(readyz(addr).await, (200, r#"{"status":"ready"}"#.to_owned()));
    let _ = std::fs::remove_dir_all(&dir);
}
