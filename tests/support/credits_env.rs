//! The harness of `tests/credits.rs`: one gateway (or several replicas) on
//! one store with a manual clock, the prices, plans and models every test
//! gateway has, and the helpers that read its answers (balances, usage,
//! `Retry-After`). Separate so the test file holds the scenarios alone.
//!
//! Include it after `mod common;`, `mod backends;`, `mod redis_server;` and
//! `mod tools;`: `#[path = "support/credits_env.rs"] mod credits_env;`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;
use tollgate::auth::keys::NewKey;
use tollgate::clock::ManualClock;
use tollgate::credits::Meter;
use tollgate::scope::Scope;
use tollgate::store::Stores;

use crate::common::{self, client, config_toml, within, MockUpstream, Settings};
use crate::redis_server::RedisServer;
use crate::{backends, tools};

// ---------------------------------------------------------------------------
// Prices, plans and models of every test gateway
// ---------------------------------------------------------------------------

/// `priced`: a model alias with all three prices (micro-credits).
pub const REQUEST_PRICE: u64 = 1000;
pub const INPUT_PER_1K: u64 = 1500;
pub const OUTPUT_PER_1K: u64 = 2700;
/// `flat`: one credit per request, no token prices.
pub const CREDIT: u64 = 1_000_000;
/// `per_request`: 1000 micro-credits per request, no token prices.
pub const SMALL_PRICE: u64 = 1000;
/// `[credits] reserve_output_tokens`: the output reserved when unbounded.
pub const RESERVE_OUTPUT: u64 = 1000;
/// The `metered` plan's monthly message credits (whole credits).
pub const METERED_CREDITS: u64 = 10;

pub fn extra_toml() -> String {
    format!(
        r#"
[models.priced]
provider = "up"
upstream_model = "priced-up"
price = {{ request = {REQUEST_PRICE}, input_per_1k = {INPUT_PER_1K}, output_per_1k = {OUTPUT_PER_1K} }}

[models.flat]
provider = "up"
upstream_model = "flat-up"
price = {{ request = {CREDIT} }}

[models.per_request]
provider = "up"
upstream_model = "per-request-up"
price = {{ request = {SMALL_PRICE} }}

[plans.metered]
message_credits = {METERED_CREDITS}

[plans.team]
rpm = 3
key_rpm = 2

[plans.hundred]
message_credits = 100

[plans.empty]
message_credits = 0

[credits]
reserve_output_tokens = {RESERVE_OUTPUT}
flush_interval_ms = 100
reaper_interval_ms = 1000
"#
    )
}

/// `cost` of src/credits.rs for the `priced` model: the request price plus
/// the token prices, rounded up to the micro-credit once over the sum.
pub fn priced_cost(input: u64, output: u64) -> u64 {
    REQUEST_PRICE + (input * INPUT_PER_1K + output * OUTPUT_PER_1K).div_ceil(1000)
}

/// The gateway's prompt estimate of a chat request: the raw `messages` JSON
/// (as serde_json writes it, which is what reqwest sends), 4 bytes a token.
pub fn estimate(body: &Value) -> u64 {
    (serde_json::to_string(&body["messages"]).unwrap().len() as u64).div_ceil(4)
}

/// Unix ms of an RFC 3339 instant.
pub fn at(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).expect("a valid instant").timestamp_millis()
}

// ---------------------------------------------------------------------------
// Harness: one gateway (or several replicas) on one store, with a manual clock
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
}

