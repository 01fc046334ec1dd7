//! Bad requests get the documented status and error JSON, nothing reaches the
//! upstream, and the same server goes on serving normal requests.

mod common;

use common::*;
use serde_json::json;

/// Sends `body` as the raw request body of a chat completion.
async fn post_raw(env: &TestEnv, body: &'static str) -> reqwest::Response {
    let request = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body);
    within("response", request.send()).await.unwrap()
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let env = TestEnv::start().await;
    let response = post_raw(&env, r#"{"model": "helper", "messages": [{"role": "user""#).await;
    assert_error(response, 400, "invalid_request_error", "invalid_json").await;
    assert_eq!(env.mock.attempts(), 0);
    env.assert_still_serves().await;
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_a_400() {
    let env = TestEnv::start().await;
    let response = post_raw(&env, r#"["model", "helper"]"#).await;
    assert_error(response, 400, "invalid_request_error", "invalid_json").await;
    env.assert_still_serves().await;
}

#[tokio::test]
async fn wrong_field_type_is_a_400_naming_the_param() {
    let env = TestEnv::start().await;
    let mut body = chat_body(AGENT, "hi");
    body["temperature"] = json!("hot");
    let response = env.chat(&body).await;
    let error = assert_error(response, 400, "invalid_request_error", "invalid_type").await;
    assert_eq!(error["error"]["param"], "temperature");
    assert_eq!(env.mock.attempts(), 0);
    env.assert_still_serves().await;
}

#[tokio::test]
async fn messages_of_the_wrong_type_is_a_400_naming_the_param() {
    let env = TestEnv::start().await;
    let response = env.chat(&json!({"model": AGENT, "messages": "hi"})).await;
    let error = assert_error(response, 400, "invalid_request_error", "invalid_type").await;
    assert_eq!(error["error"]["param"], "messages");
    env.assert_still_serves().await;
}

#[tokio::test]
async fn missing_model_is_a_400() {
    let env = TestEnv::start().await;
    let response = env.chat(&json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    let error = assert_error(response, 400, "invalid_request_error", "missing_required_parameter").await;
    assert_eq!(error["error"]["param"], "model");
    env.assert_still_serves().await;
}

#[tokio::test]
async fn unknown_model_is_a_404_model_not_found() {
    let env = TestEnv::start().await;
    let response = env.chat(&chat_body("no-such-model", "hi")).await;
    let error = assert_error(response, 404, "invalid_request_error", "model_not_found").await;
    assert_eq!(error["error"]["param"], "model");
    assert_eq!(env.mock.attempts(), 0);
    env.assert_still_serves().await;
}

#[tokio::test]
async fn model_outside_the_keys_allow_list_is_a_403_model_not_allowed() {
    let env = TestEnv::start().await;
    let response = env.post_as(LIMITED_KEY, "/v1/chat/completions", &chat_body(AGENT, "hi")).await;
    assert_error(response, 403, "permission_error", "model_not_allowed").await;
    assert_eq!(env.mock.attempts(), 0);
    let allowed = env.post_as(LIMITED_KEY, "/v1/chat/completions", &chat_body(ALIAS, "hi")).await;
    assert_eq!(allowed.status(), 200, "the same key may use its allow-listed model");
}

const MAX_BODY: u64 = 4096;

#[tokio::test]
async fn body_over_the_limit_with_content_length_is_a_413_before_it_is_sent() {
    let env = TestEnv::start_with(|s| s.max_body_bytes = MAX_BODY).await;
    // Only the head: a declared length over the limit is refused without reading.
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        MAX_BODY * 100
    );
    let mut conn = raw_send(env.gw.addr, head.as_bytes()).await;
    let response = raw_read_response(&mut conn).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "body_too_large");
    assert_eq!(response.json()["error"]["type"], "invalid_request_error");
    env.assert_still_serves().await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_a_413() {
    let env = TestEnv::start_with(|s| s.max_body_bytes = MAX_BODY).await;
    let chunk = format!("{{\"model\":\"{AGENT}\",\"pad\":\"{}\"}}", "x".repeat(MAX_BODY as usize + 100));
    // No terminating chunk: the gateway must refuse once the limit is passed,
    // not wait for the end of the body.
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    let mut conn = raw_send(env.gw.addr, request.as_bytes()).await;
    let response = raw_read_response(&mut conn).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "body_too_large");
    assert_eq!(env.mock.attempts(), 0);
    env.assert_still_serves().await;
}

#[tokio::test]
async fn body_under_the_limit_is_accepted() {
    let env = TestEnv::start_with(|s| s.max_body_bytes = MAX_BODY).await;
    let response = env.chat(&chat_body(AGENT, &"word ".repeat(100))).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn wrong_method_is_a_405_with_allow() {
    let env = TestEnv::start().await;
    let request = env.client.get(env.url("/v1/chat/completions")).bearer_auth(KEY);
    let response = within("response", request.send()).await.unwrap();
    assert_eq!(response.headers().get("allow").map(|v| v.to_str().unwrap()), Some("POST"));
    assert_error(response, 405, "invalid_request_error", "method_not_allowed").await;

    let request = env.client.post(env.url("/v1/models")).bearer_auth(KEY).json(&json!({}));
    let response = within("response", request.send()).await.unwrap();
    assert_eq!(response.headers().get("allow").map(|v| v.to_str().unwrap()), Some("GET"));
    assert_error(response, 405, "invalid_request_error", "method_not_allowed").await;
    env.assert_still_serves().await;
}

#[tokio::test]
async fn unknown_route_is_a_404_not_found_error() {
    let env = TestEnv::start().await;
    for path in ["/v1/nope", "/v2/chat/completions", "/chat/completions", "/"] {
        let request = env.client.post(env.url(path)).bearer_auth(KEY).json(&chat_body(AGENT, "hi"));
        let response = within("response", request.send()).await.unwrap();
        let status = response.status();
        let body = json_of(response).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["type"], "not_found_error", "{path}: {body}");
    }
    assert_eq!(env.mock.attempts(), 0);
    env.assert_still_serves().await;
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_a_408() {
    let env = TestEnv::start_with(|s| s.body_read_timeout_ms = 500).await;
    let partial = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"model\":\"{AGENT}\","
    );
    // The connection stays open with 180-odd bytes still owed.
    let mut conn = raw_send(env.gw.addr, partial.as_bytes()).await;
    let response = raw_read_response(&mut conn).await;
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.json()["error"]["type"], "invalid_request_error");
    assert!(response.header("x-request-id").is_some());
    assert_eq!(env.mock.attempts(), 0);
    env.assert_still_serves().await;
}

