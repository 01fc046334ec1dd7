//! Non-stream model routes, the `/v1/api` alias root, the models list, and the
//! agent rewrite as the upstream receives it.

mod common;

use common::mock::{COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use serde_json::{json, Value};
use tollgate::usage::{Outcome, Usage};

#[tokio::test]
async fn healthz_answers_without_a_key() {
    let env = TestEnv::start().await;
    let response = within("healthz", env.client.get(env.url("/healthz")).send()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await, json!({"status": "ok"}));
}

#[tokio::test]
async fn chat_completion_returns_the_upstream_answer_under_the_agent_id() {
    let env = TestEnv::start().await;
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_of(response).await;
    assert_eq!(body["model"], AGENT, "the client sees the agent id, not the upstream model");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from upstream");
    assert_eq!(body["usage"]["prompt_tokens"], PROMPT_TOKENS);
    let upstream = env.mock.only_request();
    assert_eq!(upstream.method, "POST");
    assert_eq!(upstream.path, "/v1/chat/completions");
}

#[tokio::test]
async fn completion_returns_the_upstream_answer_under_the_alias() {
    let env = TestEnv::start().await;
    let response = env.post("/v1/completions", &json!({"model": ALIAS, "prompt": "Say hi"})).await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["model"], ALIAS);
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "Hello from upstream");
    let upstream = env.mock.only_request();
    assert_eq!(upstream.path, "/v1/completions");
    assert_eq!(upstream.json()["model"], ALIAS_UPSTREAM_MODEL);
    assert_eq!(upstream.json()["prompt"], "Say hi");
}

#[tokio::test]
async fn embeddings_return_the_upstream_vectors_under_the_alias() {
    let env = TestEnv::start().await;
    let response = env.post("/v1/embeddings", &json!({"model": ALIAS, "input": ["a", "b"]})).await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["model"], ALIAS);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["embedding"], json!([0.25, -0.5, 0.75]));
    let upstream = env.mock.only_request();
    assert_eq!(upstream.path, "/v1/embeddings");
    assert_eq!(upstream.json(), json!({"model": ALIAS_UPSTREAM_MODEL, "input": ["a", "b"]}));
}

#[tokio::test]
async fn embeddings_for_an_agent_get_no_chat_defaults_or_caps() {
    let env = TestEnv::start().await;
    let response = env.post("/v1/embeddings", &json!({"model": AGENT, "input": "text"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await["model"], AGENT);
    assert_eq!(env.mock.only_request().json(), json!({"model": AGENT_UPSTREAM_MODEL, "input": "text"}));
}

#[tokio::test]
async fn embeddings_refuse_stream_true() {
    let env = TestEnv::start().await;
    let response = env.post("/v1/embeddings", &json!({"model": ALIAS, "input": "x", "stream": true})).await;
    let body = assert_error(response, 400, "invalid_request_error", "invalid_value").await;
    assert_eq!(body["error"]["param"], "stream");
    assert_eq!(env.mock.attempts(), 0, "nothing is sent upstream");
}

#[tokio::test]
async fn models_list_shows_an_unrestricted_key_every_model_and_agent() {
    let env = TestEnv::start().await;
    let response = env.get_as(KEY, "/v1/models").await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["object"], "list");
    let mut ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [ALIAS, AGENT]);
    for model in body["data"].as_array().unwrap() {
        assert_eq!(model["object"], "model");
        assert!(model["owned_by"].is_string());
    }
}

#[tokio::test]
async fn models_list_shows_a_limited_key_only_its_allow_list() {
    let env = TestEnv::start().await;
    let body = json_of(env.get_as(LIMITED_KEY, "/v1/models").await).await;
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [ALIAS]);
}

#[tokio::test]
async fn get_model_returns_the_model_object() {
    let env = TestEnv::start().await;
    let response = env.get_as(KEY, &format!("/v1/models/{AGENT}")).await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["id"], AGENT);
    assert_eq!(body["object"], "model");
}

#[tokio::test]
async fn get_model_answers_404_for_a_model_the_key_may_not_use() {
    let env = TestEnv::start().await;
    let response = env.get_as(LIMITED_KEY, &format!("/v1/models/{AGENT}")).await;
    assert_error(response, 404, "invalid_request_error", "model_not_found").await;
}

#[tokio::test]
async fn get_model_answers_404_for_an_unknown_model() {
    let env = TestEnv::start().await;
    let response = env.get_as(KEY, "/v1/models/no-such-model").await;
    assert_error(response, 404, "invalid_request_error", "model_not_found").await;
}

#[tokio::test]
async fn alias_root_v1_api_serves_every_model_route() {
    let env = TestEnv::start().await;

    let chat = json_of(env.post("/v1/api/chat/completions", &chat_body(AGENT, "hi")).await).await;
    assert_eq!(chat["model"], AGENT);
    assert_eq!(chat["choices"][0]["message"]["content"], "Hello from upstream");

    let completion = json_of(env.post("/v1/api/completions", &json!({"model": ALIAS, "prompt": "p"})).await).await;
    assert_eq!(completion["choices"][0]["text"], "Hello from upstream");

    let embedding = json_of(env.post("/v1/api/embeddings", &json!({"model": ALIAS, "input": "x"})).await).await;
    assert_eq!(embedding["data"][0]["object"], "embedding");

    let list = json_of(env.get_as(LIMITED_KEY, "/v1/api/models").await).await;
    assert_eq!(list["data"][0]["id"], ALIAS);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let model = json_of(env.get_as(KEY, &format!("/v1/api/models/{ALIAS}")).await).await;
    assert_eq!(model["id"], ALIAS);

    let paths: Vec<String> = env.mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]);
}