/// One gateway process: its own App and Meter on the shared store.
pub struct Replica {
    pub base: String,
    pub meter: Arc<Meter>,
    /// Dropping it stops the replica at once, as a kill does (no last flush).
    #[allow(dead_code)]
    pub running: common::Running,
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
        self.headers.get(name).map(|v| v.to_str().expect("an ASCII header"))
    }

    pub fn num_header(&self, name: &str) -> u64 {
        let v = self.header(name).unwrap_or_else(|| panic!("header {name} missing; headers {:?}", self.headers));
        v.parse().unwrap_or_else(|_| panic!("header {name} is not an integer: {v:?}"))
    }

    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected 200; body: {}", self.text);
        &self.body
    }

    /// Asserts an OpenAI error: status, `error.type`, `error.code`.
    pub fn error(&self, status: u16, kind: &str, code: &str) -> &Value {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.text);
        assert_eq!(self.body["error"]["type"], kind, "error.type; body: {}", self.text);
        assert_eq!(self.body["error"]["code"], code, "error.code; body: {}", self.text);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.text);
        &self.body
    }
}

pub async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = within("a response body", response.text()).await.expect("the response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, body, text }
}

pub struct Env {
    pub backend: Backend,
    pub mock: MockUpstream,
    pub clock: ManualClock,
    pub config: tollgate::config::Config,
    pub stores: Stores,
    pub replicas: Vec<Replica>,
    pub admin: String,
    pub http: reqwest::Client,
    pub dir: PathBuf,
    pub _redis: Option<RedisServer>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static ENVS: AtomicUsize = AtomicUsize::new(0);

/// The default start of the manual clock: mid-November 2026, noon UTC.
pub const NOV_14_NOON: &str = "2026-11-14T12:00:00Z";
/// A usage range wide enough for every instant these tests use.
pub const ALL_DAYS: &str = "from=2026-10-01&to=2027-01-31";

impl Env {
    /// A gateway (one replica) on `backend` with the clock at `now`; `None`
    /// when Redis cannot run here (outside CI).
    pub async fn start(backend: Backend, test: &str, now: &str) -> Option<Env> {
        Env::start_with(backend, test, now, "").await
    }

    /// [`Env::start`] with more config (agents, say) appended.
    pub async fn start_with(backend: Backend, test: &str, now: &str, more_toml: &str) -> Option<Env> {
        let redis = match backend {
            Backend::Redis => match RedisServer::start() {
                Some(server) => Some(server),
                None => {
                    tools::skip(&format!("{test} on Redis"), tools::NO_REDIS);
                    return None;
                }
            },
            Backend::Embedded => None,
        };
        let n = ENVS.fetch_add(1, Ordering::Relaxed);
        let url = redis.as_ref().map(|server| server.url());
        let (dir, store) = backends::fresh_store(&format!("credits-{test}"), n, url.as_deref(), "tgc");
        let mock = MockUpstream::start().await;
        let base = config_toml(&Settings::default(), &mock.base_url());
        let toml = format!("{base}\n{}\n{more_toml}\n{store}", extra_toml());
        let config = tollgate::config::Config::from_toml(&toml, "test.toml").expect("the test config is valid");
        let stores = Stores::open(&config.store).await.expect("the store opens");
        let plans = &config.plans;
        tollgate::admin::create_workspace(&stores, plans, "admin", None, "default", None).await.unwrap();
        let new = NewKey {
            name: "root".into(),
            workspace: "admin".into(),
            scope: Scope::Admin,
            expires_at: None,
            rpm: None,
            tpm: None,
            models: None,
        };
        let admin = tollgate::admin::create_key(&stores, new).await.unwrap().plaintext.expose().clone();
        let mut env = Env {
            backend,
            mock,
            clock: ManualClock::new(at(now)),
            config,
            stores,
            replicas: Vec::new(),
            admin,
            http: client(),
            dir,
            _redis: redis,
        };
        env.add_replica().await;
        Some(env)
    }

    /// Another gateway process on the same store: its own Meter, App and
    /// (on Redis) its own connection; the same manual clock.
    pub async fn add_replica(&mut self) {
        let stores = match self.backend {
            Backend::Embedded => self.stores.clone(),
            Backend::Redis => Stores::open(&self.config.store).await.expect("the store opens"),
        };
        let clock = Arc::new(self.clock.clone());
        let builder = tollgate::gateway::Gateway::builder(self.config.clone()).stores(stores).clock(clock);
        let running = common::Running::start(builder).await;
        let (base, meter) = (running.base(), running.app.meter.clone());
        self.replicas.push(Replica { base, meter, running });
    }

