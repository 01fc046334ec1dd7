//! Test harness: the real gateway in-process, a scriptable mock upstream, and
//! clients (reqwest, an SSE reader, raw TCP for byte-level control).
//!
//! Each test starts its own [`TestEnv`] (mock + gateway on port 0), so tests
//! run in parallel and each can tune the timeouts it needs through [`Settings`].
//! Nothing waits on a sleep to observe an effect: tests wait on channels and on
//! the recorded state, each wait bounded by [`WAIT`] so a bug fails, not hangs.

#![allow(dead_code)] // every test binary uses a different part of the harness

pub mod mock;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tollgate::usage::{UsageRecord, UsageSink};

#[allow(unused_imports)]
pub use mock::{scripted_stream, MockUpstream, Reply, StreamControl};

/// The longest any single wait may take before the test fails. Generous: the
/// suite must pass on a slow, loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// A key that may use every model and agent.
pub const KEY: &str = "tg_test_key_unrestricted";
/// A key allowed only [`ALIAS`].
pub const LIMITED_KEY: &str = "tg_test_key_limited";
/// The upstream provider's secret: must never reach a client.
pub const UPSTREAM_KEY: &str = "sk-upstream-secret";

/// The agent: instructions, defaults and a `max_tokens` cap.
pub const AGENT: &str = "helper";
pub const AGENT_UPSTREAM_MODEL: &str = "up-model-x";
pub const AGENT_INSTRUCTIONS: &str = "You are the helper agent. Be terse.";
pub const AGENT_TEMPERATURE: f64 = 0.3;
pub const AGENT_TOP_P: f64 = 0.8;
pub const AGENT_MAX_TOKENS: u64 = 100;

/// A plain model alias: only the model name is rewritten.
pub const ALIAS: &str = "gpt-small";
pub const ALIAS_UPSTREAM_MODEL: &str = "upstream-small-v1";

/// Fails the test (instead of hanging it) when `fut` takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Gateway settings a test may tune; everything not tuned is generous.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Provider base URL; `None` = the mock upstream.
    pub upstream_base_url: Option<String>,
    pub max_body_bytes: u64,
    pub body_read_timeout_ms: u64,
    pub first_byte_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_retries: u32,
    pub retry_base_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            upstream_base_url: None,
            max_body_bytes: 64 * 1024,
            body_read_timeout_ms: 30_000,
            first_byte_timeout_ms: 30_000,
            idle_timeout_ms: 30_000,
            max_retries: 2,
            retry_base_ms: 10,
        }
    }
}

pub fn sha256_hex(key: &str) -> String {
    hex::encode(tollgate::auth::hash_key(key.as_bytes()))
}

/// The gateway config for `settings`, pointing at `upstream_base_url`.
pub fn config_toml(settings: &Settings, upstream_base_url: &str) -> String {
    let Settings {
        max_body_bytes,
        body_read_timeout_ms,
        first_byte_timeout_ms,
        idle_timeout_ms,
        max_retries,
        retry_base_ms,
        ..
    } = settings;
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = {max_body_bytes}
body_read_timeout_ms = {body_read_timeout_ms}
shutdown_grace_ms = 1000

[providers.up]
kind = "openai"
base_url = "{upstream_base_url}"
api_key = "{UPSTREAM_KEY}"
connect_timeout_ms = 5000
first_byte_timeout_ms = {first_byte_timeout_ms}
idle_timeout_ms = {idle_timeout_ms}
max_retries = {max_retries}
retry_base_ms = {retry_base_ms}

[models.{ALIAS}]
provider = "up"
upstream_model = "{ALIAS_UPSTREAM_MODEL}"

[agents.{AGENT}]
provider = "up"
upstream_model = "{AGENT_UPSTREAM_MODEL}"
instructions = "{AGENT_INSTRUCTIONS}"
defaults = {{ temperature = {AGENT_TEMPERATURE}, top_p = {AGENT_TOP_P} }}
caps = {{ max_tokens = {AGENT_MAX_TOKENS} }}

[[keys]]
name = "unrestricted"
sha256 = "{key_hash}"

[[keys]]
name = "limited"
sha256 = "{limited_hash}"
models = ["{ALIAS}"]
"#,
        key_hash = sha256_hex(KEY),
        limited_hash = sha256_hex(LIMITED_KEY),
    )
}

