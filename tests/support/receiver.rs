//! A real webhook receiver for one test: an HTTP/1.1 server on a free loopback
//! port that records every POST, checks both of tollgate's signatures on it, and
//! answers as the test scripts it to (a status, a hang, a delay, a dropped
//! connection), so delivery, retry and rotation tests see what a real endpoint
//! would see.
//!
//! Self-contained on purpose (no `common`), so a test binary may include only
//! this file and `support/tools.rs` (as `crate::tools`, for the Python
//! cross-check): `#[path = "support/receiver.rs"] mod receiver;`. Signatures are
//! verified here from the Standard Webhooks spec, independently of `src/`, so a
//! signing bug in the gateway cannot be mirrored by the check;
//! `tests/sdk/standardwebhooks_verify.py` cross-checks with the stock library.
//! Every wait is bounded ([`WAIT`] unless [`Receiver::set_wait_bound`]) and
//! fails with a clear message instead of hanging; none sleeps a fixed time.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The default bound of every wait: generous, the suite runs on a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// Standard base64, padded or not (the reference libraries accept both).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The HMAC key of a Standard Webhooks secret: the base64-decoded bytes after `whsec_`.
pub fn key_from_secret(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(encoded).unwrap_or_else(|e| panic!("webhook secret {secret:?} is not base64: {e}"))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// One `webhook-signature` entry: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign_std(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body]);
    format!("v1,{}", B64.encode(mac))
}

/// The `X-Tollgate-Signature` value: `sha256=<lowercase hex HMAC-SHA256(key, body)>`.
pub fn sign_tollgate(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(key, &[body])))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// True when `webhook-id`, an integer `webhook-timestamp` and a `webhook-signature`
/// are present and any listed `v1` signature matches any of `keys` (rotation).
/// The timestamp's age is not checked: tests may run the gateway on a fake clock;
/// assert on [`Delivery::timestamp`] where it matters.
pub fn verify_std(keys: &[Vec<u8>], headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(id), Some(ts), Some(sigs)) =
        (header(headers, "webhook-id"), header(headers, "webhook-timestamp"), header(headers, "webhook-signature"))
    else {
        return false;
    };
    let Ok(ts) = ts.parse::<i64>() else { return false };
    let expected: Vec<String> = keys.iter().map(|k| sign_std(k, id, ts, body)).collect();
    let expected: Vec<Vec<u8>> = expected.iter().filter_map(|s| B64.decode(&s[3..]).ok()).collect();
    sigs.split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| B64.decode(s).ok())
        .any(|s| expected.contains(&s))
}

/// True when `X-Tollgate-Signature` is `sha256=<hex>` of the body under any of `keys`.
pub fn verify_tollgate(keys: &[Vec<u8>], headers: &HeaderMap, body: &[u8]) -> bool {
    header(headers, "x-tollgate-signature").is_some_and(|got| keys.iter().any(|k| sign_tollgate(k, body) == got))
}

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer at once with this status.
    Status(u16),
    /// Answer at once with this status and these headers (e.g. `Retry-After`).
    StatusWith(u16, Vec<(String, String)>),
    /// Never answer: hold the connection until the client gives up (or the receiver drops).
    Hang,
    /// Answer with the status after the delay.
    Delay(Duration, u16),
    /// Drop the connection without answering.
    Close,
}

impl Behaviour {
    /// `status` with `Retry-After: <seconds>`.
    pub fn retry_after(status: u16, seconds: u64) -> Behaviour {
        Behaviour::StatusWith(status, vec![("retry-after".into(), seconds.to_string())])
    }

    /// The status this behaviour answers with, if it answers at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Behaviour::Status(s) | Behaviour::StatusWith(s, _) | Behaviour::Delay(_, s) => Some(*s),
            Behaviour::Hang | Behaviour::Close => None,
        }
    }
}

/// One request as it arrived, with the verdict on both signatures.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: HeaderMap,
    /// The raw body bytes, exactly as signed.
    pub body: Vec<u8>,
    pub webhook_id: Option<String>,
    /// `webhook-timestamp` (unix seconds), when it parses as an integer.
    pub timestamp: Option<i64>,
    /// The body's `"type"`.
    pub event_type: Option<String>,
    /// The body's `"id"`, if it has one.
    pub event_id: Option<String>,
    /// The parsed body; `Null` when it is not JSON.
    pub json: Value,
    /// The Standard Webhooks signature matches a configured secret.
    pub std_valid: bool,
    /// `X-Tollgate-Signature` matches a configured secret.
    pub tollgate_valid: bool,
    pub received_at: Instant,
    /// What the script answered (or will answer, for a `Delay`); `None` for `Hang` and `Close`.
    pub answered: Option<u16>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Both signatures check out.
    pub fn valid(&self) -> bool {
        self.std_valid && self.tollgate_valid
    }

    /// The event's identity: the body's `id`, else the `webhook-id` (the same on every retry).
    pub fn key(&self) -> Option<&str> {
        self.event_id.as_deref().or(self.webhook_id.as_deref())
    }

    pub fn succeeded(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }
}

