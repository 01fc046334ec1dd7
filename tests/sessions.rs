//! Seed 000's workspace sessions (issue 12 item 2) through the real gateway,
//! on both backends: a new id starts a dialog and a known one continues it
//! (streamed by default, whole on request), what the upstream sees (the
//! history, trimmed by the agent's memory policy; a `summarize` policy's
//! billed call), `GET` / list / `DELETE`, another workspace's session (404),
//! two messages at once (the second is 409 `conversation_busy`), a message at
//! zero balance (429, not kept) and the same message after a top-up, a
//! session continued on another replica, and bad input naming its field.

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
use common::{scripted_stream, within, AGENT};
use credits_env::{Backend, Env, CREDIT, NOV_14_NOON};
use serde_json::{json, Value};
use tollgate::scope::Scope;

on_both_backends!(
    a_session_starts_continues_and_is_read_back,
    the_memory_policy_bounds_what_the_upstream_sees,
    summarize_folds_old_turns_with_a_billed_call,
    another_workspace_sees_no_session,
    a_second_message_while_one_is_answered_is_409,
    zero_balance_refuses_and_a_top_up_continues,
    another_replica_continues_the_session,
    bad_input_names_the_field,
    the_workspace_default_agent_answers_a_message_that_names_none,
    a_responses_chain_keeps_to_the_memory_policy_too,
    a_client_that_leaves_or_an_upstream_that_dies_stores_nothing_and_frees_the_session,
    a_message_makes_the_events_of_a_chat_call,
);

const AGENTS: &str = r#"
[agents.brief]
provider = "up"
upstream_model = "brief-up"
memory = { max_messages = 3 }

[agents.folding]
provider = "up"
upstream_model = "folding-up"
price = { request = 1000000 }
memory = { max_messages = 4, strategy = "summarize" }
"#;

async fn env(backend: Backend, test: &str) -> Option<Env> {
    Env::start_with(backend, test, NOV_14_NOON, AGENTS).await
}

/// A workspace on `plan` and a chat key in it.
async fn member(env: &Env, ws: &str, plan: &str) -> String {
    env.workspace(ws, plan, None).await;
    env.key(ws, Scope::Chat, None, None).await.1
}

fn path(ws: &str, id: &str) -> String {
    format!("/v1/workspaces/{ws}/sessions/{id}/messages")
}

/// The text of a streamed session answer: chat chunks, `[DONE]` last.
async fn streamed_text(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let body = within("the session stream", response.text()).await.unwrap();
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"), "{body}");
    let mut text = String::new();
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    text
}

/// The non-system messages the upstream got in request `n`.
fn upstream_messages(env: &Env, n: usize) -> Vec<(String, String)> {
    let request = env.mock.requests()[n].json();
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap().to_owned()))
        .collect()
}

