//! Webhooks under load: a receiver on loopback that answers every delivery `200` at once and
//! counts what arrived, and the gateway's side of the set-up (its `[webhooks]` section and the
//! registration with `POST /v1/webhooks`).
//!
//! The receiver runs in the benchmark process, on a thread and a single-threaded runtime of its
//! own, so its counts can be read directly: every delivery, and the distinct `webhook-id`s (event
//! ids) of `request.completed` — at least once means a receiver may see an event twice, so only
//! distinct ids say whether every event arrived. It reads each body to the end, as a real
//! receiver would, but verifies no signature (it only checks the headers are there): the
//! integration tests verify signatures; here the receiver should cost as little as it can.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The one event type the bench webhook subscribes to: one per answered request.
pub const EVENT_TYPE: &str = "request.completed";
/// The headers every delivery must carry (Standard Webhooks, plus tollgate's own signature).
const SIGNATURE_HEADERS: [&str; 3] = ["webhook-timestamp", "webhook-signature", "x-tollgate-signature"];
/// How often a wait for deliveries looks at the counts.
const POLL: Duration = Duration::from_millis(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[webhooks]` section of a gateway whose webhook points at the loopback receiver; every
/// other setting is the default (retries, `per_endpoint_concurrency`, `max_in_flight`, price 0).
pub const CONFIG_SECTION: &str =
    "\n[webhooks]\nallow_private_targets = true  # the benchmark's receiver is on loopback\n";

/// Appends [`CONFIG_SECTION`] to a gateway config written by the harness.
pub fn enable_in_config(config: &Path) -> Result<(), String> {
    let mut file = std::fs::File::options()
        .append(true)
        .open(config)
        .map_err(|e| format!("opening {} to add [webhooks]: {e}", config.display()))?;
    file.write_all(CONFIG_SECTION.as_bytes()).map_err(|e| format!("writing {}: {e}", config.display()))
}

/// What the receiver has counted so far.
#[derive(Default)]
struct Seen {
    /// Every POST read to the end, duplicates included.
    deliveries: AtomicU64,
    /// Distinct `webhook-id`s of [`EVENT_TYPE`] deliveries.
    ids: Mutex<HashSet<Box<str>>>,
    /// Deliveries of another type, or without a `webhook-id`.
    other: AtomicU64,
    /// Deliveries missing one of [`SIGNATURE_HEADERS`].
    unsigned: AtomicU64,
}

/// The receiver's counts at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub deliveries: u64,
    pub distinct: u64,
    pub other: u64,
    pub unsigned: u64,
}

impl Counts {
    /// Deliveries of an event id already seen (at-least-once redeliveries).
    pub fn duplicates(&self) -> u64 {
        self.deliveries.saturating_sub(self.distinct + self.other)
    }
}

/// A loopback webhook receiver, and how many events its gateway owes it: one per request the
/// gateway answered on this path, warm-up included.
pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    expected: AtomicU64,
}

impl Receiver {
    /// Binds 127.0.0.1:0 and serves on a thread of its own until the process exits.
    pub fn start() -> Result<Receiver, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("receiver bind: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("receiver set_nonblocking: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("receiver local_addr: {e}"))?;
        let seen = Arc::new(Seen::default());
        let counting = Arc::clone(&seen);
        std::thread::Builder::new()
            .name("webhook-receiver".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("webhook receiver: cannot build tokio runtime");
                runtime.block_on(serve(listener, counting));
            })
            .map_err(|e| format!("cannot start the receiver thread: {e}"))?;
        Ok(Receiver { addr, seen, expected: AtomicU64::new(0) })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn counts(&self) -> Counts {
        let seen = &self.seen;
        Counts {
            deliveries: seen.deliveries.load(Ordering::Acquire),
            distinct: seen.ids.lock().expect("ids lock").len() as u64,
            other: seen.other.load(Ordering::Acquire),
            unsigned: seen.unsigned.load(Ordering::Acquire),
        }
    }

    /// Counts `answered` more requests whose events the receiver is owed.
    pub fn expect(&self, answered: u64) {
        self.expected.fetch_add(answered, Ordering::AcqRel);
    }

    pub fn expected(&self) -> u64 {
        self.expected.load(Ordering::Acquire)
    }

    /// Events owed and not yet received.
    pub fn backlog(&self) -> u64 {
        self.expected().saturating_sub(self.counts().distinct)
    }

    /// Waits until every event owed has arrived, at most `limit`: how long it took, or `Err`
    /// with the time waited if some are still missing.
    pub fn wait_delivered(&self, limit: Duration) -> Result<Duration, Duration> {
        let start = Instant::now();
        loop {
            if self.backlog() == 0 {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= limit {
                return Err(start.elapsed());
            }
            sleep(POLL);
        }
    }
}

async fn serve(listener: std::net::TcpListener, seen: Arc<Seen>) {
    let listener = TcpListener::from_std(listener).expect("webhook receiver: cannot adopt its listener");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                eprintln!("webhook receiver: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = service_fn(move |req| receive(req, Arc::clone(&seen)));
            // Errors here are the gateway closing idle connections; nothing to do about them.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Reads one delivery to the end, counts it, answers `200` with an empty body.
async fn receive(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = req.headers();
    let signed = SIGNATURE_HEADERS.iter().all(|name| headers.contains_key(*name));
    let wanted = headers.get("x-tollgate-event").is_some_and(|v| v.as_bytes() == EVENT_TYPE.as_bytes());
    let id: Option<Box<str>> = headers.get("webhook-id").and_then(|v| v.to_str().ok()).map(Box::from);
    if req.into_body().collect().await.is_err() {
        // Not read to the end: the gateway gave up on it and will retry.
        return Ok(Response::new(Full::new(Bytes::new())));
    }
    seen.deliveries.fetch_add(1, Ordering::AcqRel);
    if !signed {
        seen.unsigned.fetch_add(1, Ordering::AcqRel);
    }
    match id {
        Some(id) if wanted => {
            seen.ids.lock().expect("ids lock").insert(id);
        }
        _ => {
            seen.other.fetch_add(1, Ordering::AcqRel);
        }
    }
    Ok(Response::new(Full::new(Bytes::new())))
}

/// Registers the receiver for [`EVENT_TYPE`] with `POST /v1/webhooks`, authenticated with a key
/// that may manage the workspace's webhooks; returns the webhook's id.
pub fn register(gateway: SocketAddr, key: &str, receiver: &Receiver) -> Result<String, String> {
    let body =
        format!(r#"{{"url":"{}","events":["{EVENT_TYPE}"],"description":"load benchmark receiver"}}"#, receiver.url());
    let (status, answer) = post(gateway, "/v1/webhooks", key, &body)?;
    if status != 201 {
        return Err(format!("POST /v1/webhooks answered {status}: {answer}"));
    }
    let value: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| format!("POST /v1/webhooks answered non-JSON ({e}): {answer}"))?;
    match value.get("id").and_then(serde_json::Value::as_str) {
        Some(id) => Ok(id.to_owned()),
        None => Err(format!("POST /v1/webhooks answered without an id: {answer}")),
    }
}

/// One blocking `POST` with a JSON body on a fresh connection: status and body (the gateway
/// answers management calls with a `Content-Length`, so reading to EOF is the whole body).
fn post(addr: SocketAddr, path: &str, key: &str, body: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("sending POST {path}: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("reading the answer to POST {path}: {e}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("POST {path}: not an HTTP response: {head:?}"))?;
    Ok((status, body.to_owned()))
}
