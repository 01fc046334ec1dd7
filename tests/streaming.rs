//! Streamed answers: relayed as they arrive, the agent id in every chunk,
//! `include_usage` handling, `[DONE]`, and client disconnects.

mod common;

use common::mock::{COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use serde_json::{json, Value};
use tollgate::usage::{Outcome, Usage};

fn content_of(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

fn with_usage(mut body: Value) -> Value {
    body["stream_options"] = json!({"include_usage": true});
    body
}

#[tokio::test]
async fn chat_stream_relays_the_whole_answer_and_ends_with_done() {
    let env = TestEnv::start().await;
    let mut sse = SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await);
    let events = sse.rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "events: {events:?}");
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    let chunks = json_events(&events);
    assert_eq!(content_of(&chunks), "Hello from upstream");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn completions_stream_relays_the_whole_answer_and_ends_with_done() {
    let env = TestEnv::start().await;
    let body = json!({"model": ALIAS, "prompt": "Say hi", "stream": true});
    let mut sse = SseReader::new(env.post("/v1/completions", &body).await);
    let events = sse.rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = json_events(&events);
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, "Hello from upstream");
    assert!(chunks.iter().all(|c| c["model"] == ALIAS), "chunks: {chunks:?}");
    assert_eq!(env.mock.only_request().path, "/v1/completions");
}

#[tokio::test]
async fn every_stream_chunk_carries_the_agent_id() {
    let env = TestEnv::start().await;
    let mut sse = SseReader::new(env.chat(&with_usage(chat_stream_body(AGENT, "hi"))).await);
    let chunks = json_events(&sse.rest().await);
    assert!(chunks.len() >= 5, "content chunks, finish chunk and usage chunk: {chunks:?}");
    for chunk in &chunks {
        assert_eq!(chunk["model"], AGENT, "chunk: {chunk}");
    }
}

#[tokio::test]
async fn each_chunk_reaches_the_client_before_the_upstream_sends_the_next() {
    let env = TestEnv::start().await;
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let mut sse = SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await);

    // The upstream sends each chunk only after the client got the previous one:
    // a relay that buffers would never deliver chunk 1, and the read times out.
    for word in ["one", "two", "three"] {
        upstream.send_content(AGENT_UPSTREAM_MODEL, word).await;
        let chunk = sse.next_json().await;
        assert_eq!(chunk["choices"][0]["delta"]["content"], word);
        assert_eq!(chunk["model"], AGENT);
    }
    upstream.finish(AGENT_UPSTREAM_MODEL, Some((5, 3))).await;
    let rest = sse.rest().await;
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "rest: {rest:?}");
}

#[tokio::test]
async fn events_the_upstream_sent_together_reach_the_client_as_one_chunk() {
    use futures_util::StreamExt as _;
    let env = TestEnv::start().await;
    let (reply, upstream) = scripted_stream();
    // The whole answer is queued before the request, so the mock writes it in
    // one burst: 8 content events, the finish and usage events and [DONE].
    let words = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for word in words {
        upstream.send_content(AGENT_UPSTREAM_MODEL, word).await;
    }
    upstream.finish(AGENT_UPSTREAM_MODEL, Some((5, 8))).await;
    env.mock.push(reply);
    let response = env.chat(&chat_stream_body(AGENT, "hi")).await;
    assert_eq!(response.status(), 200);
    // Each HTTP chunk the gateway writes arrives as one item here: a relay
    // that wrote event by event would give 10 (the usage event is dropped:
    // the client did not ask for it).
    let chunks: Vec<_> = response.bytes_stream().map(|c| c.expect("the stream completes")).collect().await;
    let body: Vec<u8> = chunks.concat();
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.matches("data: ").count(), 10, "every event relayed: {text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "ends with [DONE]: {text}");
    assert!(chunks.len() <= 3, "a burst of 10 events came as {} chunks, not coalesced", chunks.len());
}