struct Script {
    queue: VecDeque<Behaviour>,
    default: Behaviour,
}

struct State {
    keys: Mutex<Vec<Vec<u8>>>,
    script: Mutex<Script>,
    deliveries: Mutex<Vec<Delivery>>,
    /// The number of deliveries so far: waits watch it instead of polling.
    count: watch::Sender<usize>,
    bound: Mutex<Duration>,
}

/// The receiver; serves until dropped (hanging and delayed answers end then too).
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Receiver {
    /// Starts a receiver on `127.0.0.1:0` that accepts signatures made with
    /// `secret` (`whsec_<base64>`) and answers 200 until scripted otherwise.
    pub async fn start(secret: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let state = Arc::new(State {
            keys: Mutex::new(vec![key_from_secret(secret)]),
            script: Mutex::new(Script { queue: VecDeque::new(), default: Behaviour::Status(200) }),
            deliveries: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            bound: Mutex::new(WAIT),
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(listener, state.clone(), shutdown.clone()));
        Receiver { addr, state, shutdown }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` on `path` is optional).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Accept signatures made with any of `secrets` from now on (secret rotation).
    pub fn set_secrets(&self, secrets: &[&str]) {
        *self.state.keys.lock().unwrap() = secrets.iter().map(|s| key_from_secret(s)).collect();
    }

    /// Queues behaviours, consumed one per request before the default applies.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.state.script.lock().unwrap().queue.extend(behaviours);
    }

    /// The next `n` requests get `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.script(std::iter::repeat_n(Behaviour::Status(status), n));
    }

    /// What every request gets once the queue is empty.
    pub fn set_default(&self, behaviour: Behaviour) {
        self.state.script.lock().unwrap().default = behaviour;
    }

    pub fn respond_default(&self, status: u16) {
        self.set_default(Behaviour::Status(status));
    }

    /// Every request from now on hangs (the queue is cleared).
    pub fn hang_all(&self) {
        let mut script = self.state.script.lock().unwrap();
        script.queue.clear();
        script.default = Behaviour::Hang;
    }

    /// The bound of the waits below (default [`WAIT`]).
    pub fn set_wait_bound(&self, bound: Duration) {
        *self.state.bound.lock().unwrap() = bound;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.deliveries.lock().unwrap().len()
    }

    /// Requests answered (or being answered, after a `Delay`) with a 2xx.
    pub fn success_count(&self) -> usize {
        self.state.deliveries.lock().unwrap().iter().filter(|d| d.succeeded()).count()
    }

    /// The distinct [`Delivery::key`]s: retries of one event count once.
    pub fn distinct_event_ids(&self) -> BTreeSet<String> {
        self.state.deliveries.lock().unwrap().iter().filter_map(|d| d.key().map(str::to_owned)).collect()
    }

    pub fn distinct_webhook_ids(&self) -> BTreeSet<String> {
        self.state.deliveries.lock().unwrap().iter().filter_map(|d| d.webhook_id.clone()).collect()
    }

    /// Panics, listing them, if any delivery fails either signature check.
    pub fn assert_all_valid(&self) {
        let bad: Vec<_> = self.deliveries().into_iter().filter(|d| !d.valid()).collect();
        assert!(bad.is_empty(), "deliveries with a bad signature: {bad:#?}");
    }

    /// Waits until `done` holds for the deliveries so far, and returns them all.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let bound = *self.state.bound.lock().unwrap();
        let mut changed = self.state.count.subscribe();
        let wait = async {
            loop {
                let seen = self.deliveries();
                if done(&seen) {
                    return seen;
                }
                changed.changed().await.expect("the receiver's state outlives its waits");
            }
        };
        match tokio::time::timeout(bound, wait).await {
            Ok(seen) => seen,
            Err(_) => panic!(
                "webhook receiver: timed out after {bound:?} waiting for {what}; got {} deliveries: {:#?}",
                self.count(),
                self.deliveries().iter().map(|d| (&d.path, &d.event_type, &d.webhook_id)).collect::<Vec<_>>()
            ),
        }
    }

    /// Waits until at least `n` requests have arrived; returns all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        self.wait_until(&format!("{n} deliveries"), |d| d.len() >= n).await
    }

    /// Waits for the first delivery that satisfies `pred` and returns it.
    pub async fn wait_for_event(&self, pred: impl Fn(&Delivery) -> bool) -> Delivery {
        let seen = self.wait_until("a delivery matching the predicate", |d| d.iter().any(&pred)).await;
        seen.into_iter().find(|d| pred(d)).expect("just matched")
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue, // e.g. too many open files: keep serving the others
            },
        };
        let (state, shutdown) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            // Cancelled by a `Close` answer: dropping the connection drops the socket.
            let close = CancellationToken::new();
            let service_close = close.clone();
            let service =
                hyper::service::service_fn(move |request| handle(request, state.clone(), service_close.clone()));
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = close.cancelled() => {}
                _ = shutdown.cancelled() => {} // ends hanging and delayed answers
            }
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
    close: CancellationToken,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => return Ok(answer(400, &[])), // the client gave up mid-body: not a delivery
    };
    let behaviour = {
        let mut script = state.script.lock().unwrap();
        script.queue.pop_front().unwrap_or_else(|| script.default.clone())
    };
    let keys = state.keys.lock().unwrap().clone();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |field: &str| json.get(field).and_then(Value::as_str).map(str::to_owned);
    let delivery = Delivery {
        path: parts.uri.path().to_owned(),
        webhook_id: header(&parts.headers, "webhook-id").map(str::to_owned),
        timestamp: header(&parts.headers, "webhook-timestamp").and_then(|t| t.parse().ok()),
        event_type: text("type"),
        event_id: text("id"),
        std_valid: verify_std(&keys, &parts.headers, &body),
        tollgate_valid: verify_tollgate(&keys, &parts.headers, &body),
        received_at: Instant::now(),
        answered: behaviour.status(),
        headers: parts.headers,
        json,
        body,
    };
    let count = {
        let mut deliveries = state.deliveries.lock().unwrap();
        deliveries.push(delivery);
        deliveries.len()
    };
    state.count.send_replace(count);
    match behaviour {
        Behaviour::Status(status) => Ok(answer(status, &[])),
        Behaviour::StatusWith(status, headers) => Ok(answer(status, &headers)),
        Behaviour::Delay(delay, status) => {
            tokio::time::sleep(delay).await;
            Ok(answer(status, &[]))
        }
        // Pending until the client hangs up or the receiver drops (and the connection with it).
        Behaviour::Hang => std::future::pending().await,
        Behaviour::Close => {
            close.cancel();
            std::future::pending().await
        }
    }
}