/// Records every usage record the gateway hands out.
#[derive(Default)]
pub struct RecordingSink {
    records: Mutex<Vec<UsageRecord>>,
    count: watch::Sender<usize>,
}

impl UsageSink for RecordingSink {
    fn record(&self, record: UsageRecord) {
        self.records.lock().unwrap().push(record);
        self.count.send_modify(|c| *c += 1);
    }
}

impl RecordingSink {
    pub fn records(&self) -> Vec<UsageRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Waits for the `n`th record and returns all so far.
    pub async fn wait_for(&self, n: usize) -> Vec<UsageRecord> {
        let mut rx = self.count.subscribe();
        within("usage records", rx.wait_for(|c| *c >= n)).await.expect("sink alive");
        self.records()
    }

    /// Waits for the first record and returns it.
    pub async fn first(&self) -> UsageRecord {
        self.wait_for(1).await.remove(0)
    }
}

/// A gateway from the composition root (`tollgate::gateway`), serving on a
/// loopback port on the test's runtime until shut down or dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<tollgate::app::App>,
    tasks: tollgate::tasks::Tasks,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub async fn start(builder: tollgate::gateway::Builder) -> Running {
        let gateway = builder.open().await.expect("the gateway opens");
        let (app, tasks) = (gateway.app().clone(), gateway.tasks().clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(gateway.serve(listener, async move {
            let _ = rx.await;
        }));
        Running { addr, app, tasks, shutdown: Some(tx), server: Some(server) }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Signals shutdown, as SIGTERM does; the returned task ends once the
    /// gateway has drained (or its grace period ran out) and flushed.
    pub fn shut_down(&mut self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        if let Some(signal) = self.shutdown.take() {
            let _ = signal.send(());
        }
        self.server.take().expect("shut_down is called once")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Dropped without a shutdown: stop serving and every background loop.
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.tasks.cancel();
    }
}

/// A `[store]` section for an embedded store in a fresh directory of its own.
pub fn scratch_store_toml() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-gw-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    format!("\n[store]\nbackend = \"embedded\"\npath = \"{}\"\n", dir.join("t.db").display())
}

/// The real gateway with a usage recorder, serving on a loopback port until dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    pub usage: Arc<RecordingSink>,
    running: Running,
}

impl Gateway {
    /// `toml` without a `[store]` section gets an embedded store of its own.
    pub async fn start(toml: &str) -> Gateway {
        let toml = if toml.contains("[store]") { toml.to_owned() } else { format!("{toml}{}", scratch_store_toml()) };
        let config = tollgate::config::Config::from_toml(&toml, "test.toml").expect("test config is valid");
        let usage = Arc::new(RecordingSink::default());
        let running = Running::start(tollgate::gateway::Gateway::builder(config).usage_sink(usage.clone())).await;
        Gateway { addr: running.addr, usage, running }
    }

    /// Signals shutdown, as SIGTERM does; the returned task ends once the
    /// gateway has drained (or its grace period ran out).
    pub fn shut_down(&mut self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        self.running.shut_down()
    }
}

/// A mock upstream, the gateway in front of it, and a client.
pub struct TestEnv {
    pub mock: MockUpstream,
    pub gw: Gateway,
    pub client: reqwest::Client,
}

impl TestEnv {
    pub async fn start() -> TestEnv {
        TestEnv::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Settings)) -> TestEnv {
        let mut settings = Settings::default();
        tune(&mut settings);
        let mock = MockUpstream::start().await;
        let base = settings.upstream_base_url.clone().unwrap_or_else(|| mock.base_url());
        let gw = Gateway::start(&config_toml(&settings, &base)).await;
        TestEnv { mock, gw, client: client() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gw.addr, path)
    }

    /// POST `body` to `path` with [`KEY`].
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_as(KEY, path, body).await
    }

    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        let request = self.client.post(self.url(path)).bearer_auth(key).json(body);
        within("the gateway's response headers", request.send()).await.expect("request reaches the gateway")
    }

    pub async fn get_as(&self, key: &str, path: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path)).bearer_auth(key);
        within("the gateway's response headers", request.send()).await.expect("request reaches the gateway")
    }

    /// A chat completion to the agent with [`KEY`].
    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    /// Proves the server still serves a normal request after whatever the test did.
    pub async fn assert_still_serves(&self) {
        let response = self.chat(&chat_body(AGENT, "still there?")).await;
        assert_eq!(response.status(), 200, "a normal request after the test's request must succeed");
        let body = json_of(response).await;
        assert_eq!(body["model"], AGENT);
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("reqwest client")
}

