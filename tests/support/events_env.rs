//! The gateway with events and webhooks, in-process, for `tests/webhooks.rs`
//! and `tests/events_log.rs`: wired as `serve()` wires it (the event bus, the
//! `EventSink` around the usage sink, `events::run` with the meter, the credit
//! upkeep), on a port of its own, in front of the mock upstream, on either
//! store — a fresh embedded file or a `redis-server` of its own on a free port
//! (skipped loudly when none is installed, mandatory under `CI=true`).
//!
//! Include it after `mod common;`, `mod redis_server;` and `mod tools;`:
//! `#[path = "support/events_env.rs"] mod events_env;` (scenarios run on both
//! backends through `support/backends.rs`'s `on_both_backends!`). Every wait is bounded
//! (`common::WAIT`); polls re-read state every few milliseconds, none relies
//! on a fixed sleep.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderMap;
use serde_json::{json, Value};
use tollgate::auth::keys::NewKey;
use tollgate::credits::Meter;
use tollgate::events::Events;
use tollgate::scope::Scope;
use tollgate::store::Stores;

use crate::common::{client, config_toml, within, MockUpstream, Settings};
use crate::redis_server::RedisServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
}

/// `metered`: a model alias priced per request (micro-credits).
pub const METERED: &str = "metered";
pub const METERED_UPSTREAM: &str = "metered-up";
pub const METERED_PRICE: u64 = 250_000;
/// One whole credit in micro-credits.
pub const CREDIT: u64 = 1_000_000;

/// Plans and models every test gateway has besides `common::config_toml`'s:
/// `small` (1 message credit), `integ` (1 integration credit).
const EXTRA_TOML: &str = r#"
[models.metered]
provider = "up"
upstream_model = "metered-up"
price = { request = 250000 }

[plans.small]
message_credits = 1

[plans.integ]
integration_credits = 1
"#;

/// `[webhooks]` of every test unless tuned: loopback receivers allowed, fast
/// retries without jitter, a timeout short enough for a test yet long enough
/// that no healthy receiver on a loaded machine ever misses it (a spurious
/// retry would break the tests' exact counts).
const WEBHOOK_DEFAULTS: [(&str, &str); 6] = [
    ("allow_private_targets", "true"),
    ("retry_schedule_ms", "[50, 100, 200]"),
    ("jitter_percent", "0"),
    ("poll_interval_ms", "50"),
    ("timeout_ms", "5000"),
    ("claim_idle_ms", "10000"),
];

/// A test's `[events]` and `[webhooks]` settings on top of the defaults.
#[derive(Debug, Clone, Default)]
pub struct Tune {
    events: BTreeMap<&'static str, String>,
    webhooks: BTreeMap<&'static str, String>,
}

impl Tune {
    pub fn events(mut self, key: &'static str, value: impl ToString) -> Tune {
        self.events.insert(key, value.to_string());
        self
    }

    pub fn webhooks(mut self, key: &'static str, value: impl ToString) -> Tune {
        self.webhooks.insert(key, value.to_string());
        self
    }

    fn toml(&self) -> String {
        let mut webhooks: BTreeMap<&str, String> =
            WEBHOOK_DEFAULTS.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        webhooks.extend(self.webhooks.iter().map(|(k, v)| (*k, v.clone())));
        let table = |name: &str, entries: &BTreeMap<&str, String>| {
            let lines: String = entries.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            format!("[{name}]\n{lines}")
        };
        format!("{}\n{}", table("events", &self.events), table("webhooks", &webhooks))
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts `status`; returns the JSON body.
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "expected {status}; body: {}", self.text);
        &self.body
    }

    pub fn ok(&self) -> &Value {
        self.expect(200)
    }

    /// Asserts a 400 about `param`.
    pub fn invalid(&self, param: &str) {
        assert_eq!(self.status, 400, "expected 400 about {param}; body: {}", self.text);
        assert_eq!(self.body["error"]["param"], param, "error.param; body: {}", self.text);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.text);
    }
}

pub async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = within("a response body", response.text()).await.expect("the response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, body, text }
}