fn answer(status: u16, headers: &[(String, String)]) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response.body(Full::new(Bytes::from_static(b"receiver\n"))).expect("a valid scripted response")
}

/// Verifies `(secret, delivery)` pairs with the official `standardwebhooks`
/// Python library (tests/sdk/standardwebhooks_verify.py): whether every pair
/// verified, and one output line per pair, `ok <webhook-id>` or
/// `fail <reason>`. `None` (after [`crate::tools::skip`]: the calling test
/// counts as skipped) when Python or the library is missing, except under
/// `CI=true`, where that fails.
pub fn verify_with_python(pairs: &[(&str, &Delivery)]) -> Option<(bool, Vec<String>)> {
    use std::process::{Command, Stdio};
    if let Some(why) = crate::tools::python_lacks("standardwebhooks") {
        let reason = format!("its standardwebhooks Python cross-check (the rest of the test ran): {why}");
        crate::tools::skip("the standardwebhooks Python cross-check", &reason);
        return None;
    }
    let input: String = pairs
        .iter()
        .map(|(secret, d)| {
            let headers: serde_json::Map<String, Value> =
                d.headers.iter().map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap()))).collect();
            let body = String::from_utf8(d.body.clone()).expect("a UTF-8 body");
            format!("{}\n", serde_json::json!({"secret": secret, "headers": headers, "body": body}))
        })
        .collect();
    let mut child = Command::new(crate::tools::python())
        .arg("standardwebhooks_verify.py")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.code().is_some(), "the script ran to its end: {}", String::from_utf8_lossy(&output.stderr));
    Some((output.status.success(), String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()))
}
