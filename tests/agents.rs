//! Workspace agents end to end (issue 12 item 4): the real gateway on the
//! embedded store and on a real `redis-server` of the test's own
//! (`on_embedded::*`, `on_redis::*`), a recording mock upstream behind it.
//!
//! Covered: `/v1/agents` CRUD with pages, every validation error naming its
//! field, 409 against config ids and existing agents, scopes; another
//! workspace's agent is a 404 everywhere and absent from its `/v1/models`;
//! an agent answers chat completions with its instructions, defaults and cap
//! reaching the upstream and its price charged; `PATCH` changes the next
//! call, `DELETE` makes the model a 404; `agent.*` events; the workspace's
//! default agent; a second replica sees a change within the key-cache TTL
//! (polled, never a fixed sleep); Redis down → 503 for an id the config
//! does not know.

mod common;
#[macro_use]
#[path = "support/backends.rs"]
mod backends;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use redis_server::RedisServer;
use reqwest::Method;
use serde_json::{json, Value};
use tollgate::auth::keys::NewKey;
use tollgate::scope::Scope;
use tollgate::store::Stores;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    Redis,
}

on_both_backends!(
    crud_pages_and_validation,
    another_workspace_sees_nothing,
    an_agent_answers_is_charged_and_follows_changes,
    changes_emit_agent_events,
    the_workspace_default_agent,
    another_replica_sees_changes_within_the_cache_ttl,
);

/// How long a replica may keep an answer about an agent: short, so the
/// replica test polls for well under a second.
const CACHE_TTL_MS: u64 = 300;
/// The price of the agents these tests charge for (micro-credits a call).
const PRICE: u64 = 1000;

static ENVS: AtomicUsize = AtomicUsize::new(0);

struct Replica {
    base: String,
    usage: Arc<RecordingSink>,
    app: Arc<tollgate::app::App>,
    _running: Running,
}

struct Env {
    backend: Backend,
    mock: MockUpstream,
    config: tollgate::config::Config,
    stores: Stores,
    replicas: Vec<Replica>,
    admin: String,
    /// `full` keys of workspaces `acme` (metered) and `beta`.
    acme: String,
    beta: String,
    /// A `chat` key of `acme`.
    acme_chat: String,
    http: reqwest::Client,
    dir: std::path::PathBuf,
    redis: Option<RedisServer>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    async fn start(backend: Backend, test: &str) -> Option<Env> {
        let redis = match backend {
            Backend::Embedded => None,
            Backend::Redis => match RedisServer::start() {
                Some(server) => Some(server),
                None => {
                    tools::skip(&format!("{test} on Redis"), tools::NO_REDIS);
                    return None;
                }
            },
        };
        let n = ENVS.fetch_add(1, Ordering::Relaxed);
        let url = redis.as_ref().map(RedisServer::url);
        let (dir, store) = backends::fresh_store(&format!("agents-{test}"), n, url.as_deref(), "tgag");
        let mock = MockUpstream::start().await;
        let toml = format!(
            "{}\n[plans.metered]\nmessage_credits = 10\n{store}key_cache_ttl_ms = {CACHE_TTL_MS}\n",
            config_toml(&Settings::default(), &mock.base_url()),
        );
        let config = tollgate::config::Config::from_toml(&toml, "test.toml").expect("the test config is valid");
        let stores = Stores::open(&config.store).await.expect("the store opens");
        let plans = &config.plans;
        for (ws, plan) in [("ops", "default"), ("acme", "metered"), ("beta", "default")] {
            tollgate::admin::create_workspace(&stores, plans, ws, None, plan, None).await.unwrap();
        }
        let key = |ws: &str, scope| {
            let new = NewKey {
                name: "k".into(),
                workspace: ws.into(),
                scope,
                expires_at: None,
                rpm: None,
                tpm: None,
                models: None,
            };
            let stores = stores.clone();
            async move { tollgate::admin::create_key(&stores, new).await.unwrap().plaintext.expose().clone() }
        };
        let (admin, acme, beta) =
            (key("ops", Scope::Admin).await, key("acme", Scope::Full).await, key("beta", Scope::Full).await);
        let acme_chat = key("acme", Scope::Chat).await;
        let mut env = Env {
            backend,
            mock,
            config,
            stores,
            replicas: Vec::new(),
            admin,
            acme,
            beta,
            acme_chat,
            http: client(),
            dir,
            redis,
        };
        env.add_replica().await;
        Some(env)
    }

