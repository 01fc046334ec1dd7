//! `POST /v1/responses` end to end: the real gateway with a store, in front of
//! the recording mock upstream (what is sent upstream) or the built-in mock
//! (the official SDKs). Storage itself has its own suite on both backends
//! (`tests/responses_store.rs`); here a continuation runs on the embedded
//! store and across two replicas on one Redis, and a follow-up that names
//! earlier items by `item_reference` (no `previous_response_id`, as the
//! Vercel AI SDK sends it) on the embedded store and on Redis.

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::mock::scripted_stream;
use common::*;
use serde_json::{json, Value};
use tollgate::responses::MAX_ITEM_IDS;

const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");
static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A gateway with a store (`store` is a `[store]` section) on `toml`.
async fn gateway_with_store(toml: &str, store: &str) -> (String, common::Running) {
    let config = tollgate::config::Config::from_toml(&format!("{toml}\n{store}"), "test.toml").expect("valid config");
    let running = common::Running::start(tollgate::gateway::Gateway::builder(config)).await;
    (running.base(), running)
}

fn embedded_store(what: &str) -> String {
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-responses-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    format!("[store]\nbackend = \"embedded\"\npath = \"{}\"\n", dir.join("t.db").display())
}

async fn post(base: &str, body: &Value) -> reqwest::Response {
    let request = client().post(format!("{base}/v1/responses")).bearer_auth(KEY).json(body);
    within("a responses call", request.send()).await.expect("the gateway answers")
}