async fn a_session_starts_continues_and_is_read_back(backend: Backend) {
    let Some(env) = env(backend, "session-lifecycle").await else { return };
    let key = member(&env, "acme", "default").await;
    let url = format!("{}{}", env.replicas[0].base, path("acme", "s-1"));
    let first = env.http.post(&url).bearer_auth(&key).json(&json!({"content": "Hi", "agent": AGENT})).send();
    let first = within("the first answer", first).await.unwrap();
    assert_eq!(first.headers()["x-session-id"], "s-1");
    assert_eq!(streamed_text(first).await, ANSWER_WORDS.concat());
    // A known id continues; the agent is remembered; whole on request.
    let second = env.post(&key, &path("acme", "s-1"), &json!({"content": "And then?", "stream": false})).await;
    let answer = second.ok();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], AGENT);
    assert_eq!(answer["session_id"], "s-1");
    assert_eq!(answer["choices"][0]["message"]["content"], ANSWER_WORDS.concat());
    let said = ANSWER_WORDS.concat();
    let seen = upstream_messages(&env, 1);
    let expected = [("user", "Hi"), ("assistant", said.as_str()), ("user", "And then?")];
    assert_eq!(seen, expected.map(|(r, c)| (r.to_owned(), c.to_owned())));
    assert_eq!(env.mock.requests()[1].json()["model"], common::AGENT_UPSTREAM_MODEL);
    // Read back: the messages in order, a cursor, the list, then gone.
    let session = env.get(&key, "/v1/workspaces/acme/sessions/s-1").await.ok().clone();
    assert_eq!((session["agent"].as_str(), session["turns"].as_u64()), (Some(AGENT), Some(2)));
    let roles: Vec<&str> =
        session["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    let first_id = session["messages"][0]["id"].as_str().unwrap();
    let page = env.get(&key, &format!("/v1/workspaces/acme/sessions/s-1?after={first_id}&limit=2")).await;
    let page = page.ok();
    assert_eq!((page["messages"].as_array().unwrap().len(), &page["has_more"]), (2, &json!(true)));
    assert_eq!(page["messages"][0]["content"], said);
    let list = env.get(&key, "/v1/workspaces/acme/sessions").await.ok().clone();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], "s-1");
    // The seed's own path reads the same session.
    let seed = env.get(&key, "/api/v1/workspaces/acme/session/s-1").await;
    assert_eq!(seed.ok()["turns"], 2);
    let deleted = env
        .send(env.http.delete(format!("{}/v1/workspaces/acme/sessions/s-1", env.replicas[0].base)).bearer_auth(&key))
        .await;
    assert_eq!(deleted.ok()["deleted"], true);
    env.get(&key, "/v1/workspaces/acme/sessions/s-1").await.error(404, "invalid_request_error", "not_found");
    // A new dialog under the same id starts empty.
    env.post(&key, &path("acme", "s-1"), &json!({"content": "Again", "agent": AGENT, "stream": false})).await.ok();
    assert_eq!(upstream_messages(&env, 2), [("user".to_owned(), "Again".to_owned())]);
}

async fn the_memory_policy_bounds_what_the_upstream_sees(backend: Backend) {
    let Some(env) = env(backend, "session-memory").await else { return };
    let key = member(&env, "acme", "default").await;
    for n in 0..4 {
        let body = json!({"content": format!("message {n}"), "agent": "brief", "stream": false});
        env.post(&key, &path("acme", "m"), &body).await.ok();
    }
    // max_messages = 3: the newest three, the new message last.
    let seen = upstream_messages(&env, 3);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2], ("user".to_owned(), "message 3".to_owned()));
    assert_eq!(seen[1].0, "assistant");
    assert_eq!(seen[0], ("user".to_owned(), "message 2".to_owned()));
    // Everything is still stored: the policy bounds what is sent, not kept.
    let session = env.get(&key, "/v1/workspaces/acme/sessions/m").await.ok().clone();
    assert_eq!(session["messages"].as_array().unwrap().len(), 8);
}

async fn summarize_folds_old_turns_with_a_billed_call(backend: Backend) {
    let Some(env) = env(backend, "session-summary").await else { return };
    let key = member(&env, "acme", "hundred").await;
    for n in 0..3 {
        let body = json!({"content": format!("fact {n}"), "agent": "folding", "stream": false});
        env.post(&key, &path("acme", "f"), &body).await.ok();
    }
    // The third message makes 5 messages (> 4): the oldest are folded first.
    let requests = env.mock.requests();
    assert_eq!(requests.len(), 4, "two answers, one summary, one answer");
    let summary_call = requests[2].json();
    let asked = summary_call["messages"].to_string();
    assert!(asked.contains("Summarize") && asked.contains("fact 0"), "{asked}");
    let answer_call = requests[3].json();
    let system = answer_call["messages"][0]["content"].as_str().unwrap();
    assert!(system.starts_with("Summary of the earlier conversation"), "{answer_call}");
    assert!(system.contains(&ANSWER_WORDS.concat()), "the mock's answer is the summary: {system}");
    assert!(upstream_messages(&env, 3).len() <= 4);
    // Billed like any call: four calls at one credit each.
    let credits = env.settled("acme", 4).await;
    assert_eq!(credits_env::message(&credits).0, (100 - 4) * CREDIT as i64, "{credits}");
    let session = env.get(&key, "/v1/workspaces/acme/sessions/f").await.ok().clone();
    assert!(session["summary"]["text"].as_str().unwrap().contains("upstream"), "{session}");
}

