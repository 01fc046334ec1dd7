//! A provider that speaks the Responses API itself (`responses = "native"`):
//! `POST /v1/responses` is forwarded to its `/responses` with the model (and
//! an agent's instructions, defaults and cap) rewritten, not translated onto
//! chat completions; the answer's bytes go back as relayed, with `model`
//! rewritten inside the events that carry the whole Response, and its usage
//! billed from the last event.

mod common;

use common::*;
use serde_json::{json, Value};

async fn native_env() -> TestEnv {
    let mock = MockUpstream::start().await;
    let toml = config_toml(&Settings::default(), &mock.base_url()).replacen(
        "kind = \"openai\"\n",
        "kind = \"openai\"\nresponses = \"native\"\n",
        1,
    );
    assert!(toml.contains("responses = \"native\""), "the test config names the provider native");
    let gw = Gateway::start(&toml).await;
    TestEnv { mock, gw, client: client() }
}

fn upstream_response(model: &str) -> Value {
    json!({
        "id": "resp_upstream_1", "object": "response", "created_at": 1_700_000_000, "status": "completed",
        "model": model,
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}]}],
        "usage": {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
    })
}

fn sse(kind: &str, body: Value) -> String {
    format!("event: {kind}\ndata: {body}\n\n")
}

#[tokio::test]
async fn a_whole_answer_is_forwarded_with_the_agent_applied_and_billed_from_its_usage() {
    let env = native_env().await;
    env.mock.push(Reply::status(200, upstream_response(AGENT_UPSTREAM_MODEL).to_string()));
    let body = json!({"model": AGENT, "input": "hi", "instructions": "In French.",
                      "tools": [{"type": "web_search"}], "max_output_tokens": 5000});
    let response = env.post("/v1/responses", &body).await;
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    assert_eq!(answer["model"], AGENT, "the client sees the model it asked for");
    assert_eq!(answer["id"], "resp_upstream_1", "everything else is the provider's");
    assert_eq!(answer["output"][0]["content"][0]["text"], "Bonjour");

    let sent = env.mock.only_request();
    assert!(sent.path.ends_with("/v1/responses"), "forwarded to the provider's Responses API: {}", sent.path);
    let sent = sent.json();
    assert_eq!(sent["model"], AGENT_UPSTREAM_MODEL);
    assert_eq!(sent["instructions"], format!("{AGENT_INSTRUCTIONS}\n\nIn French."));
    assert_eq!(sent["temperature"], AGENT_TEMPERATURE);
    assert_eq!(sent["max_output_tokens"], AGENT_MAX_TOKENS, "the agent's cap");
    assert_eq!(sent["tools"], json!([{"type": "web_search"}]), "a built-in tool is the provider's to run");
    assert!(sent.get("messages").is_none() && sent.get("stream_options").is_none(), "not translated: {sent}");

    let record = env.gw.usage.first().await;
    assert_eq!((record.usage.prompt_tokens, record.usage.completion_tokens), (12, 5));
    assert!(!record.usage.estimated);
    assert_eq!(record.endpoint, "responses");
}

#[tokio::test]
async fn a_stream_is_relayed_event_by_event_with_the_model_rewritten_in_its_snapshots() {
    let env = native_env().await;
    let (reply, control) = scripted_stream();
    env.mock.push(reply);
    let response = env.post("/v1/responses", &json!({"model": AGENT, "input": "hi", "stream": true})).await;
    let mut events = SseReader::new(response);
    let mut snapshot = upstream_response(AGENT_UPSTREAM_MODEL);
    snapshot["status"] = json!("in_progress");
    control
        .send(sse("response.created", json!({"type": "response.created", "sequence_number": 0, "response": snapshot})))
        .await;
    let created = events.next_json().await;
    assert_eq!(created["response"]["model"], AGENT, "rewritten inside the snapshot");
    assert_eq!(created["sequence_number"], 0);
    let delta = json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1",
                       "output_index": 0, "content_index": 0, "delta": "Bon", "logprobs": []});
    control.send(sse("response.output_text.delta", delta.clone())).await;
    assert_eq!(events.next_json().await, delta, "a delta goes out as it came, before the next arrives");
    let done = json!({"type": "response.completed", "sequence_number": 2, "response": upstream_response(AGENT_UPSTREAM_MODEL)});
    control.send(sse("response.completed", done)).await;
    drop(control);
    let completed = events.next_json().await;
    assert_eq!(completed["type"], "response.completed");
    assert_eq!(completed["response"]["model"], AGENT);
    assert!(events.rest().await.is_empty(), "a completed stream ends there, without an error event");
    let record = env.gw.usage.first().await;
    assert_eq!((record.usage.prompt_tokens, record.usage.completion_tokens, record.usage.estimated), (12, 5, false));
}

#[tokio::test]
async fn a_cut_stream_ends_with_the_apis_error_event_and_is_billed_for_what_it_got() {
    let env = native_env().await;
    let (reply, control) = scripted_stream();
    env.mock.push(reply);
    let response = env.post("/v1/responses", &json!({"model": ALIAS, "input": "hi", "stream": true})).await;
    let mut events = SseReader::new(response);
    let delta = json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1",
                       "output_index": 0, "content_index": 0, "delta": "Bon", "logprobs": []});
    control.send(sse("response.output_text.delta", delta)).await;
    assert_eq!(events.next_json().await["delta"], "Bon");
    control.die().await;
    let error = events.next_json().await;
    assert_eq!(error["type"], "error", "the Responses error event: {error}");
    assert_eq!(error["sequence_number"], 5, "it continues the provider's count");
    assert!(error["code"].is_string() && error["message"].is_string());
    assert!(events.rest().await.is_empty());
    let record = env.gw.usage.first().await;
    assert!(record.usage.estimated, "no usage came: estimated");
    assert_eq!(record.usage.completion_tokens, 1, "one delta arrived");
}

#[tokio::test]
async fn bad_bodies_and_unknown_models_are_refused_before_anything_goes_upstream() {
    let env = native_env().await;
    let response = env.post("/v1/responses", &json!({"model": AGENT, "input": 42})).await;
    let error = assert_error(response, 400, "invalid_request_error", "invalid_type").await;
    assert_eq!(error["error"]["param"], "input");
    assert_eq!(env.mock.attempts(), 0, "nothing went upstream");
    let response = env.post("/v1/responses", &json!({"model": "no-such-model", "input": "hi"})).await;
    assert_eq!(response.status(), 404);
}

#[test]
fn the_setting_is_checked_when_the_config_loads() {
    let base = "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let load = |extra: &str| tollgate::config::Config::from_toml(&format!("{base}{extra}"), "t.toml");
    assert!(load("responses = \"native\"\n").is_ok());
    assert!(load("responses = \"translate\"\n").is_ok());
    let e = load("responses = \"sometimes\"\n").unwrap_err().to_string();
    assert!(e.contains("providers.p.responses") && e.contains("\"sometimes\""), "{e}");
    let mock =
        tollgate::config::Config::from_toml("[providers.m]\nkind = \"mock\"\nresponses = \"native\"\n", "t.toml");
    assert!(mock.is_err(), "the built-in mock speaks chat completions only");
}
