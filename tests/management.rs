//! The management API end to end: workspaces and keys, scopes enforced on every
//! route, plaintext shown once, bad input refused with clear 400s.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{json, Value};
use tollgate::auth::keys::NewKey;
use tollgate::scope::Scope;
use tollgate::store::embedded::EmbeddedStore;
use tollgate::store::Stores;

struct Env {
    _mock: MockUpstream,
    base: String,
    admin_key: String,
    http: reqwest::Client,
    _running: common::Running,
}

/// A gateway with an embedded store holding one admin key (workspace `ops`).
async fn start(name: &str) -> Env {
    let dir = std::env::temp_dir().join(format!("tollgate-mgmt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(EmbeddedStore::open(&dir.join("t.db")).unwrap());
    let stores = Stores::embedded(store);
    let mock = MockUpstream::start().await;
    let toml = format!(
        "{}\n[plans.gold]\nmessage_credits = 100000\nrpm = 600\n[workspaces.seeded]\nname = \"From config\"\nplan = \"gold\"\n",
        config_toml(&Settings::default(), &mock.base_url())
    );
    let config = tollgate::config::Config::from_toml(&toml, "t.toml").unwrap();
    assert_eq!(tollgate::admin::seed_workspaces(&stores, &config).await.unwrap(), vec!["seeded".to_string()]);
    assert!(tollgate::admin::seed_workspaces(&stores, &config).await.unwrap().is_empty(), "seeding is idempotent");
    tollgate::admin::create_workspace(&stores, &config.plans, "ops", None, "default", None).await.unwrap();
    let new = NewKey {
        name: "root".into(),
        workspace: "ops".into(),
        scope: Scope::Admin,
        expires_at: None,
        rpm: None,
        tpm: None,
        models: None,
    };
    let admin_key = tollgate::admin::create_key(&stores, new).await.unwrap().plaintext.expose().clone();
    let running = common::Running::start(tollgate::gateway::Gateway::builder(config).stores(stores)).await;
    Env { _mock: mock, base: running.base(), admin_key, http: client(), _running: running }
}

impl Env {
    async fn call(&self, method: reqwest::Method, key: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = within(path, request.send()).await.unwrap();
        let status = response.status().as_u16();
        (status, within("body", response.json::<Value>()).await.unwrap_or(Value::Null))
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, key, path, Some(body)).await
    }

    async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, key, path, None).await
    }

    /// Creates a key with `by` and returns (id, plaintext).
    async fn key(&self, by: &str, body: Value) -> (String, String) {
        let (status, created) = self.post(by, "/v1/keys", body).await;
        assert_eq!(status, 201, "{created}");
        (created["id"].as_str().unwrap().into(), created["key"].as_str().unwrap().into())
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn create_use_list_revoke_refused() {
    let env = start("flow").await;
    let (status, ws) = env.post(&env.admin_key, "/v1/workspaces", json!({"id": "acme", "name": "Acme"})).await;
    assert_eq!((status, ws["id"].as_str()), (201, Some("acme")), "{ws}");
    assert_eq!(env.get(&env.admin_key, "/v1/workspaces/acme").await.1["name"], "Acme");

    let (_, full) = env.key(&env.admin_key, json!({"name": "acme owner", "workspace": "acme", "scope": "full"})).await;
    let (chat_id, chat) = env.key(&full, json!({"name": "app", "models": [AGENT]})).await;
    assert!(chat.starts_with("tg_") && chat.len() == 67);

    let (status, answer) = env.post(&chat, "/v1/chat/completions", chat_body(AGENT, "hi")).await;
    assert_eq!((status, answer["model"].as_str()), (200, Some(AGENT)), "{answer}");

    let (status, list) = env.get(&full, "/v1/keys").await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains(&chat) && !text.contains(&sha256_hex(&chat)), "no plaintext or hash in lists: {text}");
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    assert!(list["data"].as_array().unwrap().iter().all(|k| k["workspace"] == "acme"));

    let (status, revoked) = env.call(reqwest::Method::DELETE, &full, &format!("/v1/keys/{chat_id}"), None).await;
    assert_eq!((status, revoked["revoked"].as_bool()), (200, Some(true)), "{revoked}");
    let (status, refused) = env.post(&chat, "/v1/chat/completions", chat_body(AGENT, "hi")).await;
    assert_eq!((status, code(&refused)), (401, "invalid_api_key"), "refused at once on the revoking replica");
    let (status, _) = env.call(reqwest::Method::DELETE, &full, &format!("/v1/keys/{chat_id}"), None).await;
    assert_eq!(status, 404, "a key is revoked once");
}

