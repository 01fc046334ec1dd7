//! Seed 002's stateful `/v1/chat` (issue 12 item 3) through the real gateway,
//! on both backends: the whole answer as a UIMessage with its metadata, the
//! `data` and `text` streams, the short `{"message"}` form, the seed's alias
//! paths, history de-duplicated by message id (whole history or only the
//! newest message), a chat id per workspace, a new chat id when none is
//! given, zero balance, and bad input naming its field. The AI SDK's own
//! transports and stream readers run in `tests/sdk.rs`.

#[macro_use]
#[path = "support/backends.rs"]
mod backends;
mod common;
// The credits tests' harness; this file uses part of it.
#[allow(dead_code)]
#[path = "support/credits_env.rs"]
mod credits_env;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use common::mock::ANSWER_WORDS;
use common::{within, AGENT};
use credits_env::{Backend, Env, NOV_14_NOON};
use serde_json::{json, Value};
use tollgate::scope::Scope;

on_both_backends!(
    a_whole_answer_is_a_ui_message_with_metadata,
    data_and_text_streams,
    history_is_deduplicated_by_message_id,
    chat_ids_are_per_workspace_and_made_when_absent,
    zero_balance_is_429_and_keeps_nothing,
    bad_input_names_the_field,
    a_chat_is_read_back_as_ui_messages_listed_and_deleted,
);

async fn env(backend: Backend, test: &str) -> Option<Env> {
    Env::start_with(backend, test, NOV_14_NOON, "").await
}

async fn member(env: &Env, ws: &str, plan: &str) -> String {
    env.workspace(ws, plan, None).await;
    env.key(ws, Scope::Chat, None, None).await.1
}

fn user(id: &str, text: &str) -> Value {
    json!({"id": id, "role": "user", "parts": [{"type": "text", "text": text}]})
}

/// The non-system messages of upstream request `n`.
fn upstream(env: &Env, n: usize) -> Vec<(String, String)> {
    let request = env.mock.requests()[n].json();
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap().to_owned()))
        .collect()
}

async fn stream(env: &Env, key: &str, path: &str, body: &Value) -> (String, String) {
    let url = format!("{}{path}", env.replicas[0].base);
    let response = within("the chat stream", env.http.post(url).bearer_auth(key).json(body).send()).await.unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
    (kind, within("the chat stream's body", response.text()).await.unwrap())
}

async fn a_whole_answer_is_a_ui_message_with_metadata(backend: Backend) {
    let Some(env) = env(backend, "chat-whole").await else { return };
    let key = member(&env, "acme", "default").await;
    let body = json!({"chatId": "c1", "messages": [user("m1", "What is ML?")], "model": AGENT,
                      "temperature": 0.5, "maxTokens": 50});
    let answer = env.post(&key, "/v1/chat", &body).await;
    assert_eq!(answer.header("x-chat-id"), Some("c1"));
    let message = answer.ok();
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["parts"], json!([{"type": "text", "text": ANSWER_WORDS.concat()}]));
    assert_eq!(message["metadata"]["model"], AGENT);
    assert_eq!(message["metadata"]["tokensUsed"], 14);
    assert_eq!(message["metadata"]["finishReason"], "stop");
    let sent = env.mock.requests()[0].json();
    assert_eq!((sent["temperature"].as_f64(), sent["max_tokens"].as_u64()), (Some(0.5), Some(50)));
    // The seed's other paths and the short form continue the same chat.
    env.post(&key, "/v1/api/chat", &json!({"chatId": "c1", "message": "More"})).await.ok();
    env.post(&key, "/api/v1/chat", &json!({"chatId": "c1", "message": "Again"})).await.ok();
    assert_eq!(upstream(&env, 2).len(), 5);
    assert_eq!(upstream(&env, 2)[4], ("user".to_owned(), "Again".to_owned()));
}