    /// Kills replica `i` (no last flush: what its upkeep wrote is what
    /// survives) and starts a new process in its place on the same store.
    pub async fn kill_replica(&mut self, i: usize) {
        drop(self.replicas.remove(i));
        self.add_replica().await;
        let new = self.replicas.pop().unwrap();
        self.replicas.insert(i, new);
    }

    /// Stops replica `i` cleanly (its last flush) and starts a new process in
    /// its place on the same store.
    pub async fn restart_replica(&mut self, i: usize) {
        let old = self.replicas.remove(i);
        within("the last flush", tollgate::credits::final_flush(&old.meter)).await;
        drop(old);
        self.add_replica().await;
        let new = self.replicas.pop().unwrap();
        self.replicas.insert(i, new);
    }

    pub async fn workspace(&self, id: &str, plan: &str, time_zone: Option<&str>) {
        tollgate::admin::create_workspace(&self.stores, &self.config.plans, id, None, plan, time_zone)
            .await
            .unwrap_or_else(|e| panic!("workspace {id}: {e}"));
    }

    /// Issues a key in `workspace`: (id, plaintext).
    pub async fn key(&self, workspace: &str, scope: Scope, rpm: Option<u32>, tpm: Option<u32>) -> (String, String) {
        let new =
            NewKey { name: "k".into(), workspace: workspace.into(), scope, expires_at: None, rpm, tpm, models: None };
        let issued = tollgate::admin::create_key(&self.stores, new).await.unwrap();
        (issued.record.id.clone(), issued.plaintext.expose().clone())
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        read(within("the gateway's response", request.send()).await.expect("the request reaches the gateway")).await
    }