/// Re-runs `probe` every few milliseconds until it returns `Some`, within `common::WAIT`.
pub async fn eventually<T, Fut>(what: &str, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
}

/// A fresh `whsec_` secret (32 random bytes).
pub fn new_secret() -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()))
}

static ENVS: AtomicUsize = AtomicUsize::new(0);

/// One gateway on one store, with events on.
pub struct Env {
    pub backend: Backend,
    pub mock: MockUpstream,
    pub config: tollgate::config::Config,
    pub stores: Stores,
    pub events: Arc<Events>,
    pub meter: Arc<Meter>,
    pub base: String,
    /// An `admin` key (workspace `admin`).
    pub admin: String,
    pub http: reqwest::Client,
    running: crate::common::Running,
    dir: PathBuf,
    _redis: Option<RedisServer>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    /// The gateway on `backend` with `tune`; `None` (after a loud skip) when
    /// Redis cannot run here outside CI.
    pub async fn start(backend: Backend, test: &str, tune: Tune) -> Option<Env> {
        let redis = match backend {
            Backend::Embedded => None,
            Backend::Redis => match RedisServer::start() {
                Some(server) => Some(server),
                None => {
                    crate::tools::skip(&format!("{test} on Redis"), crate::tools::NO_REDIS);
                    return None;
                }
            },
        };
        let n = ENVS.fetch_add(1, Ordering::Relaxed);
        let url = redis.as_ref().map(|server| server.url());
        let (dir, store) = crate::backends::fresh_store(&format!("events-{test}"), n, url.as_deref(), "tgw");
        let mock = MockUpstream::start().await;
        let toml =
            format!("{}\n{EXTRA_TOML}\n{store}\n{}", config_toml(&Settings::default(), &mock.base_url()), tune.toml());
        let config = tollgate::config::Config::from_toml(&toml, "test.toml").expect("the test config is valid");
        let stores = Stores::open(&config.store).await.expect("the store opens");
        tollgate::admin::create_workspace(&stores, &config.plans, "admin", None, "default", None).await.unwrap();
        let running =
            crate::common::Running::start(tollgate::gateway::Gateway::builder(config.clone()).stores(stores.clone()))
                .await;
        let (events, meter) = (running.app.events.clone(), running.app.meter.clone());
        let base = running.base();
        let admin = NewKey {
            name: "root".into(),
            workspace: "admin".into(),
            scope: Scope::Admin,
            expires_at: None,
            rpm: None,
            tpm: None,
            models: None,
        };
        let admin = tollgate::admin::create_key(&stores, admin).await.unwrap().plaintext.expose().clone();
        Some(Env {
            backend,
            mock,
            config,
            stores,
            events,
            meter,
            base,
            admin,
            http: client(),
            running,
            dir,
            _redis: redis,
        })
    }

    pub async fn workspace(&self, id: &str, plan: &str) {
        tollgate::admin::create_workspace(&self.stores, &self.config.plans, id, None, plan, None)
            .await
            .unwrap_or_else(|e| panic!("workspace {id}: {e}"));
    }

    /// Issues a key in `workspace` straight in the store (no `key.created`): (id, plaintext).
    pub async fn key(&self, workspace: &str, scope: Scope) -> (String, String) {
        let new = NewKey {
            name: "k".into(),
            workspace: workspace.into(),
            scope,
            expires_at: None,
            rpm: None,
            tpm: None,
            models: None,
        };
        let issued = tollgate::admin::create_key(&self.stores, new).await.unwrap();
        (issued.record.id.clone(), issued.plaintext.expose().clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        read(within("the gateway's response", request.send()).await.expect("the request reaches the gateway")).await
    }

    pub async fn get(&self, key: &str, path: &str) -> Answer {
        self.send(self.http.get(self.url(path)).bearer_auth(key)).await
    }

    pub async fn post(&self, key: &str, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(self.url(path)).bearer_auth(key).json(body)).await
    }

    pub async fn post_raw(&self, key: &str, path: &str, body: &str) -> Answer {
        let request = self.http.post(self.url(path)).bearer_auth(key).header("content-type", "application/json");
        self.send(request.body(body.to_owned())).await
    }

