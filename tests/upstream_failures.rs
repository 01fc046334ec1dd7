//! What the client sees when the upstream fails: before headers, mid-stream,
//! with error statuses (retried or passed through), garbage, or not at all.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tollgate::usage::Outcome;

/// The last event of a stream that failed: an OpenAI error object.
fn assert_error_event(events: &[String], code: &str) -> Value {
    let last = events.last().unwrap_or_else(|| panic!("the stream ended with no event at all"));
    let event: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("last event is not JSON ({e}): {last}"));
    assert_eq!(event["error"]["type"], "upstream_error", "event: {event}");
    assert_eq!(event["error"]["code"], code, "event: {event}");
    assert!(event["error"]["message"].is_string(), "event: {event}");
    event
}

// --- streams cut midway ---

#[tokio::test]
async fn upstream_death_mid_stream_ends_the_client_stream_with_an_error_event() {
    let env = TestEnv::start().await;
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let mut sse = SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await);
    upstream.send_content(AGENT_UPSTREAM_MODEL, "partial").await;
    assert_eq!(sse.next_json().await["choices"][0]["delta"]["content"], "partial");
    upstream.die().await;
    // Ends (no hang) with an error event the OpenAI SDKs raise as an APIError.
    let rest = sse.rest().await;
    assert_error_event(&rest, "upstream_stream_error");
    assert!(!rest.iter().any(|e| e == "[DONE]"), "a failed stream must not look complete: {rest:?}");
}

#[tokio::test]
async fn upstream_death_mid_stream_is_recorded_as_upstream_failed_with_estimated_usage() {
    let env = TestEnv::start().await;
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let mut sse = SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await);
    for word in ["a", "b"] {
        upstream.send_content(AGENT_UPSTREAM_MODEL, word).await;
        sse.next_json().await;
    }
    upstream.die().await;
    sse.rest().await;
    let record = env.gw.usage.first().await;
    assert_eq!(record.outcome, Outcome::UpstreamFailed);
    assert!(record.usage.estimated, "{:?}", record.usage);
    assert!(record.usage.completion_tokens >= 2, "the relayed chunks are counted: {:?}", record.usage);
    assert!(record.usage.prompt_tokens > 0, "{:?}", record.usage);
}

#[tokio::test]
async fn upstream_silence_mid_stream_ends_the_stream_with_an_idle_timeout_event() {
    let env = TestEnv::start_with(|s| s.idle_timeout_ms = 300).await;
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let mut sse = SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await);
    upstream.send_content(AGENT_UPSTREAM_MODEL, "first").await;
    sse.next_json().await;
    // The upstream stays silent (its connection open) from here on.
    let rest = sse.rest().await;
    assert_error_event(&rest, "upstream_idle_timeout");
    assert_eq!(env.gw.usage.first().await.outcome, Outcome::UpstreamFailed);
    drop(upstream);
}

#[tokio::test]
async fn upstream_silence_in_a_non_stream_body_is_a_504() {
    let env = TestEnv::start_with(|s| s.idle_timeout_ms = 300).await;
    let (reply, _upstream) = scripted_stream();
    env.mock.push(reply);
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    assert_error(response, 504, "upstream_error", "upstream_idle_timeout").await;
}

// --- failures before the response starts ---

#[tokio::test]
async fn upstream_hang_before_headers_is_a_504_upstream_timeout() {
    let env = TestEnv::start_with(|s| s.first_byte_timeout_ms = 300).await;
    env.mock.push(Reply::Hang);
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    assert_error(response, 504, "upstream_error", "upstream_timeout").await;
    assert_eq!(env.mock.attempts(), 1, "a timed-out attempt is not retried (the upstream may still bill it)");
    let record = env.gw.usage.first().await;
    assert_eq!(record.outcome, Outcome::UpstreamFailed);
    assert_eq!(record.status, 504);
}

#[tokio::test]
async fn upstream_hang_before_headers_of_a_stream_is_a_504_upstream_timeout() {
    let env = TestEnv::start_with(|s| s.first_byte_timeout_ms = 300).await;
    env.mock.push(Reply::Hang);
    let response = env.chat(&chat_stream_body(AGENT, "hi")).await;
    assert_error(response, 504, "upstream_error", "upstream_timeout").await;
}

#[tokio::test]
async fn garbage_upstream_body_is_a_502_invalid_response() {
    let env = TestEnv::start().await;
    env.mock.push(Reply::Status {
        status: 200,
        headers: vec![("content-type", "text/html".into())],
        body: "<html><body>Bad gateway page</body></html>".into(),
    });
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    let body = assert_error(response, 502, "upstream_error", "upstream_invalid_response").await;
    assert!(!body.to_string().contains("<html>"), "the garbage is not passed on: {body}");
    assert_eq!(env.gw.usage.first().await.outcome, Outcome::UpstreamFailed);
}

#[tokio::test]
async fn garbage_upstream_body_on_a_stream_is_a_502_invalid_response() {
    let env = TestEnv::start().await;
    env.mock.push(Reply::Status {
        status: 200,
        headers: vec![("content-type", "text/html".into())],
        body: "<html>\n<body>Bad gateway page</body>\n\n</html>\n".into(),
    });
    // Nothing has reached the client yet when the upstream answers with HTML:
    // the gateway can still answer with a proper error status.
    let response = env.chat(&chat_stream_body(AGENT, "hi")).await;
    let body = assert_error(response, 502, "upstream_error", "upstream_invalid_response").await;
    assert!(!body.to_string().contains("<html>"), "the garbage is not passed on: {body}");
}

