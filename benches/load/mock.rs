//! Mock OpenAI-compatible upstream, run in its own process (`load --mock-upstream`).
//!
//! It is deliberately as cheap as possible — canned bytes, substring checks instead of JSON
//! parsing, one thread — so that every measured path pays the same small, fixed upstream cost
//! and the differences between paths come from whatever sits in front of it. Running it in a
//! separate process keeps its CPU time out of the load generator's and lets the gateway and
//! nginx talk to it over real loopback sockets.
//!
//! With `--token-interval-ms N` it is a slow model instead: each streamed chunk comes N ms
//! after the one before (the first N ms after the head), the usage chunk and `[DONE]` right
//! after the last — for holding many streams open at once (the open-streams row).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt as _};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The model name the mock reports; the gateway must rewrite it back to the agent name.
pub const UPSTREAM_MODEL: &str = "bench-upstream-model";

/// One word per streamed chunk, like a real token stream.
const WORDS: [&str; 16] = [
    "Hello",
    " there",
    ",",
    " benchmark",
    "!",
    " This",
    " is",
    " a",
    " canned",
    " streamed",
    " reply",
    " from",
    " the",
    " mock",
    " upstream",
    ".",
];

type FrameStream = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;
/// The slow model's stream: the same frames, each after its pause.
type PacedStream = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>;
type StreamedBody = Either<StreamBody<FrameStream>, StreamBody<PacedStream>>;
type MockBody = Either<Full<Bytes>, StreamedBody>;

/// Every response body the mock can send, rendered once at start-up.
struct Canned {
    completion: Bytes,
    chunks: Vec<Bytes>,
    usage_chunk: Bytes,
    done: Bytes,
    /// The slow model's pause before each content chunk; `None`: everything at once.
    token_interval: Option<Duration>,
}

impl Canned {
    fn new(token_interval: Option<Duration>) -> Self {
        let head = |object: &str| {
            format!(
                r#""id":"chatcmpl-bench0001","object":"{object}","created":1700000000,"model":"{UPSTREAM_MODEL}","system_fingerprint":"fp_bench""#
            )
        };
        let chunk_head = head("chat.completion.chunk");
        let completion = format!(
            r#"{{{},"choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello there, benchmark! This is a canned reply from the mock upstream, about as long as a short real answer.","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":27,"completion_tokens":24,"total_tokens":51,"prompt_tokens_details":{{"cached_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0}}}}}}"#,
            head("chat.completion")
        );
        let last = WORDS.len() - 1;
        let chunks = WORDS
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let role = if i == 0 { r#""role":"assistant","# } else { "" };
                let finish = if i == last { r#""stop""# } else { "null" };
                Bytes::from(format!(
                    "data: {{{chunk_head},\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"{word}\"}},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
                ))
            })
            .collect();
        let usage_chunk = format!(
            "data: {{{chunk_head},\"choices\":[],\"usage\":{{\"prompt_tokens\":27,\"completion_tokens\":{},\"total_tokens\":{}}}}}\n\n",
            WORDS.len(),
            27 + WORDS.len()
        );
        Self {
            completion: Bytes::from(completion),
            chunks,
            usage_chunk: Bytes::from(usage_chunk),
            done: Bytes::from_static(b"data: [DONE]\n\n"),
            token_interval,
        }
    }

    /// The SSE body: each event is its own body frame, all available immediately, so the
    /// stream costs the upstream nothing but the bytes and any latency seen by the client is
    /// added by the hops in between — or, for the slow model, each content chunk after its pause.
    fn stream(&self, include_usage: bool) -> StreamedBody {
        let mut frames: Vec<Bytes> = self.chunks.clone();
        if include_usage {
            frames.push(self.usage_chunk.clone());
        }
        frames.push(self.done.clone());
        let Some(interval) = self.token_interval else {
            let frames: Vec<_> = frames.into_iter().map(|b| Ok(Frame::data(b))).collect();
            return Either::Left(StreamBody::new(stream::iter(frames)));
        };
        let paced = self.chunks.len();
        let frames = stream::iter(frames.into_iter().enumerate()).then(move |(i, bytes)| async move {
            if i < paced {
                tokio::time::sleep(interval).await;
            }
            Ok(Frame::data(bytes))
        });
        Either::Right(StreamBody::new(Box::pin(frames) as PacedStream))
    }
}