#[tokio::test]
async fn scopes_are_enforced_on_every_route() {
    let env = start("scopes").await;
    for ws in ["acme", "other"] {
        assert_eq!(env.post(&env.admin_key, "/v1/workspaces", json!({"id": ws})).await.0, 201);
    }
    let (_, full) = env.key(&env.admin_key, json!({"name": "o", "workspace": "acme", "scope": "full"})).await;
    let (_, chat) = env.key(&full, json!({"name": "c"})).await;
    let (_, webhook) = env.key(&full, json!({"name": "w", "scope": "webhook"})).await;
    let (other_id, _) = env.key(&env.admin_key, json!({"name": "x", "workspace": "other"})).await;

    let forbidden =
        |(status, body): (u16, Value)| assert_eq!((status, code(&body)), (403, "insufficient_scope"), "{body}");
    forbidden(env.post(&chat, "/v1/keys", json!({"name": "n"})).await);
    // The scope is checked before the body is read: no 413 for a caller who may not post here.
    forbidden(env.post(&chat, "/v1/keys", json!({"name": "x".repeat(5 << 20)})).await);
    forbidden(env.get(&chat, "/v1/keys").await);
    forbidden(env.get(&webhook, "/v1/keys").await);
    forbidden(env.post(&webhook, "/v1/chat/completions", chat_body(AGENT, "hi")).await);
    forbidden(env.post(&full, "/v1/keys", json!({"name": "n", "workspace": "other"})).await);
    forbidden(env.post(&full, "/v1/keys", json!({"name": "n", "scope": "admin"})).await);
    forbidden(env.get(&full, "/v1/keys?workspace=other").await);
    forbidden(env.post(&full, "/v1/workspaces", json!({"id": "mine"})).await);
    forbidden(env.get(&full, "/v1/workspaces/acme").await);
    forbidden(env.post(KEY, "/v1/keys", json!({"name": "n"})).await); // a static config key manages nothing

    let (status, _) = env.call(reqwest::Method::DELETE, &full, &format!("/v1/keys/{other_id}"), None).await;
    assert_eq!(status, 404, "another workspace's key is not found, not forbidden");
    let (acme_admin, _) = env.key(&env.admin_key, json!({"name": "a", "workspace": "acme", "scope": "admin"})).await;
    forbidden(env.call(reqwest::Method::DELETE, &full, &format!("/v1/keys/{acme_admin}"), None).await);
    let (status, listed) = env.get(&env.admin_key, "/v1/keys?workspace=other").await;
    assert_eq!((status, listed["data"].as_array().map(Vec::len)), (200, Some(1)));
    let (status, _) = env.call(reqwest::Method::DELETE, &env.admin_key, &format!("/v1/keys/{other_id}"), None).await;
    assert_eq!(status, 200, "admin reaches every workspace");
}

#[tokio::test]
async fn bad_input_gets_clear_400s() {
    let env = start("bad").await;
    assert_eq!(env.post(&env.admin_key, "/v1/workspaces", json!({"id": "acme"})).await.0, 201);
    let (status, dup) = env.post(&env.admin_key, "/v1/workspaces", json!({"id": "acme"})).await;
    assert_eq!((status, code(&dup)), (409, "conflict"));
    let bad = |body: Value, param: &'static str| {
        let env = &env;
        async move {
            let (status, error) = env.post(&env.admin_key, "/v1/keys", body).await;
            assert_eq!(status, 400, "{error}");
            if !param.is_empty() {
                assert_eq!(error["error"]["param"], param, "{error}");
            }
        }
    };
    bad(json!({"name": "n", "workspace": "acme", "scope": "root"}), "scope").await;
    bad(json!({"name": "n", "workspace": "acme", "expires_at": 1}), "key").await;
    bad(json!({"name": "x".repeat(500), "workspace": "acme"}), "key").await;
    bad(json!({"name": "n", "workspace": "acme", "models": ["no-such-agent"]}), "models").await;
    bad(json!({"name": "n", "workspace": "acme", "colour": "red"}), "colour").await;
    bad(json!({"workspace": "acme"}), "name").await;
    bad(json!({"name": 5, "workspace": "acme"}), "name").await;
    // The code says what is wrong, as on the model API.
    let (_, missing) = env.post(&env.admin_key, "/v1/keys", json!({"workspace": "acme"})).await;
    assert_eq!(code(&missing), "missing_required_parameter", "{missing}");
    let (_, typed) = env.post(&env.admin_key, "/v1/keys", json!({"name": 5, "workspace": "acme"})).await;
    assert_eq!(code(&typed), "invalid_type", "{typed}");
    let (_, unknown) =
        env.post(&env.admin_key, "/v1/keys", json!({"name": "n", "workspace": "acme", "colour": 1})).await;
    assert_eq!(code(&unknown), "invalid_value", "{unknown}");
    let (status, _) = env.post(&env.admin_key, "/v1/workspaces", json!({"id": "Not Valid!"})).await;
    assert_eq!(status, 400);
    let (status, error) = env.post(&env.admin_key, "/v1/workspaces", json!({"id": "x", "plan": "platinum"})).await;
    assert_eq!((status, error["error"]["param"].as_str()), (400, Some("plan")), "{error}");
    let (status, gold) = env.post(&env.admin_key, "/v1/workspaces", json!({"id": "y", "plan": "gold"})).await;
    assert_eq!((status, gold["plan"].as_str()), (201, Some("gold")), "{gold}");
    let (status, seeded) = env.get(&env.admin_key, "/v1/workspaces/seeded").await;
    assert_eq!((status, seeded["name"].as_str()), (200, Some("From config")), "config workspaces are seeded");
    let (status, missing) = env.post(&env.admin_key, "/v1/keys", json!({"name": "n", "workspace": "nope"})).await;
    assert_eq!((status, code(&missing)), (404, "not_found"), "{missing}");

    let raw = env.http.post(format!("{}/v1/keys", env.base)).bearer_auth(&env.admin_key).body("{not json");
    let response = within("malformed", raw.send()).await.unwrap();
    assert_eq!(response.status(), 400);
    // The alias of seed 001 creates keys too.
    let (status, created) =
        env.post(&env.admin_key, "/api/v1/keys/create", json!({"name": "alias", "workspace": "acme"})).await;
    assert_eq!((status, created["object"].as_str()), (201, Some("api_key")), "{created}");
}