    /// Another gateway on the same store (on Redis with its own connection).
    async fn add_replica(&mut self) {
        let stores = match self.backend {
            Backend::Embedded => self.stores.clone(),
            Backend::Redis => Stores::open(&self.config.store).await.expect("the store opens"),
        };
        let usage = Arc::new(RecordingSink::default());
        let builder = tollgate::gateway::Gateway::builder(self.config.clone()).stores(stores).usage_sink(usage.clone());
        let running = Running::start(builder).await;
        let (base, app) = (running.base(), running.app.clone());
        self.replicas.push(Replica { base, usage, app, _running: running });
    }

    async fn call_on(
        &self,
        replica: usize,
        method: Method,
        key: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.replicas[replica].base)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = within(path, request.send()).await.expect("the request reaches the gateway");
        let status = response.status().as_u16();
        (status, within("the body", response.json::<Value>()).await.unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, key: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_on(0, method, key, path, body).await
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, key, path, Some(body)).await
    }

    async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        self.call(Method::GET, key, path, None).await
    }

    async fn patch(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, key, path, Some(body)).await
    }

    async fn delete(&self, key: &str, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, key, path, None).await
    }

    /// Creates an agent in `acme` (its full key) and returns it.
    async fn agent(&self, body: Value) -> Value {
        let (status, created) = self.post(&self.acme, "/v1/agents", body).await;
        assert_eq!(status, 201, "{created}");
        created
    }

    async fn chat_on(&self, replica: usize, key: &str, model: &str) -> (u16, Value) {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 500});
        self.call_on(replica, Method::POST, key, "/v1/chat/completions", Some(body)).await
    }
}

/// A chat key of `workspace`, as the auth layer makes it.
fn principal(workspace: &str) -> tollgate::auth::Principal {
    tollgate::auth::Principal {
        key_id: None,
        name: "t".into(),
        workspace: Some(workspace.into()),
        scope: Scope::Chat,
        expires_at: None,
        revoked: false,
        models: None,
        rpm: None,
        tpm: None,
    }
}

/// A full agent body: instructions, defaults, a cap, a price and memory.
fn support(id: &str, instructions: &str) -> Value {
    json!({
        "id": id,
        "provider": "up",
        "upstream_model": "support-up",
        "instructions": instructions,
        "defaults": {"temperature": 0.1},
        "caps": {"max_tokens": 42},
        "price": {"request": PRICE},
        "memory": {"max_messages": 6, "strategy": "truncate"},
    })
}