async fn data_and_text_streams(backend: Backend) {
    let Some(env) = env(backend, "chat-streams").await else { return };
    let key = member(&env, "acme", "default").await;
    let body = json!({"chatId": "s", "message": "Hi", "model": AGENT, "stream": true, "streamType": "data"});
    let (kind, text) = stream(&env, &key, "/v1/chat", &body).await;
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let deltas: String =
        events.iter().filter(|e| e["type"] == "content").map(|e| e["delta"].as_str().unwrap()).collect();
    assert_eq!(deltas, ANSWER_WORDS.concat());
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done", "{text}");
    assert!(done["execution_id"].as_str().is_some_and(|id| !id.is_empty()), "{done}");
    let body = json!({"chatId": "s", "message": "Plain", "stream": true, "streamType": "text"});
    let (kind, text) = stream(&env, &key, "/v1/chat", &body).await;
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert_eq!(text, ANSWER_WORDS.concat());
    assert_eq!(upstream(&env, 1).len(), 3, "the text stream continued the same chat");
}

async fn history_is_deduplicated_by_message_id(backend: Backend) {
    let Some(env) = env(backend, "chat-dedup").await else { return };
    let key = member(&env, "acme", "default").await;
    let first =
        env.post(&key, "/v1/chat", &json!({"chatId": "d", "messages": [user("m1", "one")], "model": AGENT})).await;
    let answer = first.ok().clone();
    // useChat sends the whole history again, the answer included.
    let whole = json!({"chatId": "d", "messages": [user("m1", "one"), answer, user("m3", "two")]});
    env.post(&key, "/v1/chat", &whole).await.ok();
    let said = ANSWER_WORDS.concat();
    let expected = [("user", "one"), ("assistant", said.as_str()), ("user", "two")];
    assert_eq!(upstream(&env, 1), expected.map(|(r, c)| (r.to_owned(), c.to_owned())));
    // Only the newest message works as well.
    env.post(&key, "/v1/chat", &json!({"chatId": "d", "messages": [user("m5", "three")]})).await.ok();
    assert_eq!(upstream(&env, 2).len(), 5);
    // Nothing new at all is refused: there is nothing to answer.
    let e = env.post(&key, "/v1/chat", &json!({"chatId": "d", "messages": [user("m1", "one")]})).await;
    assert_eq!(e.error(400, "invalid_request_error", "invalid_value")["error"]["param"], "messages");
}

async fn chat_ids_are_per_workspace_and_made_when_absent(backend: Backend) {
    let Some(env) = env(backend, "chat-scope").await else { return };
    let key = member(&env, "acme", "default").await;
    let other = member(&env, "globex", "default").await;
    env.post(&key, "/v1/chat", &json!({"chatId": "same", "message": "acme's", "model": AGENT})).await.ok();
    env.post(&other, "/v1/chat", &json!({"chatId": "same", "message": "globex's", "model": AGENT})).await.ok();
    assert_eq!(upstream(&env, 1), [("user".to_owned(), "globex's".to_owned())], "no history crosses workspaces");
    let fresh = env.post(&key, "/v1/chat", &json!({"message": "new", "model": AGENT})).await;
    let id = fresh.header("x-chat-id").unwrap().to_owned();
    assert!(id.starts_with("chat_"), "{id}");
    assert_eq!(fresh.ok()["metadata"]["chatId"], id);
    env.post(&key, "/v1/chat", &json!({"id": id, "message": "continued"})).await.ok();
    assert_eq!(upstream(&env, 3).len(), 3, "`id` (useChat's name) continues the made chat");
}

async fn zero_balance_is_429_and_keeps_nothing(backend: Backend) {
    let Some(env) = env(backend, "chat-quota").await else { return };
    let key = member(&env, "broke", "empty").await;
    let body = json!({"chatId": "q", "message": "Hello?", "model": "flat"});
    env.post(&key, "/v1/chat", &body).await.error(429, "insufficient_quota", "insufficient_quota");
    let topup = json!({"workspace": "broke", "type": "message", "amount": 5 * credits_env::CREDIT});
    env.post(&env.admin.clone(), "/v1/credits/topup", &topup).await.ok();
    env.post(&key, "/v1/chat", &body).await.ok();
    assert_eq!(upstream(&env, 0), [("user".to_owned(), "Hello?".to_owned())], "the refused message was not kept");
}