#[tokio::test]
async fn upstream_500_is_retried_then_answered_with_502() {
    let env = TestEnv::start_with(|s| s.max_retries = 2).await;
    for _ in 0..3 {
        env.mock.push(Reply::status(500, r#"{"error":{"message":"boom","type":"server_error"}}"#));
    }
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    assert_error(response, 502, "upstream_error", "upstream_status").await;
    assert_eq!(env.mock.attempts(), 3, "max_retries = 2: the first attempt and two retries");
    let record = env.gw.usage.first().await;
    assert_eq!(record.outcome, Outcome::UpstreamFailed);
    assert_eq!(record.status, 502);
}

#[tokio::test]
async fn upstream_500_then_200_gives_the_client_200() {
    let env = TestEnv::start().await;
    env.mock.push(Reply::status(500, r#"{"error":{"message":"boom"}}"#));
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await["choices"][0]["message"]["content"], "Hello from upstream");
    let requests = env.mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body, "the retry resends the same body");
}

#[tokio::test]
async fn upstream_500s_on_a_stream_request_are_retried_before_the_stream_starts() {
    let env = TestEnv::start().await;
    env.mock.push(Reply::status(503, "{}"));
    let mut sse = SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await);
    assert_eq!(sse.rest().await.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(env.mock.attempts(), 2);
}

#[tokio::test]
async fn upstream_429_is_retried_no_sooner_than_its_retry_after() {
    let env = TestEnv::start().await;
    env.mock.push(Reply::status(429, r#"{"error":{"message":"slow down"}}"#).with_header("retry-after", "1"));
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    assert_eq!(response.status(), 200);
    let requests = env.mock.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(waited >= Duration::from_millis(900), "Retry-After: 1 honoured, but the retry came after {waited:?}");
}

#[tokio::test]
async fn upstream_429_exhausted_is_a_503_with_retry_after() {
    let env = TestEnv::start_with(|s| s.max_retries = 1).await;
    for _ in 0..2 {
        env.mock.push(Reply::status(429, r#"{"error":{"message":"slow down"}}"#).with_header("retry-after", "1"));
    }
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    assert_error(response, 503, "upstream_error", "upstream_overloaded").await;
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(env.mock.attempts(), 2);
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_upstream_unreachable() {
    let port = closed_port().await;
    let env = TestEnv::start_with(|s| s.upstream_base_url = Some(format!("http://127.0.0.1:{port}/v1"))).await;
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    let body = assert_error(response, 502, "upstream_error", "upstream_unreachable").await;
    let text = body.to_string();
    assert!(!text.contains("127.0.0.1") && !text.contains(&port.to_string()), "upstream address leaked: {text}");
    assert_eq!(env.gw.usage.first().await.outcome, Outcome::UpstreamFailed);
}

#[tokio::test]
async fn upstream_401_is_a_502_not_blamed_on_the_clients_key() {
    let env = TestEnv::start().await;
    env.mock.push(Reply::status(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-upst****cret","code":"invalid_api_key"}}"#,
    ));
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    let body = assert_error(response, 502, "upstream_error", "upstream_auth").await;
    assert!(!body.to_string().contains("sk-upst"), "{body}");
    assert_eq!(env.mock.attempts(), 1, "a credentials problem is not retried");
}

// --- an upstream 4xx about the request is the client's to see, scrubbed ---

/// Scripts an upstream 400 whose message names the upstream's address, key and
/// model, as careless upstream proxies do; returns the client's response body.
async fn upstream_400(env: &TestEnv) -> Value {
    let addr = env.mock.addr;
    let message = format!(
        "This model's maximum context length is 4096 tokens. Model {AGENT_UPSTREAM_MODEL} at \
         http://{addr}/v1/chat/completions (host {addr}, key {UPSTREAM_KEY}) rejected the request."
    );
    let error = json!({"error": {"message": message, "type": "invalid_request_error",
                                 "param": "messages", "code": "context_length_exceeded"}});
    env.mock.push(Reply::status(400, error.to_string()));
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    assert_eq!(response.status(), 400, "an upstream 400 about the request passes through as 400");
    json_of(response).await
}

#[tokio::test]
async fn upstream_400_is_passed_through_with_its_message() {
    let env = TestEnv::start().await;
    let body = upstream_400(&env).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("maximum context length is 4096 tokens"), "{message}");
    assert_eq!(env.mock.attempts(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn upstream_400_keeps_the_upstreams_error_type_code_and_param() {
    let env = TestEnv::start().await;
    let body = upstream_400(&env).await;
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["param"], "messages", "{body}");
}

#[tokio::test]
async fn upstream_400_never_reveals_the_provider_key() {
    let env = TestEnv::start().await;
    let text = upstream_400(&env).await.to_string();
    assert!(!text.contains(UPSTREAM_KEY), "provider key leaked: {text}");
}

#[tokio::test]
async fn upstream_400_never_reveals_the_upstream_host_or_port() {
    let env = TestEnv::start().await;
    let text = upstream_400(&env).await.to_string();
    let port = env.mock.addr.port().to_string();
    assert!(!text.contains("127.0.0.1"), "upstream host leaked: {text}");
    assert!(!text.contains(&port), "upstream port {port} leaked: {text}");
}

#[tokio::test]
async fn upstream_400_names_the_agent_instead_of_the_upstream_model() {
    let env = TestEnv::start().await;
    let body = upstream_400(&env).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains(AGENT_UPSTREAM_MODEL), "upstream model leaked: {message}");
    assert!(message.contains(&format!("Model {AGENT} at")), "{message}");
}