#[tokio::test]
async fn a_continuation_sends_the_earlier_turns_upstream_after_the_agents_instructions() {
    let mock = MockUpstream::start().await;
    let (base, _stop) =
        gateway_with_store(&config_toml(&Settings::default(), &mock.base_url()), &embedded_store("chain")).await;

    let first = post(&base, &json!({"model": AGENT, "input": "first question", "instructions": "be brief"})).await;
    assert_eq!(first.status(), 200);
    let first = json_of(first).await;
    assert_eq!((first["object"].as_str(), first["model"].as_str()), (Some("response"), Some(AGENT)));
    let sent = mock.only_request().json();
    assert_eq!(sent["model"], AGENT_UPSTREAM_MODEL);
    let roles: Vec<&str> = sent["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "system", "user"], "the agent's instructions, then the request's: {sent}");
    assert_eq!(sent["messages"][0]["content"], AGENT_INSTRUCTIONS);

    let body = json!({"model": AGENT, "input": "second question", "previous_response_id": first["id"]});
    let second = json_of(post(&base, &body).await).await;
    assert_eq!(second["previous_response_id"], first["id"]);
    let sent = mock.requests().last().unwrap().json();
    let texts: Vec<String> = sent["messages"].as_array().unwrap().iter().map(|m| m["content"].to_string()).collect();
    let joined = texts.join(" | ");
    let (q1, q2) = (joined.find("first question"), joined.find("second question"));
    assert!(q1.is_some() && q2.is_some() && q1 < q2, "the earlier turn goes first: {joined}");
    let assistant = sent["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "assistant").count();
    assert_eq!(assistant, 1, "the first answer is replayed as the assistant's turn: {sent}");

    // Stored: retrievable, listed, deletable; another scope cannot see it.
    let got = client().get(format!("{base}/v1/responses/{}", first["id"].as_str().unwrap())).bearer_auth(KEY);
    assert_eq!(json_of(within("retrieve", got.send()).await.unwrap()).await["id"], first["id"]);
    let other = client().get(format!("{base}/v1/responses/{}", first["id"].as_str().unwrap())).bearer_auth(LIMITED_KEY);
    assert_eq!(within("retrieve as another key", other.send()).await.unwrap().status(), 404);
    let items = client().get(format!("{base}/v1/responses/{}/input_items?order=asc", second["id"].as_str().unwrap()));
    let items = json_of(within("input items", items.bearer_auth(KEY).send()).await.unwrap()).await;
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"][0]["content"][0]["text"], "second question", "{items}");
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_the_error_event_and_response_failed() {
    let mock = MockUpstream::start().await;
    let (base, _stop) =
        gateway_with_store(&config_toml(&Settings::default(), &mock.base_url()), &embedded_store("cut")).await;
    let (reply, upstream) = scripted_stream();
    mock.push(reply);
    let response = post(&base, &json!({"model": AGENT, "input": "tell me", "stream": true})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut sse = SseReader::new(response);
    upstream.send_content(AGENT_UPSTREAM_MODEL, "partial").await;
    let mut types = Vec::new();
    while !types.iter().any(|t: &String| t == "response.output_text.delta") {
        let event = sse.next_json().await;
        types.push(event["type"].as_str().unwrap().to_owned());
    }
    upstream.die().await;
    let rest = sse.rest().await;
    let rest: Vec<Value> = rest.iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
    let kinds: Vec<&str> = rest.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"error"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"response.failed"), "{kinds:?}");
    let failed = rest.iter().find(|e| e["type"] == "response.failed").unwrap();
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["output"][0]["content"][0]["text"], "partial", "what arrived is kept: {failed}");
    let sequence: Vec<u64> = rest.iter().filter_map(|e| e["sequence_number"].as_u64()).collect();
    assert!(sequence.windows(2).all(|w| w[1] == w[0] + 1), "{sequence:?}");
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_param_and_nothing_goes_upstream() {
    let mock = MockUpstream::start().await;
    let (base, _stop) =
        gateway_with_store(&config_toml(&Settings::default(), &mock.base_url()), &embedded_store("bad")).await;
    let cases = [
        (json!({"input": "x"}), "model"),
        (json!({"model": AGENT, "input": 5}), "input"),
        (json!({"model": AGENT, "input": [{"type": "nope"}]}), "input[0].type"),
        (json!({"model": AGENT, "input": "x", "tools": [{"type": "file_search"}]}), "tools[0].type"),
        (json!({"model": AGENT, "input": "x", "temperature": "hot"}), "temperature"),
    ];
    for (body, param) in cases {
        let response = post(&base, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error = json_of(response).await;
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let response = post(&base, &json!({"model": AGENT, "input": "x", "previous_response_id": "resp_unknown"})).await;
    assert_eq!(response.status(), 404);
    let raw = client().post(format!("{base}/v1/responses")).bearer_auth(KEY).body("{not json");
    assert_eq!(within("malformed", raw.send()).await.unwrap().status(), 400);
    assert_eq!(mock.attempts(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn two_replicas_on_one_redis_continue_each_others_responses() {
    let Some(server) = redis_server::RedisServer::start() else {
        return tools::skip("responses across replicas on Redis", tools::NO_REDIS);
    };
    let mock = MockUpstream::start().await;
    let toml = config_toml(&Settings::default(), &mock.base_url());
    let store = format!("[store]\nbackend = \"redis\"\nurls = [\"{}\"]\nprefix = \"tgr\"\n", server.url());
    let (a, _stop_a) = gateway_with_store(&toml, &store).await;
    let (b, _stop_b) = gateway_with_store(&toml, &store).await;
    let first = json_of(post(&a, &json!({"model": AGENT, "input": "on replica a"})).await).await;
    let second = post(&b, &json!({"model": AGENT, "input": "on replica b", "previous_response_id": first["id"]})).await;
    assert_eq!(second.status(), 200);
    let sent = mock.requests().last().unwrap().json().to_string();
    assert!(sent.contains("on replica a") && sent.contains("on replica b"), "{sent}");
}

/// A chat completion answering with `text` and one call of `get_weather`.
fn answer_with_a_call(text: &str, call_id: &str) -> common::mock::Reply {
    let call = json!({"id": call_id, "type": "function",
                      "function": {"name": "get_weather", "arguments": "{\"city\":\"Lisbon\"}"}});
    let body = json!({
        "id": "chatcmpl-ref", "object": "chat.completion", "created": 1_700_000_000, "model": AGENT_UPSTREAM_MODEL,
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": text, "tool_calls": [call]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    });
    common::mock::Reply::status(200, body.to_string())
}

fn reference(id: &Value) -> Value {
    json!({"type": "item_reference", "id": id})
}

async fn post_as(base: &str, key: &str, body: &Value) -> reqwest::Response {
    let request = client().post(format!("{base}/v1/responses")).bearer_auth(key).json(body);
    within("a responses call", request.send()).await.expect("the gateway answers")
}

/// A follow-up as the Vercel AI SDK sends it with `store` on: the earlier
/// turn's items (here its input message, its output message and function
/// call) as `item_reference`s, no `previous_response_id`. The gateway finds
/// them in the caller's stored responses and sends them upstream in their
/// place; what it cannot find in the caller's scope is a 400 naming the
/// reference, and nothing goes upstream for it.
async fn item_references_resolve_from_the_store(store: &str) {
    let mock = MockUpstream::start().await;
    let (base, _stop) = gateway_with_store(&config_toml(&Settings::default(), &mock.base_url()), store).await;
    let tools = json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]);
    mock.push(answer_with_a_call("Let me look that up.", "call_ref_1"));
    let question = json!({"type": "message", "id": "msg_my_question", "role": "user", "content": "Weather in Lisbon?"});
    let first = post(&base, &json!({"model": AGENT, "input": [question], "tools": tools})).await;
    assert_eq!(first.status(), 200);
    let first = json_of(first).await;
    let (message, call) = (&first["output"][0], &first["output"][1]);
    assert_eq!((message["type"].as_str(), call["type"].as_str()), (Some("message"), Some("function_call")), "{first}");

    let input = json!([
        reference(&json!("msg_my_question")),
        reference(&message["id"]),
        reference(&call["id"]),
        {"type": "function_call_output", "call_id": "call_ref_1", "output": "18°C, clear"},
        {"role": "user", "content": "And tomorrow?"},
    ]);
    let second = post(&base, &json!({"model": AGENT, "input": input, "tools": tools})).await;
    assert_eq!(second.status(), 200);
    let second = json_of(second).await;
    let sent = mock.requests().last().unwrap().json();
    let messages = sent["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"], "{sent}");
    assert_eq!(messages[1]["content"], "Weather in Lisbon?", "the referenced input message: {sent}");
    assert_eq!(messages[2]["content"], "Let me look that up.", "the referenced output message: {sent}");
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_ref_1", "the referenced call: {sent}");
    assert_eq!(messages[2]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        (&messages[3]["tool_call_id"], &messages[4]["content"]),
        (&json!("call_ref_1"), &json!("And tomorrow?"))
    );
    // The turn keeps the items it referenced as its input, in their place.
    let listed = client().get(format!("{base}/v1/responses/{}/input_items?order=asc", second["id"].as_str().unwrap()));
    let listed = json_of(within("input items", listed.bearer_auth(KEY).send()).await.unwrap()).await;
    let listed: Vec<&Value> = listed["data"].as_array().unwrap().iter().map(|i| &i["id"]).collect();
    assert_eq!(listed[..3], [&json!("msg_my_question"), &message["id"], &call["id"]]);

    // With a previous_response_id as well: an item outside its chain is
    // looked up, one in it comes from the history.
    let unrelated = json!({"type": "message", "id": "msg_unrelated", "role": "user", "content": "an unrelated turn"});
    assert_eq!(post(&base, &json!({"model": AGENT, "input": [unrelated]})).await.status(), 200);
    let body = json!({
        "model": AGENT,
        "previous_response_id": second["id"],
        "input": [reference(&json!("msg_unrelated")), reference(&message["id"]), {"role": "user", "content": "so?"}],
    });
    assert_eq!(post(&base, &body).await.status(), 200);
    let sent = mock.requests().last().unwrap().json();
    let tail: Vec<&Value> =
        sent["messages"].as_array().unwrap().iter().rev().take(3).rev().map(|m| &m["content"]).collect();
    assert_eq!(tail, [&json!("an unrelated turn"), &json!("Let me look that up."), &json!("so?")], "{sent}");

    let requests = mock.attempts();
    // Unknown, or another scope's: a 400 naming the reference.
    let unknown = json!({"model": AGENT, "input": [{"role": "user", "content": "x"}, reference(&json!("msg_nope"))]});
    let error = assert_error(post(&base, &unknown).await, 400, "invalid_request_error", "invalid_value").await;
    assert_eq!(error["error"]["param"], "input[1].id", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("msg_nope"), "{error}");
    let theirs = json!({"model": ALIAS, "input": [reference(&message["id"])]});
    let refused = post_as(&base, LIMITED_KEY, &theirs).await;
    let error = assert_error(refused, 400, "invalid_request_error", "invalid_value").await;
    assert_eq!(error["error"]["param"], "input[0].id", "another key's scope holds none of them: {error}");
    // More distinct references than one lookup takes: a 400 on `input`.
    let many: Vec<Value> = (0..=MAX_ITEM_IDS).map(|n| reference(&json!(format!("msg_{n}")))).collect();
    let refused = post(&base, &json!({"model": AGENT, "input": many})).await;
    let error = assert_error(refused, 400, "invalid_request_error", "invalid_value").await;
    assert_eq!(error["error"]["param"], "input", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains(&MAX_ITEM_IDS.to_string()), "{error}");
    assert_eq!(mock.attempts(), requests, "nothing went upstream for the refused requests");
}

#[tokio::test]
async fn item_references_resolve_from_the_embedded_store() {
    item_references_resolve_from_the_store(&embedded_store("references")).await;
}

#[tokio::test]
async fn item_references_resolve_from_redis() {
    let Some(server) = redis_server::RedisServer::start() else {
        return tools::skip("item references on Redis", tools::NO_REDIS);
    };
    let store = format!("[store]\nbackend = \"redis\"\nurls = [\"{}\"]\nprefix = \"tgr\"\n", server.url());
    item_references_resolve_from_the_store(&store).await;
}

/// The default config (built-in mock, demo agent, demo key) with a store.
async fn demo_gateway(what: &str) -> (String, common::Running) {
    let toml = r#"
[providers.mock]
kind = "mock"
stream_chunks = 4

[agents.demo]
provider = "mock"
upstream_model = "mock-1"

[[keys]]
name = "demo"
sha256 = "DEMO_SHA"
"#
    .replace("DEMO_SHA", &hex::encode(tollgate::auth::hash_key(b"tg_demo_key_change_me")));
    gateway_with_store(&toml, &embedded_store(what)).await
}

fn run_sdk(program: String, script: &str, base_url: String) -> std::process::Output {
    Command::new(program)
        .arg(script)
        .arg(base_url)
        .arg("tg_demo_key_change_me")
        .current_dir(SDK_DIR)
        .output()
        .expect("the SDK runtime starts")
}

fn assert_success(output: &std::process::Output) {
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("all checks passed"),
        "SDK script failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_creates_continues_streams_and_retrieves_responses() {
    if let Some(reason) = tools::python_lacks("openai") {
        return tools::skip("the openai Python SDK Responses test", &reason);
    }
    let (base, _stop) = demo_gateway("python").await;
    for root in ["/v1", "/v1/api"] {
        let url = format!("{base}{root}");
        let output = tokio::task::spawn_blocking(move || run_sdk(tools::python(), "openai_responses.py", url));
        assert_success(&output.await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vercel_ai_sdk_default_provider_generates_streams_calls_tools_and_continues_by_reference() {
    let available = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
        && Path::new(SDK_DIR).join("node_modules/@ai-sdk/openai").exists();
    if !available {
        let reason = "node or tests/sdk/node_modules is missing (scripts/test runs `npm ci --prefix tests/sdk`)";
        return tools::skip("the Vercel AI SDK Responses test", reason);
    }
    let (base, _stop) = demo_gateway("vercel").await;
    for root in ["/v1", "/v1/api"] {
        let url = format!("{base}{root}");
        let output = tokio::task::spawn_blocking(move || run_sdk("node".into(), "vercel_ai_sdk_responses.mjs", url));
        assert_success(&output.await.unwrap());
    }
}