#[tokio::test]
async fn a_config_admin_key_manages_workspaces_and_suppresses_the_bootstrap_key() {
    let dir = std::env::temp_dir().join(format!("tollgate-mgmt-config-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(EmbeddedStore::open(&dir.join("t.db")).unwrap());
    let stores = Stores::embedded(store);
    let mock = MockUpstream::start().await;
    let admin_key = "ops-admin-key-from-the-environment";
    let toml = format!(
        "{}\n[[keys]]\nname = \"ops\"\nsha256 = \"{}\"\nscope = \"admin\"\n",
        config_toml(&Settings::default(), &mock.base_url()),
        sha256_hex(admin_key)
    );
    let config = tollgate::config::Config::from_toml(&toml, "t.toml").unwrap();
    assert!(tollgate::admin::bootstrap_admin(&stores, &config).await.unwrap().is_none(), "no key issued");
    let running = common::Running::start(tollgate::gateway::Gateway::builder(config).stores(stores)).await;
    let base = running.base();

    let http = client();
    let created = within(
        "create",
        http.post(format!("{base}/v1/workspaces")).bearer_auth(admin_key).json(&json!({"id": "acme"})).send(),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let listed = within("list", http.get(format!("{base}/v1/keys")).bearer_auth(admin_key).send()).await.unwrap();
    assert_eq!(listed.status(), 200, "the admin workspace exists for the configured admin key");

    let bad = format!("{toml}\n[[keys]]\nname = \"x\"\nsha256 = \"{}\"\nscope = \"full\"\n", sha256_hex("x"));
    let e = tollgate::config::Config::from_toml(&bad, "t.toml").unwrap_err().to_string();
    assert!(e.contains("keys.") && e.contains(".scope"), "{e}");
}

#[tokio::test]
async fn keys_and_workspaces_can_be_read_one_by_one_and_listed() {
    let env = start("read").await;
    let admin = env.admin_key.clone();
    let (status, _) = env.post(&admin, "/v1/workspaces", json!({"id": "acme"})).await;
    assert_eq!(status, 201);
    let (status, list) = env.get(&admin, "/v1/workspaces").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"acme") && ids.contains(&"ops") && ids.contains(&"seeded"), "{ids:?}");
    assert_eq!(list["data"][0]["object"], "workspace");

    let (full_id, full) = env.key(&admin, json!({"name": "owner", "workspace": "acme", "scope": "full"})).await;
    let (chat_id, _) = env.key(&full, json!({"name": "app"})).await;
    let (status, key) = env.get(&full, &format!("/v1/keys/{chat_id}")).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(
        (key["id"].as_str(), key["workspace"].as_str(), key["object"].as_str()),
        (Some(&*chat_id), Some("acme"), Some("api_key"))
    );
    assert!(key.get("key").is_none() && key.get("hash").is_none(), "never the plaintext or the hash: {key}");
    let (status, _) = env.get(&admin, &format!("/v1/keys/{full_id}")).await;
    assert_eq!(status, 200, "an admin reads any workspace's key");

    let (_, other) = env.key(&admin, json!({"name": "other", "workspace": "ops", "scope": "full"})).await;
    let (status, body) = env.get(&other, &format!("/v1/keys/{chat_id}")).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "another workspace's key is not found: {body}");
    let (status, body) = env.get(&full, "/v1/workspaces").await;
    assert_eq!((status, code(&body)), (403, "insufficient_scope"));
    let (status, body) = env.get(&full, "/v1/keys/key_nope").await;
    assert_eq!((status, code(&body)), (404, "not_found"));
}

#[tokio::test]
async fn an_admin_names_the_workspace_of_the_key_it_creates() {
    let env = start("admin-ws").await;
    let (status, body) = env.post(&env.admin_key, "/v1/keys", json!({"name": "where?"})).await;
    assert_eq!((status, code(&body)), (400, "missing_required_parameter"), "{body}");
    assert_eq!(body["error"]["param"], "workspace");
    let (status, body) = env.get(&env.admin_key, "/v1/keys?workspace=ops").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "nothing was created in the admin's own workspace: {body}");
}