async fn another_workspace_sees_no_session(backend: Backend) {
    let Some(env) = env(backend, "session-isolation").await else { return };
    let key = member(&env, "acme", "default").await;
    let other = member(&env, "globex", "default").await;
    env.post(&key, &path("acme", "s"), &json!({"content": "Hi", "agent": AGENT, "stream": false})).await.ok();
    env.get(&other, "/v1/workspaces/acme/sessions/s").await.error(404, "invalid_request_error", "not_found");
    let answer = env.post(&other, &path("acme", "s"), &json!({"content": "Hi", "agent": AGENT})).await;
    answer.error(404, "invalid_request_error", "not_found");
    // Its own workspace has no session of that id either.
    env.get(&other, "/v1/workspaces/globex/sessions/s").await.error(404, "invalid_request_error", "not_found");
    let list = env.get(&other, "/v1/workspaces/acme/sessions").await.ok().clone();
    assert_eq!(list["data"], json!([]));
    assert_eq!(env.mock.requests().len(), 1, "nothing reached the upstream for the other workspace");
}

async fn a_second_message_while_one_is_answered_is_409(backend: Backend) {
    let Some(env) = env(backend, "session-busy").await else { return };
    let key = member(&env, "acme", "default").await;
    let (reply, control) = scripted_stream();
    env.mock.push(reply);
    let url = format!("{}{}", env.replicas[0].base, path("acme", "busy"));
    let first = env.http.post(&url).bearer_auth(&key).json(&json!({"content": "long one", "agent": AGENT})).send();
    let first = within("the first stream's headers", first).await.unwrap();
    control.send_content(common::AGENT_UPSTREAM_MODEL, "part").await;
    let second = env.post(&key, &path("acme", "busy"), &json!({"content": "meanwhile", "stream": false})).await;
    second.error(409, "invalid_request_error", "conversation_busy");
    assert!(second.num_header("retry-after") >= 1);
    control.finish(common::AGENT_UPSTREAM_MODEL, Some((5, 1))).await;
    assert_eq!(streamed_text(first).await, "part");
    // Once answered, the next message goes in, after the first.
    env.post(&key, &path("acme", "busy"), &json!({"content": "now", "stream": false})).await.ok();
    let seen = upstream_messages(&env, 1);
    assert_eq!(seen, [("user", "long one"), ("assistant", "part"), ("user", "now")].map(|(r, c)| (r.into(), c.into())));
}

async fn zero_balance_refuses_and_a_top_up_continues(backend: Backend) {
    let Some(env) = env(backend, "session-quota").await else { return };
    let key = member(&env, "broke", "empty").await;
    // `folding` costs a credit a call; the `empty` plan has none.
    let body = json!({"content": "Hello?", "agent": "folding", "stream": false});
    env.post(&key, &path("broke", "q"), &body).await.error(429, "insufficient_quota", "insufficient_quota");
    // Not kept: the session does not exist yet.
    env.get(&key, "/v1/workspaces/broke/sessions/q").await.error(404, "invalid_request_error", "not_found");
    let topup = json!({"workspace": "broke", "type": "message", "amount": 5 * CREDIT});
    env.post(&env.admin.clone(), "/v1/credits/topup", &topup).await.ok();
    env.post(&key, &path("broke", "q"), &body).await.ok();
    env.post(&key, &path("broke", "q"), &json!({"content": "More", "stream": false})).await.ok();
    assert_eq!(upstream_messages(&env, 1).len(), 3, "the conversation continued where it stopped");
}