    pub async fn get_on(&self, replica: usize, key: &str, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.replicas[replica].base)).bearer_auth(key)).await
    }

    pub async fn get(&self, key: &str, path: &str) -> Answer {
        self.get_on(0, key, path).await
    }

    pub async fn post(&self, key: &str, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.replicas[0].base)).bearer_auth(key).json(body)).await
    }

    pub async fn post_raw(&self, key: &str, path: &str, body: &str) -> Answer {
        let url = format!("{}{path}", self.replicas[0].base);
        let request = self.http.post(url).bearer_auth(key).header("content-type", "application/json");
        self.send(request.body(body.to_owned())).await
    }

    pub async fn chat_on(&self, replica: usize, key: &str, body: &Value) -> Answer {
        let url = format!("{}/v1/chat/completions", self.replicas[replica].base);
        self.send(self.http.post(url).bearer_auth(key).json(body)).await
    }

    pub async fn chat(&self, key: &str, body: &Value) -> Answer {
        self.chat_on(0, key, body).await
    }

    /// A streamed chat: the response as it starts.
    pub async fn chat_stream(&self, key: &str, body: &Value) -> reqwest::Response {
        let url = format!("{}/v1/chat/completions", self.replicas[0].base);
        within("the stream's headers", self.http.post(url).bearer_auth(key).json(body).send()).await.unwrap()
    }

    /// `GET /v1/credits?workspace=` as the admin, on replica `replica`.
    pub async fn credits_on(&self, replica: usize, workspace: &str) -> Value {
        let answer = self.get_on(replica, &self.admin.clone(), &format!("/v1/credits?workspace={workspace}")).await;
        answer.ok().clone()
    }

    pub async fn credits(&self, workspace: &str) -> Value {
        self.credits_on(0, workspace).await
    }

    pub async fn usage(&self, workspace: &str, query: &str) -> Value {
        let path = format!("/v1/usage?workspace={workspace}&{query}");
        self.get(&self.admin.clone(), &path).await.ok().clone()
    }

    /// Waits until `workspace` holds no reservation and its usage counts
    /// `requests` settled calls (Redis settles asynchronously); returns the
    /// balances.
    pub async fn settled(&self, workspace: &str, requests: u64) -> Value {
        within(&format!("{requests} settled calls in {workspace}"), async {
            loop {
                let credits = self.credits(workspace).await;
                let usage = self.usage(workspace, ALL_DAYS).await;
                let reserved = credits["message"]["reserved"].as_i64().unwrap();
                let settled = usage["total"]["requests"].as_u64().unwrap();
                assert!(settled <= requests, "more calls settled than made: {usage}");
                if reserved == 0 && settled == requests {
                    return credits;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

/// The message balance's numbers: (plan_remaining, top_up, reserved, available).
pub fn message(credits: &Value) -> (i64, i64, i64, i64) {
    let m = &credits["message"];
    let n = |f: &str| m[f].as_i64().unwrap_or_else(|| panic!("message.{f} in {credits}"));
    (n("plan_remaining"), n("top_up"), n("reserved"), n("available"))
}

/// Asserts no part of either balance is negative.
pub fn never_negative(credits: &Value) {
    for kind in ["message", "integration"] {
        for field in ["plan_remaining", "top_up", "reserved", "available", "uncollected"] {
            let v = credits[kind][field].as_i64().unwrap_or_else(|| panic!("{kind}.{field} in {credits}"));
            assert!(v >= 0, "{kind}.{field} is negative: {credits}");
        }
    }
}

/// Parses an OpenAI (Go-style) duration strictly: `12ms` (under a second),
/// else `[<h>h][<m>m]<s>[.<fraction>]s` with `m` present when `h` is, minutes
/// and seconds below 60 when a larger unit is present, and no trailing zeros.
pub fn go_duration(s: &str) -> Duration {
    let bad = || -> ! { panic!("{s:?} is not a Go-style duration like 12ms, 1.5s, 6m0s") };
    if let Some(ms) = s.strip_suffix("ms") {
        let ms: u64 = ms.parse().unwrap_or_else(|_| bad());
        assert!(ms < 1000, "{s:?}: whole seconds are written as s");
        return Duration::from_millis(ms);
    }
    let body = s.strip_suffix('s').unwrap_or_else(|| bad());
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let (h, rest) = match body.split_once('h') {
        Some((h, rest)) if digits(h) => (h.parse::<u64>().unwrap(), rest),
        Some(_) => bad(),
        None => (0, body),
    };
    let (m, rest) = match rest.split_once('m') {
        Some((m, rest)) if digits(m) => (m.parse::<u64>().unwrap(), rest),
        Some(_) => bad(),
        None if h > 0 => bad(),
        None => (0, rest),
    };
    let (whole, frac) = rest.split_once('.').unwrap_or((rest, ""));
    if !digits(whole) || (!frac.is_empty() && (!digits(frac) || frac.len() > 3 || frac.ends_with('0'))) {
        bad();
    }
    let secs: u64 = whole.parse().unwrap();
    if h > 0 {
        assert!(m < 60, "{s:?}");
    }
    if h > 0 || m > 0 {
        assert!(secs < 60, "{s:?}");
    } else {
        assert!(secs >= 1, "{s:?}: under a second is written in ms");
    }
    let frac_ms: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<3}").parse().unwrap() };
    Duration::from_millis(((h * 60 + m) * 60 + secs) * 1000 + frac_ms)
}

/// Asserts a 429's `Retry-After` (integer seconds, at least 1) agrees with
/// its `retry-after-ms`; returns the latter.
pub fn retry_after(a: &Answer) -> Duration {
    let secs = a.num_header("retry-after");
    let ms = a.num_header("retry-after-ms");
    assert!(secs >= 1, "Retry-After is at least 1 s: {:?}", a.headers);
    assert!(secs * 1000 >= ms && (secs - 1) * 1000 <= ms, "Retry-After {secs} s vs retry-after-ms {ms}");
    Duration::from_millis(ms)
}