/// Asserts a 4xx error body: status, code and param.
fn refused(answer: &(u16, Value), status: u16, code: &str, param: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["param"].as_str(), param, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

async fn crud_pages_and_validation(backend: Backend) {
    let Some(env) = Env::start(backend, "crud").await else { return };
    let created = env.agent(support("support", "Be kind.")).await;
    assert_eq!(created["object"], "agent");
    assert_eq!((created["id"].as_str(), created["workspace"].as_str()), (Some("support"), Some("acme")));
    assert_eq!(created["caps"]["max_tokens"], 42);
    assert_eq!(created["price"], json!({"request": PRICE, "input_per_1k": 0, "output_per_1k": 0}));
    assert_eq!(created["memory"]["max_messages"], 6);
    assert_eq!(env.get(&env.acme, "/v1/agents/support").await, (200, created.clone()));

    // From a model alias: its provider, upstream model and price.
    let from_alias = env.agent(json!({"id": "Small.v1", "model": ALIAS})).await;
    assert_eq!(
        (from_alias["provider"].as_str(), from_alias["upstream_model"].as_str()),
        (Some("up"), Some(ALIAS_UPSTREAM_MODEL))
    );
    assert_eq!(from_alias["model"], ALIAS);
    // An admin names the workspace.
    let (status, by_admin) =
        env.post(&env.admin, "/v1/agents", json!({"id": "a-3", "model": ALIAS, "workspace": "acme"})).await;
    assert_eq!((status, by_admin["workspace"].as_str()), (201, Some("acme")), "{by_admin}");

    // Pages by id: "Small.v1" < "a-3" < "support" bytewise.
    let (status, page) = env.get(&env.acme, "/v1/agents?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let ids = |page: &Value| {
        page["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!((ids(&page), page["has_more"].as_bool()), (vec!["Small.v1".to_owned(), "a-3".to_owned()], Some(true)));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = env.get(&env.acme, &format!("/v1/agents?limit=2&after={cursor}")).await;
    assert_eq!(
        (ids(&rest), rest["has_more"].as_bool(), &rest["next_cursor"]),
        (vec!["support".to_owned()], Some(false), &Value::Null)
    );
    assert_eq!(ids(&env.get(&env.admin, "/v1/agents?workspace=acme").await.1).len(), 3);
    refused(&env.get(&env.acme, "/v1/agents?limit=0").await, 400, "invalid_value", Some("limit"));

    // PATCH: present fields replace; null clears instructions.
    let (status, patched) =
        env.patch(&env.acme, "/v1/agents/support", json!({"instructions": null, "caps": {"max_tokens": 7}})).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!((patched["instructions"].clone(), patched["caps"]["max_tokens"].clone()), (Value::Null, json!(7)));
    assert_eq!(patched["defaults"], json!({"temperature": 0.1}), "untouched fields stay");
    refused(
        &env.patch(&env.acme, "/v1/agents/support", json!({"id": "renamed"})).await,
        400,
        "invalid_value",
        Some("id"),
    );
    refused(&env.patch(&env.acme, "/v1/agents/nope", json!({"instructions": "x"})).await, 404, "not_found", None);

    // Validation, each naming its field.
    let bad = |patch: Value| {
        let mut body = support("fine", "x");
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        body
    };
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (bad(json!({"id": "has space"})), 400, "invalid_value", Some("id")),
        (bad(json!({"id": "x".repeat(129)})), 400, "invalid_value", Some("id")),
        (bad(json!({"id": ""})), 400, "invalid_value", Some("id")),
        (bad(json!({"provider": "nowhere"})), 400, "invalid_value", Some("provider")),
        (bad(json!({"defaults": {"stream": true}})), 400, "invalid_value", Some("defaults")),
        (bad(json!({"memory": {"max_messages": 0}})), 400, "invalid_value", Some("memory.max_messages")),
        (bad(json!({"memory": {"strategy": "forget"}})), 400, "invalid_value", Some("memory.strategy")),
        (bad(json!({"caps": {"max_tokens": 0}})), 400, "invalid_value", Some("caps.max_tokens")),
        (bad(json!({"price": {"request": -1}})), 400, "invalid_type", Some("price.request")),
        (bad(json!({"model": ALIAS})), 400, "invalid_value", Some("model")),
        (bad(json!({"colour": "blue"})), 400, "invalid_value", Some("colour")),
        (json!({"id": "m", "model": AGENT}), 400, "invalid_value", Some("model")),
        (json!({"id": "m"}), 400, "missing_required_parameter", Some("provider")),
        (json!({"id": "m", "provider": "up"}), 400, "missing_required_parameter", Some("upstream_model")),
        (json!({"provider": "up", "upstream_model": "u"}), 400, "missing_required_parameter", Some("id")),
        (support(AGENT, "x"), 409, "conflict", None),
        (support(ALIAS, "x"), 409, "conflict", None),
        (support("support", "again"), 409, "conflict", None),
    ];
    for (body, status, code, param) in cases {
        let answer = env.post(&env.acme, "/v1/agents", body.clone()).await;
        assert_eq!(answer.0, status, "{body} → {}", answer.1);
        refused(&answer, status, code, param);
    }
    refused(
        &env.post(&env.admin, "/v1/agents", support("x", "y")).await,
        400,
        "missing_required_parameter",
        Some("workspace"),
    );
    refused(&env.post(&env.acme_chat, "/v1/agents", support("x", "y")).await, 403, "insufficient_scope", None);
    refused(&env.get(&env.acme_chat, "/v1/agents").await, 403, "insufficient_scope", None);
    assert_eq!(
        env.get(&env.acme, "/v1/agents/support").await.1["caps"]["max_tokens"],
        7,
        "nothing refused was written"
    );

    let (status, deleted) = env.delete(&env.acme, "/v1/agents/support").await;
    assert_eq!((status, deleted["deleted"].as_bool()), (200, Some(true)), "{deleted}");
    refused(&env.get(&env.acme, "/v1/agents/support").await, 404, "not_found", None);
    refused(&env.delete(&env.acme, "/v1/agents/support").await, 404, "not_found", None);
    // The seed alias root serves the same table.
    assert_eq!(env.get(&env.acme, "/api/v1/agents/a-3").await.0, 200);
}

async fn another_workspace_sees_nothing(backend: Backend) {
    let Some(env) = Env::start(backend, "isolation").await else { return };
    env.agent(support("secret-agent", "Only for acme.")).await;
    refused(&env.get(&env.beta, "/v1/agents/secret-agent").await, 404, "not_found", None);
    refused(&env.get(&env.beta, "/v1/agents/secret-agent?workspace=acme").await, 404, "not_found", None);
    refused(
        &env.patch(&env.beta, "/v1/agents/secret-agent", json!({"instructions": "mine"})).await,
        404,
        "not_found",
        None,
    );
    refused(&env.delete(&env.beta, "/v1/agents/secret-agent").await, 404, "not_found", None);
    assert!(env.get(&env.beta, "/v1/agents").await.1["data"].as_array().unwrap().is_empty());
    // The same id is free in another workspace.
    assert_eq!(env.post(&env.beta, "/v1/agents", support("secret-agent", "beta's own")).await.0, 201);
    assert_eq!(env.delete(&env.beta, "/v1/agents/secret-agent").await.0, 200);

    let (status, models) = env.get(&env.acme_chat, "/v1/models").await;
    assert_eq!(status, 200, "{models}");
    let listed: Vec<(String, String)> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m["owned_by"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        listed.last(),
        Some(&("secret-agent".to_owned(), "workspace".to_owned())),
        "after the config's: {listed:?}"
    );
    assert!(listed.iter().any(|(id, _)| id == AGENT));
    let (status, one) = env.get(&env.acme_chat, "/v1/models/secret-agent").await;
    assert_eq!((status, one["owned_by"].as_str()), (200, Some("workspace")), "{one}");

    let (_, theirs) = env.get(&env.beta, "/v1/models").await;
    assert!(!theirs.to_string().contains("secret-agent"), "{theirs}");
    refused(&env.get(&env.beta, "/v1/models/secret-agent").await, 404, "model_not_found", Some("model"));
    refused(&env.chat_on(0, &env.beta, "secret-agent").await, 404, "model_not_found", Some("model"));
    refused(&env.chat_on(0, KEY, "secret-agent").await, 404, "model_not_found", Some("model"));
    assert!(env.mock.requests().is_empty(), "nothing reached the upstream");
}

async fn an_agent_answers_is_charged_and_follows_changes(backend: Backend) {
    let Some(env) = Env::start(backend, "answers").await else { return };
    env.agent(support("support", "You are acme's support agent.")).await;
    let (status, answer) = env.chat_on(0, &env.acme_chat, "support").await;
    assert_eq!((status, answer["model"].as_str()), (200, Some("support")), "{answer}");
    let sent = env.mock.only_request().json();
    assert_eq!(sent["model"], "support-up");
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "You are acme's support agent."}));
    assert_eq!(sent["messages"][1]["content"], "hi");
    assert_eq!((sent["temperature"].clone(), sent["max_tokens"].clone()), (json!(0.1), json!(42)), "defaults and cap");
    let record = env.replicas[0].usage.first().await;
    assert_eq!(
        (record.credits, record.agent, &*record.model),
        (PRICE, true, "support"),
        "the agent's price is charged"
    );

    // PATCH: the next call carries the new instructions (at once on this replica).
    let (status, _) = env
        .patch(
            &env.acme,
            "/v1/agents/support",
            json!({"instructions": "Now in French.", "price": {"request": 2 * PRICE}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(env.chat_on(0, &env.acme_chat, "support").await.0, 200);
    let sent = env.mock.wait_for_requests(2).await[1].json();
    assert_eq!(sent["messages"][0]["content"], "Now in French.");
    assert_eq!(env.replicas[0].usage.wait_for(2).await[1].credits, 2 * PRICE);

    // A stored agent's memory policy reaches the resolved target.
    let target = env.replicas[0].app.agents.resolve("support", &principal("acme")).await.unwrap();
    assert_eq!(target.memory.and_then(|m| m.max_messages), Some(6));

    // DELETE: the model is unknown afterwards.
    assert_eq!(env.delete(&env.acme, "/v1/agents/support").await.0, 200);
    refused(&env.chat_on(0, &env.acme_chat, "support").await, 404, "model_not_found", Some("model"));
    assert_eq!(env.mock.requests().len(), 2, "the refused call never went upstream");
}

async fn changes_emit_agent_events(backend: Backend) {
    let Some(env) = Env::start(backend, "events").await else { return };
    env.agent(support("noisy", "x")).await;
    env.patch(&env.acme, "/v1/agents/noisy", json!({"instructions": "y"})).await;
    env.delete(&env.acme, "/v1/agents/noisy").await;
    let types = "agent.created,agent.updated,agent.deleted";
    let events = within("the agent events in the log", async {
        loop {
            let (_, page) = env.get(&env.acme, &format!("/v1/events?type={types}&order=asc")).await;
            let events = page["data"].as_array().cloned().unwrap_or_default();
            if events.len() == 3 {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["agent.created", "agent.updated", "agent.deleted"]);
    assert_eq!(events[0]["data"]["agent_id"], "noisy");
    assert_eq!(events[0]["data"]["agent"]["instructions"], "x");
    assert_eq!(events[1]["data"]["agent"]["instructions"], "y");
    assert!(events[0]["data"]["by_key_id"].as_str().is_some_and(|k| k.starts_with("key_")), "{}", events[0]);
    let (_, elsewhere) = env.get(&env.beta, &format!("/v1/events?type={types}")).await;
    assert!(elsewhere["data"].as_array().unwrap().is_empty(), "in the agent's workspace only: {elsewhere}");
}

async fn the_workspace_default_agent(backend: Backend) {
    let Some(env) = Env::start(backend, "default").await else { return };
    env.agent(support("front-desk", "Greet.")).await;
    let agents = &env.replicas[0].app.agents;
    assert_eq!(agents.default_for("acme").await.unwrap(), None);
    let (status, ws) = env.patch(&env.acme, "/v1/workspaces/acme", json!({"default_agent": "front-desk"})).await;
    assert_eq!(
        (status, ws["default_agent"].as_str(), ws["id"].as_str()),
        (200, Some("front-desk"), Some("acme")),
        "{ws}"
    );
    assert_eq!(agents.default_for("acme").await.unwrap().as_deref(), Some("front-desk"), "at once on this replica");
    assert_eq!(env.get(&env.admin, "/v1/workspaces/acme").await.1["default_agent"], "front-desk");
    let (_, all) = env.get(&env.admin, "/v1/workspaces").await;
    let acme = all["data"].as_array().unwrap().iter().find(|w| w["id"] == "acme").unwrap().clone();
    assert_eq!(acme["default_agent"], "front-desk");

    refused(
        &env.patch(&env.acme, "/v1/workspaces/acme", json!({"default_agent": "nobody"})).await,
        400,
        "invalid_value",
        Some("default_agent"),
    );
    refused(
        &env.patch(&env.beta, "/v1/workspaces/beta", json!({"default_agent": "front-desk"})).await,
        400,
        "invalid_value",
        Some("default_agent"),
    );
    refused(
        &env.patch(&env.beta, "/v1/workspaces/acme", json!({"default_agent": AGENT})).await,
        404,
        "not_found",
        None,
    );
    refused(
        &env.patch(&env.acme, "/v1/workspaces/acme", json!({})).await,
        400,
        "missing_required_parameter",
        Some("default_agent"),
    );
    refused(
        &env.patch(&env.acme_chat, "/v1/workspaces/acme", json!({"default_agent": AGENT})).await,
        403,
        "insufficient_scope",
        None,
    );
    assert_eq!(
        env.patch(&env.admin, "/v1/workspaces/beta", json!({"default_agent": AGENT})).await.0,
        200,
        "a config agent"
    );

    let (status, cleared) = env.patch(&env.acme, "/v1/workspaces/acme", json!({"default_agent": null})).await;
    assert_eq!((status, &cleared["default_agent"]), (200, &Value::Null), "{cleared}");
    assert_eq!(agents.default_for("acme").await.unwrap(), None);
    env.patch(&env.acme, "/v1/workspaces/acme", json!({"default_agent": "front-desk"})).await;
    env.delete(&env.acme, "/v1/agents/front-desk").await;
    assert_eq!(agents.default_for("acme").await.unwrap(), None, "deleting the default agent clears it");
    assert_eq!(env.get(&env.admin, "/v1/workspaces/acme").await.1["default_agent"], Value::Null);
}

async fn another_replica_sees_changes_within_the_cache_ttl(backend: Backend) {
    let Some(mut env) = Env::start(backend, "replicas").await else { return };
    env.add_replica().await;
    let (a, b) = (0, 1);
    // Both learn that there is no such agent (and cache that answer).
    for replica in [a, b] {
        refused(&env.chat_on(replica, &env.acme_chat, "roaming").await, 404, "model_not_found", Some("model"));
    }
    env.agent(support("roaming", "First words.")).await;
    assert_eq!(env.chat_on(a, &env.acme_chat, "roaming").await.0, 200, "at once on the replica that made it");
    let poll = |expect: u16| {
        let env = &env;
        async move {
            within("replica B to see the change", async {
                loop {
                    let (status, _) = env.chat_on(b, &env.acme_chat, "roaming").await;
                    if status == expect {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
        }
    };
    poll(200).await;
    let last = env.mock.requests().last().unwrap().json();
    assert_eq!(last["messages"][0]["content"], "First words.");

    env.patch(&env.acme, "/v1/agents/roaming", json!({"instructions": "Second words."})).await;
    within("replica B to send the new instructions", async {
        loop {
            env.chat_on(b, &env.acme_chat, "roaming").await;
            if env.mock.requests().last().unwrap().json()["messages"][0]["content"] == "Second words." {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    env.delete(&env.acme, "/v1/agents/roaming").await;
    poll(404).await;

    if let Some(redis) = &env.redis {
        // Redis hangs: an id the config does not know cannot be answered (503,
        // within the command timeout), not reported missing.
        redis.pause();
        refused(&env.chat_on(a, &env.acme_chat, "never-seen").await, 503, "store_unavailable", None);
        let principal = principal("acme");
        let resolved = env.replicas[a].app.agents.resolve("never-seen", &principal).await;
        assert!(matches!(resolved, Err(tollgate::agents::ResolveError::Store(_))), "{:?}", resolved.err());
        let config_agent = env.replicas[a].app.agents.resolve(AGENT, &principal).await;
        assert!(config_agent.is_ok(), "config agents never wait on the store");
        let (status, models) = env.call_on(a, Method::GET, &env.acme_chat, "/v1/models", None).await;
        assert_eq!((status, models.to_string().contains(AGENT)), (200, true), "the config's still listed: {models}");
        redis.resume();
    }
}
