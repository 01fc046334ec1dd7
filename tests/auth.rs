//! Credentials (`Authorization: Bearer`, `X-API-Key`) and `x-request-id`.

mod common;

use common::*;
use serde_json::json;

fn chat_request(env: &TestEnv) -> reqwest::RequestBuilder {
    env.client.post(env.url("/v1/chat/completions")).json(&chat_body(AGENT, "hi"))
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    within("response", request.send()).await.expect("request reaches the gateway")
}

#[tokio::test]
async fn bearer_key_is_accepted() {
    let env = TestEnv::start().await;
    let response = send(chat_request(&env).header("authorization", format!("Bearer {KEY}"))).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn x_api_key_is_accepted() {
    let env = TestEnv::start().await;
    let response = send(chat_request(&env).header("x-api-key", KEY)).await;
    assert_eq!(response.status(), 200);
    let response = send(env.client.get(env.url("/v1/models")).header("x-api-key", KEY)).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn missing_key_is_a_401_missing_api_key() {
    let env = TestEnv::start().await;
    assert_error(send(chat_request(&env)).await, 401, "invalid_request_error", "missing_api_key").await;
    let models = send(env.client.get(env.url("/v1/models"))).await;
    assert_error(models, 401, "invalid_request_error", "missing_api_key").await;
    assert_eq!(env.mock.attempts(), 0);
}

#[tokio::test]
async fn wrong_bearer_key_is_a_401_invalid_api_key() {
    let env = TestEnv::start().await;
    let response = send(chat_request(&env).bearer_auth("tg_not_a_real_key")).await;
    assert_error(response, 401, "invalid_request_error", "invalid_api_key").await;
    assert_eq!(env.mock.attempts(), 0);
}

#[tokio::test]
async fn wrong_x_api_key_is_a_401_invalid_api_key() {
    let env = TestEnv::start().await;
    let response = send(chat_request(&env).header("x-api-key", "tg_not_a_real_key")).await;
    assert_error(response, 401, "invalid_request_error", "invalid_api_key").await;
}

#[tokio::test]
async fn unsupported_authorization_scheme_is_a_401() {
    let env = TestEnv::start().await;
    let response = send(chat_request(&env).basic_auth("user", Some(KEY))).await;
    assert_error(response, 401, "invalid_request_error", "invalid_api_key").await;
}

#[tokio::test]
async fn error_responses_never_echo_the_presented_key() {
    let env = TestEnv::start().await;
    let response = send(chat_request(&env).bearer_auth("tg_wrong_secret_value")).await;
    let body = json_of(response).await.to_string();
    assert!(!body.contains("tg_wrong_secret_value"), "{body}");
}

#[tokio::test]
async fn every_response_carries_an_x_request_id() {
    let env = TestEnv::start_with(|s| s.max_retries = 0).await;
    env.mock.push(Reply::status(500, "{}"));
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("healthz", env.client.get(env.url("/healthz"))),
        ("model list", env.client.get(env.url("/v1/models")).bearer_auth(KEY)),
        ("upstream failure (502)", chat_request(&env).bearer_auth(KEY)),
        ("completion", chat_request(&env).bearer_auth(KEY)),
        (
            "stream",
            env.client.post(env.url("/v1/chat/completions")).bearer_auth(KEY).json(&chat_stream_body(AGENT, "hi")),
        ),
        ("missing key (401)", chat_request(&env)),
        ("wrong key (401)", chat_request(&env).bearer_auth("nope")),
        ("unknown route (404)", env.client.get(env.url("/v1/nope"))),
        ("wrong method (405)", env.client.delete(env.url("/v1/chat/completions"))),
        ("bad JSON (400)", env.client.post(env.url("/v1/chat/completions")).bearer_auth(KEY).body("{")),
        (
            "unknown model (404)",
            env.client.post(env.url("/v1/chat/completions")).bearer_auth(KEY).json(&chat_body("x", "hi")),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (what, request) in cases {
        let response = send(request).await;
        let id = response.headers().get("x-request-id").unwrap_or_else(|| panic!("{what}: no x-request-id"));
        let id = id.to_str().unwrap().to_owned();
        assert!(!id.is_empty(), "{what}");
        assert!(seen.insert(id.clone()), "{what}: request id {id} was reused");
        let _ = response.bytes().await;
    }
}

#[tokio::test]
async fn the_clients_request_id_is_kept() {
    let env = TestEnv::start().await;
    let ok = send(chat_request(&env).bearer_auth(KEY).header("x-request-id", "client-trace-42")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-request-id"], "client-trace-42");

    let refused = send(chat_request(&env).header("x-request-id", "client-trace-43")).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["x-request-id"], "client-trace-43");

    let unknown = send(env.client.get(env.url("/v1/nope")).header("x-request-id", "client-trace-44")).await;
    assert_eq!(unknown.headers()["x-request-id"], "client-trace-44");
}

#[tokio::test]
async fn the_clients_request_id_is_in_the_usage_record() {
    let env = TestEnv::start().await;
    let body = json!({"model": AGENT, "messages": [{"role": "user", "content": "hi"}]});
    let request = env.client.post(env.url("/v1/chat/completions")).bearer_auth(KEY).header("x-request-id", "trace-7");
    assert_eq!(send(request.json(&body)).await.status(), 200);
    assert_eq!(env.gw.usage.first().await.request_id, "trace-7");
}
