//! An in-process, scriptable OpenAI-compatible upstream.
//!
//! Every request is recorded (method, path, headers, body, arrival time). Each
//! request takes the next scripted [`Reply`] from a FIFO; when the script is
//! empty it gets [`Reply::Normal`], a realistic answer to whatever it asked for
//! (JSON, or SSE when the body says `"stream": true`).
//!
//! [`scripted_stream`] hands the test a [`StreamControl`]: the test decides when
//! each SSE event leaves the upstream, when the upstream dies, and can wait for
//! the gateway to drop the stream (cancellation).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::within;

type MockBody = UnsyncBoxBody<Bytes, io::Error>;

/// Token counts the mock reports for every normal answer.
pub const PROMPT_TOKENS: u64 = 11;
pub const COMPLETION_TOKENS: u64 = 3;
/// The words of every normal answer; streamed one per chunk.
pub const ANSWER_WORDS: [&str; 3] = ["Hello", " from", " upstream"];

/// What the upstream does with one request.
pub enum Reply {
    /// A well-formed answer for the endpoint and the `stream` flag.
    Normal,
    /// Any status, headers and body.
    Status { status: u16, headers: Vec<(&'static str, String)>, body: String },
    /// Never sends response headers.
    Hang,
    /// Response headers at once, then whatever the [`StreamControl`] sends.
    Stream(mpsc::Receiver<Result<Bytes, io::Error>>),
}

impl Reply {
    pub fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply::Status { status, headers: vec![("content-type", "application/json".into())], body: body.into() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        if let Reply::Status { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: http::Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    /// The body as JSON (panics when it is not JSON: the gateway must send JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("upstream received a non-JSON body ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct State {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    count: watch::Sender<usize>,
    /// Non-zero: every unscripted request gets this status (an outage).
    failing: std::sync::atomic::AtomicU16,
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    pub async fn start() -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock upstream");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            failing: Default::default(),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    // Errors here are expected: the gateway hangs up on streams it cancels.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockUpstream { addr, state, task }
    }

    /// `http://127.0.0.1:<port>/v1`, as a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// From now on every unscripted request fails with `status` (`None`:
    /// answers normally again): an upstream outage of any length.
    pub fn fail_all(&self, status: Option<u16>) {
        self.state.failing.store(status.unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
    }

    /// Scripts the reply to the next request not yet scripted.
    pub fn push(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests (attempts) the upstream has received.
    pub fn attempts(&self) -> usize {
        *self.state.count.borrow()
    }

    /// The only request received; panics if there were more or fewer.
    pub fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one upstream request, got {}", requests.len());
        requests.into_iter().next().unwrap()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<Recorded> {
        let mut rx = self.state.count.subscribe();
        within("the upstream to receive requests", rx.wait_for(|c| *c >= n)).await.expect("mock state alive");
        self.requests()
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let recorded = Recorded {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
        at: Instant::now(),
    };
    let request_json: Value = serde_json::from_slice(&recorded.body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(recorded.clone());
    state.count.send_modify(|c| *c += 1);
    let failing = state.failing.load(std::sync::atomic::Ordering::SeqCst);
    let unscripted = || match failing {
        0 => Reply::Normal,
        status => Reply::status(status, r#"{"error":{"message":"outage","type":"server_error"}}"#),
    };
    let reply = state.script.lock().unwrap().pop_front().unwrap_or_else(unscripted);
    match reply {
        Reply::Normal => normal(&recorded.path, &request_json),
        Reply::Status { status, headers, body } => {
            let mut response = Response::new(full(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::Hang => std::future::pending().await,
        Reply::Stream(rx) => sse_response(channel_body(rx)),
    }
}

fn full(body: impl Into<Bytes>) -> MockBody {
    Full::new(body.into()).map_err(|never| match never {}).boxed_unsync()
}

fn channel_body(rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> MockBody {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item.map(Frame::data), rx))
    });
    StreamBody::new(stream).boxed_unsync()
}

fn sse_response(body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    response.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
    response
}

/// A realistic OpenAI answer to `request` at `path`; echoes the model it was sent.
fn normal(path: &str, request: &Value) -> Response<MockBody> {
    let model = request["model"].as_str().unwrap_or("unknown").to_owned();
    let usage = json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                       "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS});
    if path.ends_with("/embeddings") {
        let body = json!({"object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.75]}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS}});
        return json_response(body);
    }
    let chat = path.ends_with("/chat/completions");
    if request["stream"] == json!(true) {
        let include_usage = request["stream_options"]["include_usage"] == json!(true);
        let mut events: Vec<Bytes> = Vec::new();
        for (i, word) in ANSWER_WORDS.iter().enumerate() {
            let mut chunk = if chat {
                let delta =
                    if i == 0 { json!({"role": "assistant", "content": word}) } else { json!({"content": word}) };
                chat_chunk(&model, json!([{"index": 0, "delta": delta, "finish_reason": null}]))
            } else {
                completion_chunk(&model, json!([{"index": 0, "text": word, "finish_reason": null}]))
            };
            if include_usage {
                chunk["usage"] = Value::Null;
            }
            events.push(event(&chunk));
        }
        let mut last = if chat {
            chat_chunk(&model, json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        } else {
            completion_chunk(&model, json!([{"index": 0, "text": "", "finish_reason": "stop"}]))
        };
        if include_usage {
            last["usage"] = Value::Null;
            events.push(event(&last));
            let mut usage_chunk =
                if chat { chat_chunk(&model, json!([])) } else { completion_chunk(&model, json!([])) };
            usage_chunk["usage"] = usage;
            events.push(event(&usage_chunk));
        } else {
            events.push(event(&last));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        // One frame per event, as a real upstream flushes them.
        let stream = futures_util::stream::iter(events.into_iter().map(|b| Ok::<_, io::Error>(Frame::data(b))));
        return sse_response(StreamBody::new(stream).boxed_unsync());
    }
    let text: String = ANSWER_WORDS.concat();
    let body = if chat {
        json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000, "model": model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
               "usage": usage})
    } else {
        json!({"id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000, "model": model,
               "choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "usage": usage})
    };
    json_response(body)
}

fn json_response(body: Value) -> Response<MockBody> {
    let mut response = Response::new(full(body.to_string()));
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    response
}

/// A chat completion chunk for `model` with the given `choices`.
pub fn chat_chunk(model: &str, choices: Value) -> Value {
    json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
           "model": model, "choices": choices})
}

fn completion_chunk(model: &str, choices: Value) -> Value {
    json!({"id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000,
           "model": model, "choices": choices})
}

/// A content chunk as a complete SSE event.
pub fn content_event(model: &str, content: &str) -> Bytes {
    event(&chat_chunk(model, json!([{"index": 0, "delta": {"content": content}, "finish_reason": null}])))
}

/// `data: <json>\n\n`.
pub fn event(chunk: &Value) -> Bytes {
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// A stream whose events the test releases one by one: the reply to script,
/// and the control the test keeps.
pub fn scripted_stream() -> (Reply, StreamControl) {
    let (tx, rx) = mpsc::channel(64);
    (Reply::Stream(rx), StreamControl { tx })
}

pub struct StreamControl {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
}

impl StreamControl {
    /// Sends raw bytes; panics when the gateway already dropped the stream.
    pub async fn send(&self, bytes: impl Into<Bytes>) {
        self.tx.send(Ok(bytes.into())).await.expect("the gateway dropped the upstream stream unexpectedly");
    }

    /// Sends a content chunk for `model`.
    pub async fn send_content(&self, model: &str, content: &str) {
        self.send(content_event(model, content)).await;
    }

    /// Sends the closing events: finish chunk, optional usage chunk, `[DONE]`.
    pub async fn finish(self, model: &str, usage: Option<(u64, u64)>) {
        let mut last = chat_chunk(model, json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]));
        last["usage"] = Value::Null;
        self.send(event(&last)).await;
        if let Some((prompt, completion)) = usage {
            let mut chunk = chat_chunk(model, json!([]));
            chunk["usage"] =
                json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
            self.send(event(&chunk)).await;
        }
        self.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    }

    /// Kills the upstream connection mid-response (hyper aborts it on a body error).
    pub async fn die(self) {
        let _ = self.tx.send(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "upstream died"))).await;
    }

    /// Resolves once the gateway has dropped this stream (its connection to the
    /// upstream closed). Sends an SSE comment now and then so a closed socket
    /// is noticed even if the peer's close is only seen on write.
    pub async fn cancelled(&self) {
        within("the gateway to drop the upstream stream", async {
            loop {
                tokio::select! {
                    _ = self.tx.closed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        if self.tx.send(Ok(Bytes::from_static(b": ping\n\n"))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .await
    }
}