/// Bodies serde_json skips over without complaint (the gateway keeps nested
/// values raw) but a strict parser refuses: nesting one level deeper than
/// serde_json's limit, a lone surrogate escape, a number beyond an f64.
fn strict_parser_refuses() -> [(String, &'static str); 5] {
    let chat = |extra: &str, content: &str| {
        format!(r#"{{"model":"{AGENT}","messages":[{{"role":"user","content":"{content}"}}]{extra}}}"#)
    };
    // The top-level object is the first level.
    let too_deep = format!(r#","metadata":{}"x"{}"#, "[".repeat(127), "]".repeat(127));
    [
        (chat(&too_deep, "hi"), "nested deeper than 127 levels"),
        (chat("", r"lone \ud800 high"), "surrogate"),
        (chat("", r"lone \udc00 low"), "surrogate"),
        (chat("", r"\ud83d\ude00\ud83d pair then high"), "surrogate"),
        (chat(r#","logit_bias":{"50256":1e400}"#, "hi"), "range of a 64-bit float"),
    ]
}

async fn post_string(env: &TestEnv, body: String) -> reqwest::Response {
    let request = env.client.post(env.url("/v1/chat/completions")).bearer_auth(KEY);
    let request = request.header("content-type", "application/json").body(body);
    within("response", request.send()).await.unwrap()
}

#[tokio::test]
async fn json_a_strict_parser_refuses_is_a_400_before_it_is_sent() {
    let env = TestEnv::start().await;
    for (body, reason) in strict_parser_refuses() {
        let error = assert_error(post_string(&env, body).await, 400, "invalid_request_error", "invalid_json").await;
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{reason}: {message}");
    }
    assert_eq!(env.mock.attempts(), 0, "nothing reached the upstream");
    env.assert_still_serves().await;
}

#[tokio::test]
async fn json_just_within_what_a_strict_parser_accepts_is_sent() {
    let env = TestEnv::start().await;
    let chat = |extra: &str, content: &str| {
        format!(r#"{{"model":"{AGENT}","messages":[{{"role":"user","content":"{content}"}}]{extra}}}"#)
    };
    let deepest = format!(r#","metadata":{}"x"{}"#, "[".repeat(126), "]".repeat(126));
    for body in [
        chat(&deepest, "hi"),
        chat("", r"a pair \ud83d\ude00 and an escaped backslash \\ud800"),
        chat(r#","logit_bias":{"50256":1e300}"#, "hi"),
    ] {
        let response = post_string(&env, body.clone()).await;
        assert_eq!(response.status(), 200, "{body}");
    }
    assert_eq!(env.mock.attempts(), 3);
}

/// The symptom issue 10 reported: the built-in mock parses strictly, so the
/// gateway relayed these bodies and answered the mock's refusal as a 502
/// `upstream_invalid_response`.
#[tokio::test]
async fn the_built_in_mock_never_sees_json_it_would_refuse() {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[providers.builtin]\nkind = \"mock\"\n\n\
         [agents.{AGENT}]\nprovider = \"builtin\"\nupstream_model = \"mock-1\"\n\n\
         [[keys]]\nname = \"k\"\nsha256 = \"{}\"\n",
        sha256_hex(KEY)
    );
    let gw = Gateway::start(&toml).await;
    let env = TestEnv { mock: MockUpstream::start().await, gw, client: client() };
    for (body, _) in strict_parser_refuses() {
        assert_error(post_string(&env, body).await, 400, "invalid_request_error", "invalid_json").await;
    }
    env.assert_still_serves().await;
}