/// Compact and single-spaced spellings of `"stream":true` / `"include_usage":true`. Substring
/// checks are good enough for the bodies the benchmark and the gateway send, and far cheaper
/// than parsing JSON in the mock.
const STREAM_TRUE: [&[u8]; 2] = [b"\"stream\":true", b"\"stream\": true"];
const INCLUDE_USAGE_TRUE: [&[u8]; 2] = [b"\"include_usage\":true", b"\"include_usage\": true"];

fn has_any(body: &[u8], needles: &[&[u8]]) -> bool {
    needles.iter().any(|needle| contains(body, needle))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn reply(status: StatusCode, content_type: &str, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type.parse().expect("static content type is valid"));
    if content_type == "text/event-stream" {
        headers.insert(CACHE_CONTROL, "no-cache".parse().expect("static header"));
    }
    response
}

fn error(status: StatusCode, message: &'static str) -> Response<MockBody> {
    reply(status, "application/json", Either::Left(Full::new(Bytes::from_static(message.as_bytes()))))
}

async fn handle(req: Request<Incoming>, canned: Arc<Canned>) -> Result<Response<MockBody>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/v1/chat/completions" {
        return Ok(error(
            StatusCode::NOT_FOUND,
            r#"{"error":{"message":"mock upstream: unknown route","type":"invalid_request_error"}}"#,
        ));
    }
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                r#"{"error":{"message":"mock upstream: unreadable body","type":"invalid_request_error"}}"#,
            ))
        }
    };
    Ok(if has_any(&body, &STREAM_TRUE) {
        let body = canned.stream(has_any(&body, &INCLUDE_USAGE_TRUE));
        reply(StatusCode::OK, "text/event-stream", Either::Right(body))
    } else {
        let body = Full::new(canned.completion.clone());
        reply(StatusCode::OK, "application/json", Either::Left(body))
    })
}

/// Exits the process once stdin reaches EOF, i.e. when the parent benchmark is gone — even if
/// it died without running its cleanup — so a crashed run never leaves a stray mock behind.
fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// Connections the kernel queues before `accept` (capped by `net.core.somaxconn`): tokio's
/// default of 1024 overflows when thousands of streams connect at once, and a dropped SYN
/// costs its client a 1 s retransmit.
const LISTEN_BACKLOG: u32 = 16_384;

fn listen() -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(LISTEN_BACKLOG)
}

/// The slow model's pause, from `--token-interval-ms N` among the process's arguments.
fn token_interval() -> Option<Duration> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|arg| arg == TOKEN_INTERVAL_FLAG)?;
    let millis = args.get(at + 1).and_then(|n| n.parse().ok()).expect("--token-interval-ms takes milliseconds");
    Some(Duration::from_millis(millis))
}

/// The flag that makes the mock a slow model (see the module docs).
pub const TOKEN_INTERVAL_FLAG: &str = "--token-interval-ms";

/// Entry point of the `--mock-upstream` child: binds 127.0.0.1:0, prints the port on stdout
/// (the parent waits for that line), then serves HTTP/1.1 keep-alive connections forever.
pub fn serve() {
    exit_with_parent();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("mock upstream: cannot build tokio runtime");
    runtime.block_on(async {
        let listener = listen().expect("mock upstream: cannot listen on 127.0.0.1:0");
        let port = listener.local_addr().expect("mock upstream: bound socket has no address").port();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{port}").expect("mock upstream: cannot report port");
        stdout.flush().expect("mock upstream: cannot flush port");

        let canned = Arc::new(Canned::new(token_interval()));
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Typically EMFILE under a connection storm; back off instead of spinning.
                    eprintln!("mock upstream: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let canned = Arc::clone(&canned);
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, Arc::clone(&canned)));
                // Errors here are client disconnects; nothing useful to do with them.
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
