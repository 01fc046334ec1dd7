//! The Response object says how the answer was made: an agent's own sampling
//! defaults and output cap show in its echo where the client set nothing (as
//! the agent rewrite applies them upstream), the client's own values where it
//! did, and never the agent's instructions.

mod common;

use common::*;
use serde_json::{json, Value};

async fn create(env: &TestEnv, body: Value) -> Value {
    let response = env.post("/v1/responses", &body).await;
    assert_eq!(response.status(), 200);
    json_of(response).await
}

#[tokio::test]
async fn an_agents_defaults_and_cap_show_where_the_client_set_nothing() {
    let env = TestEnv::start().await;
    let r = create(&env, json!({"model": AGENT, "input": "hi", "store": false})).await;
    assert_eq!(r["temperature"], AGENT_TEMPERATURE);
    assert_eq!(r["top_p"], AGENT_TOP_P);
    assert_eq!(r["max_output_tokens"], AGENT_MAX_TOKENS);
    assert_eq!((r["presence_penalty"].as_f64(), r["frequency_penalty"].as_f64()), (Some(0.0), Some(0.0)));
    assert_eq!(r["instructions"], Value::Null, "the agent's instructions are the operator's, never echoed");
    let sent = env.mock.only_request().json();
    assert_eq!(sent["temperature"], AGENT_TEMPERATURE, "the echo is what went upstream");
    assert_eq!(sent["max_tokens"], AGENT_MAX_TOKENS);
}

#[tokio::test]
async fn the_clients_own_values_win_and_the_cap_still_bounds_them() {
    let env = TestEnv::start().await;
    let body = json!({
        "model": AGENT, "input": "hi", "store": false, "temperature": 0.9,
        "max_output_tokens": AGENT_MAX_TOKENS * 10, "instructions": "Answer in French."
    });
    let r = create(&env, body).await;
    assert_eq!(r["temperature"], 0.9);
    assert_eq!(r["top_p"], AGENT_TOP_P);
    assert_eq!(r["max_output_tokens"], AGENT_MAX_TOKENS, "the cap is in force");
    assert_eq!(r["instructions"], "Answer in French.");
    let lower = create(&env, json!({"model": AGENT, "input": "hi", "store": false, "max_output_tokens": 7})).await;
    assert_eq!(lower["max_output_tokens"], 7, "a lower ceiling than the cap is the client's");
}

#[tokio::test]
async fn a_plain_model_alias_echoes_the_apis_defaults() {
    let env = TestEnv::start().await;
    let r = create(&env, json!({"model": ALIAS, "input": "hi", "store": false})).await;
    assert_eq!((r["temperature"].as_f64(), r["top_p"].as_f64()), (Some(1.0), Some(1.0)));
    assert_eq!(r["max_output_tokens"], Value::Null);
}

#[tokio::test]
async fn a_stream_echoes_the_same_from_its_first_event() {
    let env = TestEnv::start().await;
    let response =
        env.post("/v1/responses", &json!({"model": AGENT, "input": "hi", "store": false, "stream": true})).await;
    let mut events = SseReader::new(response);
    let created = events.next_json().await;
    assert_eq!(created["type"], "response.created");
    assert_eq!(created["response"]["temperature"], AGENT_TEMPERATURE);
    assert_eq!(created["response"]["max_output_tokens"], AGENT_MAX_TOKENS);
    let last = json_events(&events.rest().await).pop().expect("a last event");
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["top_p"], AGENT_TOP_P);
}