    pub async fn delete(&self, key: &str, path: &str) -> Answer {
        self.send(self.http.delete(self.url(path)).bearer_auth(key)).await
    }

    /// A chat call with our own request id (the events' `request_id`).
    pub async fn chat(&self, key: &str, body: &Value, request_id: &str) -> Answer {
        let request =
            self.http.post(self.url("/v1/chat/completions")).bearer_auth(key).header("x-request-id", request_id);
        self.send(request.json(body)).await
    }

    /// A chat call on `model` that must succeed.
    pub async fn chat_ok(&self, key: &str, model: &str, request_id: &str) {
        self.chat(key, &crate::common::chat_body(model, "hi"), request_id).await.ok();
    }

    /// A streamed chat call, read to its end; the SSE text.
    pub async fn chat_stream(&self, key: &str, body: &Value, request_id: &str) -> String {
        let answer = self.chat(key, body, request_id).await;
        assert_eq!(answer.status, 200, "a stream starts with 200: {}", answer.text);
        assert_eq!(answer.header("content-type"), Some("text/event-stream"));
        assert!(answer.text.trim_end().ends_with("data: [DONE]"), "the stream ends with [DONE]: {}", answer.text);
        answer.text
    }

    /// `POST /v1/webhooks` that must succeed; the 201 body (with the secret).
    pub async fn register(&self, key: &str, url: &str, events: &[&str], secret: &str) -> Value {
        let body = json!({"url": url, "events": events, "secret": secret});
        let answer = self.post(key, "/v1/webhooks", &body).await;
        answer.expect(201).clone()
    }

    /// `GET /v1/webhooks/{id}` that must succeed.
    pub async fn webhook(&self, key: &str, id: &str) -> Value {
        self.get(key, &format!("/v1/webhooks/{id}")).await.ok().clone()
    }

    /// The webhook's delivery attempts, newest first.
    pub async fn attempts(&self, key: &str, id: &str) -> Vec<Value> {
        let answer = self.get(key, &format!("/v1/webhooks/{id}/deliveries")).await;
        answer.ok()["data"].as_array().expect("a data array").clone()
    }

    /// Waits until the webhook lists at least `n` attempts; returns them all.
    pub async fn wait_attempts(&self, key: &str, id: &str, n: usize) -> Vec<Value> {
        eventually(&format!("{n} delivery attempts of {id}"), || async move {
            let attempts = self.attempts(key, id).await;
            (attempts.len() >= n).then_some(attempts)
        })
        .await
    }

    /// Waits until the webhook's status is `status`; returns its view.
    pub async fn wait_webhook_status(&self, key: &str, id: &str, status: &str) -> Value {
        eventually(&format!("webhook {id} to be {status}"), || async move {
            let view = self.webhook(key, id).await;
            (view["status"] == status).then_some(view)
        })
        .await
    }

    /// Waits until no delivery is queued (due or not).
    pub async fn wait_queue_empty(&self) {
        eventually("the delivery queue to empty", || async move {
            (self.events.queue.pending().await.expect("the queue answers") == 0).then_some(())
        })
        .await
    }

    /// One page of `GET {root}/events?{query}`; must succeed.
    pub async fn event_page(&self, key: &str, query: &str) -> Value {
        self.get(key, &format!("/v1/events?{query}")).await.ok().clone()
    }

    /// Every event of the caller's workspace matching `query` (no `limit` or
    /// `after` in it), paged through.
    pub async fn all_events(&self, key: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let cursor = after.as_ref().map(|c| format!("&after={c}")).unwrap_or_default();
            let page = self.event_page(key, &format!("limit=1000&{query}{cursor}")).await;
            out.extend(page["data"].as_array().expect("a data array").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => after = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    /// Waits until the log (filtered by `query`) holds at least `n` events; returns them.
    pub async fn wait_events(&self, key: &str, query: &str, n: usize) -> Vec<Value> {
        eventually(&format!("{n} events in the log ({query})"), || async move {
            let all = self.all_events(key, query).await;
            (all.len() >= n).then_some(all)
        })
        .await
    }
}

/// The `id`s of events as logged.
pub fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().expect("an event id").to_owned()).collect()
}
