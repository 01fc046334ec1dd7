//! Closed-loop HTTP/1.1 load generator: C workers, each with its own keep-alive connection,
//! each sending the next request as soon as the previous response has been read to the end.
//!
//! It talks to hyper's connection API directly (no pool, no per-request routing) so the
//! client side stays as thin as possible: on a 2-core machine the generator competes for the
//! same CPUs as the servers it measures, and every cycle it saves goes to them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// A request that never completes must not stall the run; it is counted as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many distinct error messages to keep for the report.
const ERROR_SAMPLES: usize = 3;
const STREAM_END: &[u8] = b"data: [DONE]\n\n";

type Sender = SendRequest<Full<Bytes>>;

/// Where to send load and what to send.
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` and `Authorization`, prepared once rather than per request.
    pub host: HeaderValue,
    pub authorization: HeaderValue,
    pub body: Bytes,
    /// The request path (`/v1/chat/completions`, `/v1/responses`).
    pub path: &'static str,
    /// Whether the body asks for SSE, in which case the response must end with `[DONE]`.
    pub stream: bool,
}

/// Shape of one load run.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub concurrency: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Client `i` sends its first request `i / concurrency × ramp` after the start, not all at
    /// once: thousands of slow streams begun together would be a connection storm upstream
    /// and would stay in lockstep. Zero for the short-request rows.
    pub ramp: Duration,
    /// A request not complete within this is an error.
    pub timeout: Duration,
}

impl Spec {
    /// All clients start together; the usual [`REQUEST_TIMEOUT`].
    pub fn new(concurrency: usize, warmup: Duration, measure: Duration) -> Self {
        Self { concurrency, warmup, measure, ramp: Duration::ZERO, timeout: REQUEST_TIMEOUT }
    }
}

/// What one run measured. Only requests that completed inside the measured window are in
/// `completed` and the histograms (µs); `errors` covers the whole run including warm-up.
pub struct LoadResult {
    pub completed: u64,
    pub window: Duration,
    /// Request sent → last body byte read.
    pub total: Histogram<u64>,
    /// Request sent → first body frame read.
    pub ttfb: Histogram<u64>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Connections the server closed between requests (not errors, but they cost a handshake).
    pub reconnects: u64,
    /// Requests sent in the window that completed after it (in flight at its end).
    pub late: u64,
    /// Every complete 200 of the run — warm-up, window and late alike: what the server answered,
    /// e.g. to match against the events it emitted.
    pub answered: u64,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }

    /// Adds another run of the same path and shape: as if its window had followed this one.
    pub fn merge(&mut self, other: LoadResult) {
        let window = self.window + other.window;
        let mine = std::mem::replace(self, Tally::new().finish(Duration::ZERO));
        let mut tally = Tally::from(mine);
        tally.merge(Tally::from(other));
        *self = tally.finish(window);
    }
}

/// Runs warm-up plus measured window against `target`. `sample` is called right before and
/// right after the measured window (for server CPU counters) and both results are returned.
/// A server that cannot be reached shows up as errors in the result, not as a failure.
pub async fn run<S>(target: Arc<Target>, spec: Spec, mut sample: impl FnMut() -> S) -> (LoadResult, S, S) {
    // Connect everything first so connection set-up is not part of any measurement.
    let mut connections = Vec::with_capacity(spec.concurrency);
    for _ in 0..spec.concurrency {
        connections.push(connect(target.addr).await);
    }
    let start = Instant::now() + spec.warmup;
    let window = Window { start, end: start + spec.measure };
    let begun = Instant::now();
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, connection)| {
            let first = begun + spec.ramp.mul_f64(i as f64 / spec.concurrency as f64);
            tokio::spawn(worker(connection, Arc::clone(&target), window, first, spec.timeout))
        })
        .collect();

    sleep_until(window.start).await;
    let before = sample();
    sleep_until(window.end).await;
    let after = sample();

    let mut tally = Tally::new();
    for handle in workers {
        tally.merge(handle.await.expect("a load worker panicked"));
    }
    (tally.finish(spec.measure), before, after)
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// Per-worker counters, merged once at the end so workers never contend on shared state.
struct Tally {
    completed: u64,
    total: Histogram<u64>,
    ttfb: Histogram<u64>,
    errors: u64,
    error_samples: Vec<String>,
    reconnects: u64,
    late: u64,
    answered: u64,
}

impl Tally {
    fn new() -> Self {
        let histogram = || {
            // 1 µs .. 60 s at 3 significant digits.
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")
        };
        Self {
            completed: 0,
            total: histogram(),
            ttfb: histogram(),
            errors: 0,
            error_samples: Vec::new(),
            reconnects: 0,
            late: 0,
            answered: 0,
        }
    }

    fn record(&mut self, timing: &Timing) {
        self.completed += 1;
        self.total.saturating_record(micros(timing.total));
        self.ttfb.saturating_record(micros(timing.first_frame));
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        self.keep_sample(message);
    }

    fn keep_sample(&mut self, message: String) {
        if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.total.add(&other.total).expect("same histogram bounds");
        self.ttfb.add(&other.ttfb).expect("same histogram bounds");
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        self.late += other.late;
        self.answered += other.answered;
        for message in other.error_samples {
            self.keep_sample(message);
        }
    }

    fn finish(self, window: Duration) -> LoadResult {
        LoadResult {
            completed: self.completed,
            window,
            total: self.total,
            ttfb: self.ttfb,
            errors: self.errors,
            error_samples: self.error_samples,
            reconnects: self.reconnects,
            late: self.late,
            answered: self.answered,
        }
    }
}

impl From<LoadResult> for Tally {
    fn from(r: LoadResult) -> Tally {
        let LoadResult { completed, total, ttfb, errors, error_samples, reconnects, late, answered, .. } = r;
        Tally { completed, total, ttfb, errors, error_samples, reconnects, late, answered }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One closed-loop client: request, read the whole response, repeat until the window ends.
async fn worker(
    connection: Result<Sender, String>,
    target: Arc<Target>,
    window: Window,
    first: Instant,
    request_timeout: Duration,
) -> Tally {
    let mut tally = Tally::new();
    let mut slot = connection.map_err(|message| tally.error(message)).ok();
    sleep_until(first).await;
    while Instant::now() < window.end {
        if !ensure_connected(&mut slot, target.addr, &mut tally).await {
            continue;
        }
        let sender = slot.as_mut().expect("ensure_connected filled the slot");
        let result = timeout(request_timeout, exchange(sender, &target))
            .await
            .unwrap_or_else(|_| Err(format!("no full response within {request_timeout:?}")));
        let finished = Instant::now();
        if result.is_ok() {
            tally.answered += 1;
        }
        match result {
            Ok(timing) if finished >= window.start && finished < window.end => tally.record(&timing),
            Ok(_) if finished >= window.end => tally.late += 1,
            Ok(_) => {}
            Err(message) => {
                tally.error(message);
                // The connection state is unknown after a failure; start afresh.
                slot = None;
            }
        }
    }
    tally
}

/// Makes sure `slot` holds a connection ready for a request, reconnecting if the server
/// closed the previous one. Returns false (after a short back-off) if connecting failed.
async fn ensure_connected(slot: &mut Option<Sender>, addr: SocketAddr, tally: &mut Tally) -> bool {
    if let Some(sender) = slot.as_mut() {
        if sender.ready().await.is_ok() {
            return true;
        }
        *slot = None;
        tally.reconnects += 1;
    }
    match connect(addr).await {
        Ok(sender) => {
            *slot = Some(sender);
            true
        }
        Err(message) => {
            tally.error(message);
            sleep(Duration::from_millis(10)).await;
            false
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    // Small requests on a keep-alive connection: never wait for Nagle.
    stream.set_nodelay(true).map_err(|e| format!("set_nodelay: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors surface on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}

struct Timing {
    first_frame: Duration,
    total: Duration,
}

/// Sends one request and reads the response body to the end. Anything but a complete 200
/// (for streams: ending in `data: [DONE]`) is an error, so a path can't look fast by failing
/// or truncating.
async fn exchange(sender: &mut Sender, target: &Target) -> Result<Timing, String> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(target.path)
        .header(HOST, target.host.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, target.authorization.clone())
        .body(Full::new(target.body.clone()))
        .expect("static request parts are valid");

    let sent = Instant::now();
    let response = sender.send_request(request).await.map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first_frame = None;
    // The last bytes seen (a proxy may split `[DONE]` across frames), or for an error
    // response the start of its body.
    let mut kept: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading body ({status}): {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        first_frame.get_or_insert_with(Instant::now);
        if status == StatusCode::OK {
            kept.extend_from_slice(&data);
            let excess = kept.len().saturating_sub(STREAM_END.len());
            kept.drain(..excess);
        } else if kept.len() < 200 {
            kept.extend_from_slice(&data);
        }
    }
    let done = Instant::now();

    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&kept[..kept.len().min(200)]).into_owned();
        return Err(format!("HTTP {status}: {text}"));
    }
    if target.stream && kept != STREAM_END {
        return Err("SSE stream did not end with `data: [DONE]`".to_owned());
    }
    let first_frame = first_frame.ok_or_else(|| "200 with an empty body".to_owned())?;
    Ok(Timing { first_frame: first_frame - sent, total: done - sent })
}