#[tokio::test]
async fn alias_root_v1_api_streams_chat_completions() {
    let env = TestEnv::start().await;
    let mut sse = SseReader::new(env.post("/v1/api/chat/completions", &chat_stream_body(AGENT, "hi")).await);
    let events = sse.rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(json_events(&events).iter().all(|c| c["model"] == AGENT));
}

// --- the agent rewrite, as the upstream received it ---

#[tokio::test]
async fn agent_request_is_sent_with_the_upstream_model() {
    let env = TestEnv::start().await;
    env.chat(&chat_body(AGENT, "hi")).await;
    assert_eq!(env.mock.only_request().json()["model"], AGENT_UPSTREAM_MODEL);
}

#[tokio::test]
async fn agent_instructions_are_the_first_system_message() {
    let env = TestEnv::start().await;
    let body = json!({"model": AGENT, "messages": [
        {"role": "system", "content": "client system"},
        {"role": "user", "content": "hi"}
    ]});
    env.chat(&body).await;
    let messages = env.mock.only_request().json()["messages"].clone();
    assert_eq!(
        messages,
        json!([
            {"role": "system", "content": AGENT_INSTRUCTIONS},
            {"role": "system", "content": "client system"},
            {"role": "user", "content": "hi"}
        ])
    );
}

#[tokio::test]
async fn agent_defaults_fill_only_the_fields_the_client_left_unset() {
    let env = TestEnv::start().await;
    let mut body = chat_body(AGENT, "hi");
    body["temperature"] = json!(0.9);
    env.chat(&body).await;
    let sent = env.mock.only_request().json();
    assert_eq!(sent["temperature"], 0.9, "the client's value wins over the agent default");
    assert_eq!(sent["top_p"], AGENT_TOP_P, "the unset field takes the agent default");
}

#[tokio::test]
async fn agent_default_applies_when_the_client_sends_null() {
    let env = TestEnv::start().await;
    let mut body = chat_body(AGENT, "hi");
    body["temperature"] = Value::Null;
    env.chat(&body).await;
    assert_eq!(env.mock.only_request().json()["temperature"], AGENT_TEMPERATURE);
}

#[tokio::test]
async fn agent_caps_max_tokens_above_the_cap() {
    let env = TestEnv::start().await;
    let mut body = chat_body(AGENT, "hi");
    body["max_tokens"] = json!(AGENT_MAX_TOKENS * 10);
    env.chat(&body).await;
    assert_eq!(env.mock.only_request().json()["max_tokens"], AGENT_MAX_TOKENS);
}

#[tokio::test]
async fn agent_sets_max_tokens_to_the_cap_when_absent() {
    let env = TestEnv::start().await;
    env.chat(&chat_body(AGENT, "hi")).await;
    assert_eq!(env.mock.only_request().json()["max_tokens"], AGENT_MAX_TOKENS);
}

#[tokio::test]
async fn agent_keeps_max_tokens_below_the_cap() {
    let env = TestEnv::start().await;
    let mut body = chat_body(AGENT, "hi");
    body["max_tokens"] = json!(7);
    env.chat(&body).await;
    assert_eq!(env.mock.only_request().json()["max_tokens"], 7);
}

#[tokio::test]
async fn agent_instructions_prefix_a_legacy_completion_prompt() {
    let env = TestEnv::start().await;
    env.post("/v1/completions", &json!({"model": AGENT, "prompt": "Say hi"})).await;
    let sent = env.mock.only_request().json();
    assert_eq!(sent["prompt"], format!("{AGENT_INSTRUCTIONS}\n\nSay hi"));
    assert_eq!(sent["max_tokens"], AGENT_MAX_TOKENS);
    assert_eq!(sent["temperature"], AGENT_TEMPERATURE);
}

#[tokio::test]
async fn alias_request_reaches_the_upstream_unchanged_but_for_the_model() {
    let env = TestEnv::start().await;
    let body = json!({
        "model": ALIAS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "logit_bias": {"50256": -100},
        "user": "u-1",
        "temperature": 1.5
    });
    let response = env.chat(&body).await;
    assert_eq!(response.status(), 200);
    let mut expected = body.clone();
    expected["model"] = json!(ALIAS_UPSTREAM_MODEL);
    assert_eq!(env.mock.only_request().json(), expected);
}

#[tokio::test]
async fn upstream_gets_the_provider_key_and_the_request_id_never_the_clients_key() {
    let env = TestEnv::start().await;
    let request = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-api-key", KEY)
        .header("x-request-id", "trace-abc-123")
        .json(&chat_body(AGENT, "hi"));
    assert_eq!(within("response", request.send()).await.unwrap().status(), 200);
    let upstream = env.mock.only_request();
    assert_eq!(upstream.header("authorization"), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));
    assert_eq!(upstream.header("x-request-id"), Some("trace-abc-123"));
    let all_headers = format!("{:?}", upstream.headers);
    assert!(!all_headers.contains(KEY), "the client's key leaked upstream: {all_headers}");
}

#[tokio::test]
async fn non_stream_usage_is_recorded_as_the_upstream_reported_it() {
    let env = TestEnv::start().await;
    let response = env.chat(&chat_body(AGENT, "hi")).await;
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(response.status(), 200);
    let record = env.gw.usage.first().await;
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.status, 200);
    assert_eq!(
        record.usage,
        Usage { prompt_tokens: PROMPT_TOKENS, completion_tokens: COMPLETION_TOKENS, estimated: false }
    );
    assert_eq!(&*record.model, AGENT);
    assert_eq!(&*record.upstream_model, AGENT_UPSTREAM_MODEL);
    assert_eq!(record.key.as_deref(), Some("unrestricted"));
    assert_eq!(record.request_id, request_id);
    assert!(!record.streamed);
}