/// A minimal chat request for `model` with one user message.
pub fn chat_body(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

/// The same, streamed.
pub fn chat_stream_body(model: &str, content: &str) -> Value {
    let mut body = chat_body(model, content);
    body["stream"] = json!(true);
    body
}

pub async fn json_of(response: reqwest::Response) -> Value {
    let text = within("the response body", response.text()).await.expect("response body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("response body is not JSON ({e}): {text}"))
}

/// Asserts an OpenAI error response: status, `error.type`, `error.code`; returns the body.
pub async fn assert_error(response: reqwest::Response, status: u16, kind: &str, code: &str) -> Value {
    let got = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = within("the response body", response.text()).await.expect("response body");
    assert_eq!(got, status, "status; content-type {content_type:?}; body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    assert_eq!(content_type.as_deref(), Some("application/json"), "error content type; body: {body}");
    assert_eq!(body["error"]["type"], kind, "error.type; body: {body}");
    assert_eq!(body["error"]["code"], code, "error.code; body: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error.message; body: {body}");
    assert!(body["error"].get("param").is_some(), "error.param is present (maybe null); body: {body}");
    body
}

/// Reads an SSE response event by event.
pub struct SseReader {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        assert_eq!(response.status(), 200, "a stream starts with 200");
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(content_type.as_deref(), Some("text/event-stream"));
        SseReader { stream: Box::pin(response.bytes_stream()), buf: Vec::new() }
    }

    /// The `data:` payload of the next event (comments skipped); `None` at the
    /// end of the stream. Panics on a transport error, a truncated event, or
    /// when no event arrives within [`WAIT`].
    pub async fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                let event = String::from_utf8(event).expect("SSE is UTF-8");
                let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
                if data.is_empty() {
                    continue; // a comment or a keep-alive
                }
                return Some(data.join("\n"));
            }
            match within("the next SSE bytes", self.stream.next()).await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(e)) => panic!("the SSE stream failed instead of ending cleanly: {e:?}"),
                None => {
                    let rest = String::from_utf8_lossy(&self.buf);
                    assert!(rest.trim().is_empty(), "the stream ended inside an event: {rest:?}");
                    return None;
                }
            }
        }
    }

    /// The next event's payload as JSON (panics at the end or on `[DONE]`).
    pub async fn next_json(&mut self) -> Value {
        let data = self.next_data().await.expect("another event");
        serde_json::from_str(&data).unwrap_or_else(|e| panic!("event is not JSON ({e}): {data}"))
    }

    /// Every remaining event payload, up to the end of the stream.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(data) = self.next_data().await {
            out.push(data);
        }
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// JSON payloads of the events (everything but `[DONE]`).
pub fn json_events(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("event is not JSON ({err}): {e}")))
        .collect()
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Opens a raw connection to `addr` and writes `bytes` (nothing more: the
/// connection stays open, so a partial request stalls there).
pub async fn raw_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the gateway");
    stream.write_all(bytes).await.expect("write the request");
    stream.flush().await.unwrap();
    stream
}

/// Reads one HTTP/1.1 response with a `Content-Length` body off `stream`.
pub async fn raw_read_response(stream: &mut TcpStream) -> RawResponse {
    within("a raw HTTP response", async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut chunk).await.expect("read the response head");
            assert!(n > 0, "connection closed before a response head: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("error responses have a Content-Length");
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).await.expect("read the response body");
            assert!(n > 0, "connection closed inside the response body");
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        RawResponse { status, headers, body: String::from_utf8(body).expect("UTF-8 body") }
    })
    .await
}

/// A loopback port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}