#[tokio::test]
async fn stream_always_asks_the_upstream_for_usage() {
    let env = TestEnv::start().await;
    SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await).rest().await;
    let sent = env.mock.only_request().json();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn stream_forces_include_usage_even_when_the_client_said_false() {
    let env = TestEnv::start().await;
    let mut body = chat_stream_body(AGENT, "hi");
    body["stream_options"] = json!({"include_usage": false});
    SseReader::new(env.chat(&body).await).rest().await;
    assert_eq!(env.mock.only_request().json()["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn client_that_did_not_ask_for_usage_gets_no_usage_chunk() {
    let env = TestEnv::start().await;
    let events = SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await).rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for chunk in json_events(&events) {
        assert!(chunk["usage"].is_null(), "unexpected usage in {chunk}");
        assert!(!chunk["choices"].as_array().unwrap().is_empty(), "a choice-less (usage) chunk leaked: {chunk}");
    }
}

#[tokio::test]
async fn client_that_asked_for_usage_gets_the_usage_chunk_before_done() {
    let env = TestEnv::start().await;
    let events = SseReader::new(env.chat(&with_usage(chat_stream_body(AGENT, "hi"))).await).rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = json_events(&events);
    let usage_chunks: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(usage_chunks.len(), 1, "chunks: {chunks:?}");
    assert_eq!(usage_chunks[0]["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(usage_chunks[0]["usage"]["completion_tokens"], COMPLETION_TOKENS);
    assert_eq!(usage_chunks[0]["model"], AGENT);
    assert_eq!(chunks.last().unwrap(), usage_chunks[0], "the usage chunk is the last before [DONE]");
}

#[tokio::test]
async fn stream_usage_is_recorded_from_the_usage_chunk_the_client_did_not_see() {
    let env = TestEnv::start().await;
    SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await).rest().await;
    let record = env.gw.usage.first().await;
    assert_eq!(record.outcome, Outcome::Completed);
    assert!(record.streamed);
    assert_eq!(record.status, 200);
    assert_eq!(
        record.usage,
        Usage { prompt_tokens: PROMPT_TOKENS, completion_tokens: COMPLETION_TOKENS, estimated: false }
    );
}

/// Starts a scripted stream, lets the client read `chunks` content chunks, then
/// drops the client's response. Returns the upstream control.
async fn stream_then_disconnect(env: &TestEnv, chunks: usize) -> StreamControl {
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let mut sse = SseReader::new(env.chat(&chat_stream_body(AGENT, "tell me a long story")).await);
    for i in 0..chunks {
        upstream.send_content(AGENT_UPSTREAM_MODEL, &format!("word{i} ")).await;
        sse.next_json().await;
    }
    drop(sse);
    upstream
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let env = TestEnv::start().await;
    let upstream = stream_then_disconnect(&env, 1).await;
    // Resolves only once the gateway dropped its upstream connection.
    upstream.cancelled().await;
}

#[tokio::test]
async fn client_disconnect_is_recorded_as_client_cancelled() {
    let env = TestEnv::start().await;
    let upstream = stream_then_disconnect(&env, 1).await;
    upstream.cancelled().await;
    let records = env.gw.usage.wait_for(1).await;
    assert_eq!(records.len(), 1, "exactly one usage record: {records:?}");
    assert_eq!(records[0].outcome, Outcome::ClientCancelled);
    assert!(records[0].streamed);
    assert!(records[0].usage.estimated, "no usage chunk arrived, so the usage is an estimate");
}

#[tokio::test]
async fn client_disconnect_is_billed_for_the_chunks_already_relayed() {
    let env = TestEnv::start().await;
    let upstream = stream_then_disconnect(&env, 3).await;
    upstream.cancelled().await;
    let record = env.gw.usage.first().await;
    assert_eq!(record.outcome, Outcome::ClientCancelled);
    assert!(record.usage.prompt_tokens > 0, "the prompt is estimated: {:?}", record.usage);
    assert!(
        record.usage.completion_tokens >= 3,
        "three content chunks reached the client before it left, so at least 3 completion tokens are billed; got {:?}",
        record.usage
    );
}