async fn another_replica_continues_the_session(backend: Backend) {
    let Some(mut env) = env(backend, "session-replicas").await else { return };
    env.add_replica().await;
    let key = member(&env, "acme", "default").await;
    env.post(&key, &path("acme", "r"), &json!({"content": "on A", "agent": AGENT, "stream": false})).await.ok();
    let url = format!("{}{}", env.replicas[1].base, path("acme", "r"));
    let on_b = env.send(env.http.post(url).bearer_auth(&key).json(&json!({"content": "on B", "stream": false}))).await;
    on_b.ok();
    assert_eq!(upstream_messages(&env, 1).len(), 3);
}

async fn bad_input_names_the_field(backend: Backend) {
    let Some(env) = env(backend, "session-bad-input").await else { return };
    let key = member(&env, "acme", "default").await;
    let ok = json!({"content": "Hi", "agent": AGENT});
    let long = "x".repeat(129);
    for id in [long.as_str(), "bad!id", "a%20b"] {
        let e = env.post(&key, &path("acme", id), &ok).await;
        assert_eq!(e.error(400, "invalid_request_error", "invalid_value")["error"]["param"], "session_id", "{id}");
    }
    let e = env.post(&key, &path("acme", "s"), &json!({"agent": AGENT})).await;
    assert_eq!(e.error(400, "invalid_request_error", "missing_required_parameter")["error"]["param"], "content");
    let e = env.post(&key, &path("acme", "s"), &json!({"content": 7, "agent": AGENT})).await;
    assert_eq!(e.error(400, "invalid_request_error", "invalid_type")["error"]["param"], "content");
    let e = env.post(&key, &path("acme", "s"), &json!({"content": "Hi"})).await;
    assert_eq!(e.error(400, "invalid_request_error", "invalid_value")["error"]["param"], "agent");
    let e = env.post(&key, &path("acme", "s"), &json!({"content": "Hi", "agent": "nope"})).await;
    e.error(404, "invalid_request_error", "model_not_found");
    env.post_raw(&key, &path("acme", "s"), "{\"content\": ").await.error(400, "invalid_request_error", "invalid_json");
    // Declared over `max_body_bytes`: refused before a byte of it is sent.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\n\
         content-length: 200000\r\n\r\n",
        path("acme", "s")
    );
    let mut socket = common::raw_send(env.replicas[0].running.addr, head.as_bytes()).await;
    let refused = common::raw_read_response(&mut socket).await;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.json()["error"]["code"], "body_too_large");
    let e = env.get(&key, "/v1/workspaces/acme/sessions?limit=0").await;
    assert_eq!(e.error(400, "invalid_request_error", "invalid_value")["error"]["param"], "limit");
    // None of it reached the upstream or left a session behind.
    assert!(env.mock.requests().is_empty());
    let list = env.get(&key, "/v1/workspaces/acme/sessions").await.ok().clone();
    assert_eq!(list["data"], json!([]));
}

async fn the_workspace_default_agent_answers_a_message_that_names_none(backend: Backend) {
    let Some(env) = env(backend, "session-default-agent").await else { return };
    let key = member(&env, "acme", "default").await;
    let body = json!({"content": "Hi", "stream": false});
    let e = env.post(&key, &path("acme", "d"), &body).await;
    assert_eq!(e.error(400, "invalid_request_error", "invalid_value")["error"]["param"], "agent");
    let url = format!("{}/v1/workspaces/acme", env.replicas[0].base);
    let set = env.http.patch(url).bearer_auth(&env.admin).json(&json!({"default_agent": "brief"}));
    env.send(set).await.ok();
    let answer = env.post(&key, &path("acme", "d"), &body).await;
    assert_eq!(answer.ok()["model"], "brief");
    assert_eq!(env.mock.requests()[0].json()["model"], "brief-up");
}