async fn bad_input_names_the_field(backend: Backend) {
    let Some(env) = env(backend, "chat-bad-input").await else { return };
    let key = member(&env, "acme", "default").await;
    let long = "x".repeat(129);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"chatId": long, "message": "x", "model": AGENT}), "invalid_value", "chatId"),
        (json!({"chatId": "", "message": "x", "model": AGENT}), "invalid_value", "chatId"),
        (json!({"chatId": "a/b", "message": "x", "model": AGENT}), "invalid_value", "chatId"),
        (json!({"id": "a b", "message": "x", "model": AGENT}), "invalid_value", "id"),
        (json!({"chatId": "c", "model": AGENT}), "missing_required_parameter", "messages"),
        (json!({"chatId": "c", "message": 3, "model": AGENT}), "invalid_type", "message"),
        (
            json!({"chatId": "c", "messages": [{"id": "m", "role": "user", "parts": [{"type": "video", "text": "x"}]}]}),
            "invalid_value",
            "messages[0].parts[0].type",
        ),
        (
            json!({"chatId": "c", "messages": [{"id": "m", "role": "user"}]}),
            "missing_required_parameter",
            "messages[0].parts",
        ),
        (
            json!({"chatId": "c", "messages": [{"id": "m", "role": "robot", "parts": []}]}),
            "invalid_value",
            "messages[0].role",
        ),
        (json!({"chatId": "c", "messages": [user("bad id", "x")], "model": AGENT}), "invalid_value", "messages[0].id"),
        (json!({"chatId": "c", "messages": "hi"}), "invalid_type", "messages"),
        (
            json!({"chatId": "c", "message": "x", "model": AGENT, "stream": true, "streamType": "xml"}),
            "invalid_value",
            "streamType",
        ),
    ];
    for (body, code, param) in cases {
        let e = env.post(&key, "/v1/chat", &body).await;
        assert_eq!(e.error(400, "invalid_request_error", code)["error"]["param"], param, "{body}");
    }
    env.post_raw(&key, "/v1/chat", "{\"chatId\":").await.error(400, "invalid_request_error", "invalid_json");
    // Declared over `max_body_bytes`: refused before a byte of it is sent.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\n\
         content-length: 200000\r\n\r\n",
        "/v1/chat"
    );
    let mut socket = common::raw_send(env.replicas[0].running.addr, head.as_bytes()).await;
    let refused = common::raw_read_response(&mut socket).await;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.json()["error"]["code"], "body_too_large");
    assert!(env.mock.requests().is_empty(), "nothing reached the upstream");
}

async fn a_chat_is_read_back_as_ui_messages_listed_and_deleted(backend: Backend) {
    let Some(env) = env(backend, "chat-read").await else { return };
    let key = member(&env, "acme", "default").await;
    let other = member(&env, "globex", "default").await;
    env.post(&key, "/v1/chat", &json!({"chatId": "r", "messages": [user("m1", "one")], "model": AGENT})).await.ok();
    env.post(&key, "/v1/chat", &json!({"chatId": "r", "messages": [user("m3", "two")]})).await.ok();
    let chat = env.get(&key, "/v1/chat/r").await.ok().clone();
    assert_eq!(
        (chat["object"].as_str(), chat["turns"].as_u64(), chat["agent"].as_str()),
        (Some("chat"), Some(2), Some(AGENT))
    );
    let messages = chat["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0]["id"], "m1");
    assert_eq!(messages[0]["parts"], json!([{"type": "text", "text": "one"}]));
    assert_eq!(messages[1]["role"], "assistant");
    let page = env.get(&key, "/v1/chat/r?after=m1&limit=1").await.ok().clone();
    assert_eq!((page["messages"][0]["role"].as_str(), &page["has_more"]), (Some("assistant"), &json!(true)));
    let e = env.get(&key, "/v1/chat/r?after=nope").await;
    assert_eq!(e.error(400, "invalid_request_error", "invalid_value")["error"]["param"], "after");
    assert_eq!(env.get(&key, "/v1/chat").await.ok()["data"][0]["id"], "r");
    // Another workspace's key finds nothing of it.
    env.get(&other, "/v1/chat/r").await.error(404, "invalid_request_error", "not_found");
    assert_eq!(env.get(&other, "/v1/chat").await.ok()["data"], json!([]));
    let url = format!("{}/v1/chat/r", env.replicas[0].base);
    assert_eq!(env.send(env.http.delete(&url).bearer_auth(&other)).await.status, 404);
    assert_eq!(env.send(env.http.delete(&url).bearer_auth(&key)).await.ok()["deleted"], true);
    env.get(&key, "/v1/chat/r").await.error(404, "invalid_request_error", "not_found");
    assert_eq!(env.get(&key, "/v1/chat/bad!id").await.status, 400);
}