async fn a_responses_chain_keeps_to_the_memory_policy_too(backend: Backend) {
    let Some(env) = env(backend, "responses-memory").await else { return };
    let key = member(&env, "acme", "default").await;
    let mut previous: Option<String> = None;
    for n in 0..4 {
        let mut body = json!({"model": "brief", "input": format!("message {n}")});
        if let Some(p) = &previous {
            body["previous_response_id"] = json!(p);
        }
        let answer = env.post(&key, "/v1/responses", &body).await;
        previous = Some(answer.ok()["id"].as_str().unwrap().to_owned());
    }
    // max_messages = 3: two of the history, then the new input.
    let seen = upstream_messages(&env, 3);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], ("user".to_owned(), "message 2".to_owned()));
    assert_eq!(seen[2], ("user".to_owned(), "message 3".to_owned()));
    // Without a policy (`helper`) the whole chain goes.
    let body = json!({"model": AGENT, "input": "more", "previous_response_id": previous});
    env.post(&key, "/v1/responses", &body).await.ok();
    assert_eq!(upstream_messages(&env, 4).len(), 9);
}

async fn a_client_that_leaves_or_an_upstream_that_dies_stores_nothing_and_frees_the_session(backend: Backend) {
    let Some(env) = env(backend, "session-cut").await else { return };
    let key = member(&env, "acme", "default").await;
    env.post(&key, &path("acme", "c"), &json!({"content": "first", "agent": AGENT, "stream": false})).await.ok();
    // The upstream dies mid-answer: the error event, nothing stored.
    let (reply, control) = scripted_stream();
    env.mock.push(reply);
    let url = format!("{}{}", env.replicas[0].base, path("acme", "c"));
    let cut = within("headers", env.http.post(&url).bearer_auth(&key).json(&json!({"content": "cut"})).send());
    let cut = cut.await.unwrap();
    control.send_content(common::AGENT_UPSTREAM_MODEL, "half").await;
    control.die().await;
    let body = within("the cut stream", cut.text()).await.unwrap();
    assert!(body.contains("\"error\""), "an error event ends it: {body}");
    assert!(!body.contains("[DONE]"), "{body}");
    // The client leaves mid-answer: the session is let go, not held for the lease.
    let (reply, control) = scripted_stream();
    env.mock.push(reply);
    let left = within("headers", env.http.post(&url).bearer_auth(&key).json(&json!({"content": "left"})).send());
    let left = left.await.unwrap();
    control.send_content(common::AGENT_UPSTREAM_MODEL, "partial").await;
    drop(left);
    control.cancelled().await;
    let next = within("the session to be free again", async {
        loop {
            let answer = env.post(&key, &path("acme", "c"), &json!({"content": "next", "stream": false})).await;
            if answer.status != 409 {
                return answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    next.await.ok();
    // Neither the cut nor the abandoned message is in the history.
    let said = ANSWER_WORDS.concat();
    let expected = [("user", "first"), ("assistant", said.as_str()), ("user", "next")];
    assert_eq!(upstream_messages(&env, 3), expected.map(|(r, c)| (r.to_owned(), c.to_owned())));
}

async fn a_message_makes_the_events_of_a_chat_call(backend: Backend) {
    let Some(env) = env(backend, "session-events").await else { return };
    let key = member(&env, "acme", "default").await;
    env.post(&key, &path("acme", "e"), &json!({"content": "Hi", "agent": AGENT, "stream": false})).await.ok();
    let events = within("request.completed in the log", async {
        loop {
            let log = env.get(&env.admin.clone(), "/v1/events?workspace=acme&type=request.completed").await;
            let log = log.ok().clone();
            if !log["data"].as_array().unwrap().is_empty() {
                return log;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let data = &events["data"][0]["data"];
    assert_eq!(data["endpoint"], "sessions", "{events}");
    assert_eq!(data["agent"], AGENT, "{events}");
}
