//! Webhooks end to end (issue 5): the real gateway in-process, its event bus
//! and delivery worker, the mock upstream, and real receivers
//! (tests/support/receiver.rs) that check both signatures independently of
//! `src/`. Each scenario runs on the embedded store and on a `redis-server` of
//! its own (`on_embedded::*`, `on_redis::*`):
//!
//! 1. every event type arrives signed twice (Standard Webhooks and
//!    `X-Tollgate-Signature`), with its data fields, and verifies with the
//!    stock `standardwebhooks` Python library;
//! 2. failed attempts (500, 503, 429 + `Retry-After`) are retried with one
//!    `webhook-id` until one 2xx; the deliveries list shows each attempt; a
//!    receiver that always fails is given up after the schedule;
//! 3. a receiver that hangs holds only its own slots: another endpoint gets
//!    every event meanwhile;
//! 4. 410 Gone disables an endpoint and emits `webhook.disabled`;
//! 5. a run of `disable_after_failures` failed attempts disables it too (a
//!    success resets the run);
//! 6. SSRF: private and loopback targets are refused at registration and, for
//!    a webhook written straight into the store, at delivery; a name that
//!    does not resolve gets the same answer as a private target;
//! 7. deliveries cost integration credits, wait at a zero balance (neither
//!    delivered nor failed) and resume after a top-up;
//! 8. secret rotation: both secrets sign the Standard signature during the
//!    grace period, `X-Tollgate-Signature` uses the newest;
//! 9. scopes and bad input on the webhooks API.
//!
//! Two tests pin bugs the first version of this file found in `src/` (now
//! fixed): `tool_calls_without_an_index_are_each_invoked` and
//! `a_retry_after_date_is_honoured`.
//!
//! The event log (`GET /v1/events`) and overload are in tests/events_log.rs.
//! No fixed sleeps: tests wait on the receivers and poll the API, each wait
//! bounded; no assertion has a timing upper bound.

mod common;
#[macro_use]
#[path = "support/backends.rs"]
mod backends;
#[path = "support/events_env.rs"]
mod events_env;
#[path = "support/receiver.rs"]
mod receiver;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::time::Duration;

use common::mock::{chat_chunk, event, Reply, COMPLETION_TOKENS, PROMPT_TOKENS};
use common::{chat_body, chat_stream_body, AGENT, AGENT_UPSTREAM_MODEL, ALIAS, KEY};
use events_env::*;
use receiver::{verify_std, verify_tollgate, Behaviour, Delivery, Receiver};
use serde_json::{json, Value};
use tollgate::events::{EventType, Webhook};
use tollgate::scope::Scope;
use tollgate::secret::Secret;

on_both_backends!(
    every_event_type_arrives_signed_twice,
    failed_attempts_are_retried_under_one_event_id,
    a_delivery_outlives_its_event_in_the_log,
    a_hung_receiver_does_not_delay_other_endpoints,
    gone_disables_the_endpoint,
    a_run_of_failures_disables_the_endpoint,
    private_targets_are_refused_at_registration_and_delivery,
    deliveries_wait_for_integration_credits,
    a_rotated_secret_signs_alongside_the_old_one,
    webhook_api_scopes_and_bad_input,
);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_owned()
}

fn is_type(d: &Delivery, kind: &str) -> bool {
    d.event_type.as_deref() == Some(kind)
}

/// The request an event is about: `data.request_id`, or `data.execution_id`
/// for `agent.execution.*`.
fn request_of(d: &Delivery) -> Option<&str> {
    let data = &d.json["data"];
    data["request_id"].as_str().or(data["execution_id"].as_str())
}

/// The deliveries of `kind` about `request_id`, one per event (retries collapsed).
fn about<'a>(seen: &'a [Delivery], kind: &str, request_id: &str) -> Vec<&'a Delivery> {
    let mut ids = BTreeSet::new();
    seen.iter().filter(|d| is_type(d, kind) && request_of(d) == Some(request_id) && ids.insert(d.key())).collect()
}

/// The only delivery of `kind` about `request_id`.
fn one<'a>(seen: &'a [Delivery], kind: &str, request_id: &str) -> &'a Delivery {
    match about(seen, kind, request_id).as_slice() {
        [d] => d,
        other => panic!("expected one {kind} about {request_id}, got {}: {other:#?}", other.len()),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// What every delivery looks like: both signatures, the Standard Webhooks
/// headers, and the `{"id","type","timestamp","workspace","data"}` body.
fn assert_envelope(d: &Delivery, workspace: &str) {
    assert!(d.std_valid, "the Standard Webhooks signature verifies: {d:#?}");
    assert!(d.tollgate_valid, "X-Tollgate-Signature verifies: {d:#?}");
    assert_eq!(d.header("content-type"), Some("application/json"));
    let id = d.webhook_id.as_deref().expect("webhook-id");
    assert!(id.starts_with("evt_"), "webhook-id is the event id: {id}");
    assert_eq!(d.event_id.as_deref(), Some(id), "the body's id is the webhook-id");
    assert_eq!(d.header("x-tollgate-event"), d.event_type.as_deref());
    let ts = d.timestamp.expect("an integer webhook-timestamp");
    assert!((ts - unix_now()).abs() <= 300, "webhook-timestamp {ts} is now (Standard Webhooks' 5-minute window)");
    let sig = d.header("webhook-signature").unwrap();
    assert!(sig.starts_with("v1,") && !sig.contains(' '), "one v1 signature outside a rotation: {sig}");
    let tollgate = d.header("x-tollgate-signature").unwrap();
    assert!(tollgate.starts_with("sha256=") && tollgate.len() == 7 + 64, "{tollgate}");
    let fields: BTreeSet<&str> = d.json.as_object().expect("a JSON object body").keys().map(String::as_str).collect();
    assert_eq!(fields, BTreeSet::from(["id", "type", "timestamp", "workspace", "data"]), "{}", d.json);
    assert_eq!(d.json["workspace"], workspace);
    let at = s(&d.json["timestamp"]);
    assert!(chrono::DateTime::parse_from_rfc3339(&at).is_ok(), "timestamp is RFC 3339: {at}");
    assert!(d.json["data"].is_object(), "{}", d.json);
}

/// Asserts the Python library verifies every pair.
fn python_verifies(pairs: &[(&str, &Delivery)]) {
    let Some((_, out)) = receiver::verify_with_python(pairs) else { return };
    let expected: Vec<String> = pairs.iter().map(|(_, d)| format!("ok {}", d.webhook_id.as_deref().unwrap())).collect();
    assert_eq!(out, expected, "standardwebhooks verifies every delivery");
}

/// A chat answer (non-stream) with text and two tool calls. OpenAI's own
/// answers carry no `index` in a message's tool calls; some providers do
/// (`with_index`).
fn tool_calls_answer(with_index: bool) -> Reply {
    let call = |index: u32, id: &str, name: &str| {
        let mut call = json!({"id": id, "type": "function", "function": {"name": name, "arguments": "{}"}});
        if with_index {
            call["index"] = json!(index);
        }
        call
    };
    let message = json!({"role": "assistant", "content": "Let me check.",
                         "tool_calls": [call(0, "call_1", "get_weather"), call(1, "call_2", "send_email")]});
    let body = json!({"id": "chatcmpl-tools", "object": "chat.completion", "created": 1_700_000_000,
        "model": AGENT_UPSTREAM_MODEL, "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                  "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}});
    Reply::status(200, body.to_string())
}

/// A streamed chat answer whose tool calls arrive as deltas (id and name
/// first, arguments after, the second call in a later chunk).
fn tool_calls_stream() -> Reply {
    let chunk = |delta: Value, finish: Value| {
        let bytes =
            event(&chat_chunk(AGENT_UPSTREAM_MODEL, json!([{"index": 0, "delta": delta, "finish_reason": finish}])));
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let start = |index: u32, id: &str, name: &str| json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]});
    let args = |index: u32| json!({"tool_calls": [{"index": index, "function": {"arguments": "{\"q\":1}"}}]});
    let mut first = start(0, "call_a", "lookup");
    first["role"] = json!("assistant");
    let body = [
        chunk(first, Value::Null),
        chunk(args(0), Value::Null),
        chunk(start(1, "call_b", "send"), Value::Null),
        chunk(args(1), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    Reply::Status { status: 200, headers: vec![("content-type", "text/event-stream".into())], body }
}

/// A workspace `acme` on `plan` with a `full` key: (key id, key).
async fn acme(env: &Env, plan: &str) -> (String, String) {
    env.workspace("acme", plan).await;
    env.key("acme", Scope::Full).await
}

// ---------------------------------------------------------------------------
// 1. Every event type, both signatures, the stock library
// ---------------------------------------------------------------------------

async fn every_event_type_arrives_signed_twice(backend: Backend) {
    // `small`: 1 credit; `metered` costs a quarter: low after the third call
    // (below 50 %), exhausted after the fourth.
    let tune = Tune::default().events("low_credits_percent", 50);
    let Some(env) = Env::start(backend, "every_type", tune).await else { return };
    let (key_id, key) = acme(&env, "small").await;
    let secret = new_secret();
    let all = Receiver::start(&secret).await;
    let hook = env.register(&key, &all.url("/all"), &["*"], &secret).await;
    let hook_id = s(&hook["id"]);
    assert!(hook_id.starts_with("wh_"), "{hook}");
    assert_eq!(hook["secret"], secret.as_str(), "the secret given is the secret kept");
    assert_eq!((&hook["status"], &hook["events"]), (&json!("enabled"), &json!(["*"])));

    // Agent calls answered with two tool calls: whole (see also
    // `tool_calls_without_an_index_are_each_invoked`), then as stream deltas.
    env.mock.push(tool_calls_answer(true));
    env.chat(&key, &chat_body(AGENT, "weather?"), "r-tools").await.ok();
    env.mock.push(tool_calls_stream());
    env.chat_stream(&key, &chat_stream_body(AGENT, "look it up"), "r-tools-stream").await;

    // Metered calls: plain and streamed answers, then the balance runs down.
    env.chat_ok(&key, METERED, "r-m1").await;
    let mut streamed = chat_stream_body(METERED, "hi");
    streamed["stream_options"] = json!({"include_usage": true});
    env.chat_stream(&key, &streamed, "r-m2").await;
    env.chat_ok(&key, METERED, "r-m3").await;
    let low = all.wait_for_event(|d| is_type(d, "credits.low")).await;
    env.chat_ok(&key, METERED, "r-m4").await;
    let exhausted = all.wait_for_event(|d| is_type(d, "credits.exhausted")).await;
    let refused = env.chat(&key, &chat_body(METERED, "hi"), "r-m5").await;
    assert_eq!(refused.status, 429, "no credit left: {}", refused.text);

    // Keys: created and revoked through the API; a second webhook that
    // answers 410 to key.created is disabled, and the first hears of it.
    let gone_secret = new_secret();
    let gone = Receiver::start(&gone_secret).await;
    gone.respond_default(410);
    let doomed = env.register(&key, &gone.url("/gone"), &["key.created"], &gone_secret).await;
    let doomed_id = s(&doomed["id"]);
    let created =
        env.post(&env.admin, "/v1/keys", &json!({"name": "temp", "workspace": "acme", "scope": "chat"})).await;
    let (temp_id, temp_key) = (s(&created.expect(201)["id"]), s(&created.body["key"]));
    env.delete(&env.admin, &format!("/v1/keys/{temp_id}")).await.ok();

    // Agents: created, changed and deleted through the API.
    let agent = json!({"id": "hooked", "provider": "up", "upstream_model": "hooked-up"});
    env.post(&key, "/v1/agents", &agent).await.expect(201);
    let change = env.http.patch(env.url("/v1/agents/hooked")).bearer_auth(&key).json(&json!({"instructions": "x"}));
    env.send(change).await.expect(200);
    env.delete(&key, "/v1/agents/hooked").await.expect(200);

    // Scheduled work (seed 001): a mission's run, a reminder run by hand (its
    // scheduled_trigger too), a task the upstream refuses, a task that cannot
    // be paid now the balance is spent, and a note written by hand.
    let mission = env.post(&key, "/v1/missions", &json!({"name": "m", "agent": AGENT, "steps": ["one"]})).await;
    let mission_id = s(&mission.expect(201)["id"]);
    env.post(&key, &format!("/v1/missions/{mission_id}/run"), &json!({})).await.expect(202);
    all.wait_for_event(|d| is_type(d, "mission.completed")).await;
    let reminder = json!({"kind": "reminder", "cron": "0 0 1 1 *", "text": "wake up"});
    let reminder = env.post(&key, "/v1/schedules", &reminder).await;
    let reminder_id = s(&reminder.expect(201)["id"]);
    env.post(&key, &format!("/v1/schedules/{reminder_id}/run"), &json!({})).await.expect(202);
    all.wait_for_event(|d| is_type(d, "reminder_triggered")).await;
    env.mock.push(Reply::status(400, r#"{"error":{"message":"no","type":"invalid_request_error"}}"#));
    env.post(&key, "/v1/tasks", &json!({"prompt": "refused", "agent": AGENT})).await.expect(202);
    all.wait_for_event(|d| is_type(d, "task_failed")).await;
    env.post(&key, "/v1/tasks", &json!({"prompt": "unpaid", "agent": METERED})).await.expect(202);
    let skipped = all.wait_for_event(|d| is_type(d, "task_skipped")).await;
    assert_eq!(skipped.json["data"]["reason"], "insufficient_quota", "{:?}", skipped.json);
    env.post(&key, "/v1/notes", &json!({"content": "by hand"})).await.expect(201);

    // A test event to the first webhook only.
    let test = env.post(&key, &format!("/v1/webhooks/{hook_id}/test"), &json!({})).await;
    let test_id = s(&test.expect(202)["event_id"]);
    assert_eq!((&test.body["webhook_id"], &test.body["status"]), (&json!(hook_id), &json!("queued")));

    all.wait_for_event(|d| is_type(d, "webhook.test")).await;
    all.wait_for_event(|d| is_type(d, "key.revoked")).await;
    all.wait_for_event(|d| is_type(d, "agent.deleted")).await;
    all.wait_for_event(|d| is_type(d, "webhook.disabled")).await;
    env.wait_queue_empty().await;
    let seen = all.deliveries();

    // Every delivery: both signatures and the envelope; at least one per type.
    for d in &seen {
        assert_envelope(d, "acme");
    }
    all.assert_all_valid();
    gone.assert_all_valid();
    let mut samples = Vec::new();
    for kind in EventType::ALL {
        let d = seen.iter().find(|d| is_type(d, kind.as_str()));
        samples.push(d.unwrap_or_else(|| panic!("no {} delivered", kind.as_str())));
    }

    // request.completed: the call's facts.
    let c = &one(&seen, "request.completed", "r-m1").json["data"];
    assert_eq!((&c["key_id"], &c["agent"], &c["is_agent"]), (&json!(key_id), &json!(METERED), &json!(false)), "{c}");
    assert_eq!(
        (&c["upstream_model"], &c["status"], &c["streamed"]),
        (&json!(METERED_UPSTREAM), &json!(200), &json!(false))
    );
    assert_eq!((&c["input_tokens"], &c["output_tokens"]), (&json!(PROMPT_TOKENS), &json!(COMPLETION_TOKENS)), "{c}");
    assert_eq!((&c["credits"], &c["outcome"]), (&json!(METERED_PRICE), &json!("completed")), "{c}");
    assert!(c["latency_ms"].is_u64(), "{c}");
    let c = &one(&seen, "request.completed", "r-m2").json["data"];
    assert_eq!(
        (&c["streamed"], &c["credits"], &c["status"]),
        (&json!(true), &json!(METERED_PRICE), &json!(200)),
        "{c}"
    );
    assert_eq!((&c["input_tokens"], &c["output_tokens"]), (&json!(PROMPT_TOKENS), &json!(COMPLETION_TOKENS)), "{c}");
    let c = &one(&seen, "request.completed", "r-tools").json["data"];
    assert_eq!(
        (&c["agent"], &c["is_agent"], &c["upstream_model"]),
        (&json!(AGENT), &json!(true), &json!(AGENT_UPSTREAM_MODEL))
    );
    assert_eq!(one(&seen, "request.completed", "r-tools-stream").json["data"]["streamed"], true);

    // agent.execution.*: around agent calls only.
    for rid in ["r-tools", "r-tools-stream"] {
        let started = &one(&seen, "agent.execution.started", rid).json["data"];
        assert_eq!((&started["agent_id"], &started["key_id"]), (&json!(AGENT), &json!(key_id)), "{started}");
        let done = &one(&seen, "agent.execution.completed", rid).json["data"];
        assert_eq!((&done["agent_id"], &done["status"]), (&json!(AGENT), &json!("success")), "{done}");
        assert!(done["duration_ms"].is_u64(), "{done}");
    }
    for rid in ["r-m1", "r-m2"] {
        assert!(about(&seen, "agent.execution.started", rid).is_empty(), "a model alias is no agent");
        assert!(about(&seen, "agent.execution.completed", rid).is_empty(), "a model alias is no agent");
    }

    // tool.invoked: one per tool call, whole answer and deltas alike.
    let tools = |rid: &str| -> BTreeSet<(String, String)> {
        let list = about(&seen, "tool.invoked", rid);
        list.iter().map(|d| (s(&d.json["data"]["tool_call_id"]), s(&d.json["data"]["tool_name"]))).collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(tools("r-tools"), BTreeSet::from([pair("call_1", "get_weather"), pair("call_2", "send_email")]));
    assert_eq!(tools("r-tools-stream"), BTreeSet::from([pair("call_a", "lookup"), pair("call_b", "send")]));
    assert_eq!(about(&seen, "tool.invoked", "r-tools").len(), 2);
    assert_eq!(about(&seen, "tool.invoked", "r-tools-stream").len(), 2);
    assert!(about(&seen, "tool.invoked", "r-m1").is_empty());

    // ai_message: the answer's text, whole and streamed.
    for (rid, streamed) in [("r-m1", false), ("r-m2", true)] {
        let m = &one(&seen, "ai_message", rid).json["data"];
        assert_eq!(
            (&m["content"], &m["role"], &m["streamed"]),
            (&json!("Hello from upstream"), &json!("assistant"), &json!(streamed))
        );
        assert_eq!(
            (&m["finish_reason"], &m["key_id"], &m["truncated"]),
            (&json!("stop"), &json!(key_id), &json!(false))
        );
    }
    let m = &one(&seen, "ai_message", "r-tools").json["data"];
    assert_eq!((&m["content"], &m["finish_reason"]), (&json!("Let me check."), &json!("tool_calls")), "{m}");

    // credits.low, then credits.exhausted, each once.
    let (l, e) = (&low.json["data"], &exhausted.json["data"]);
    assert_eq!(
        (&l["type"], &l["available"], &l["threshold"]),
        (&json!("message"), &json!(CREDIT - 3 * METERED_PRICE), &json!(CREDIT / 2)),
        "{l}"
    );
    assert_eq!((&l["plan_allowance"], &l["workspace"]), (&json!(CREDIT), &json!("acme")), "{l}");
    assert_eq!((&e["type"], &e["available"]), (&json!("message"), &json!(0)), "{e}");
    assert_eq!(seen.iter().filter(|d| is_type(d, "credits.low")).count(), 1);
    assert_eq!(seen.iter().filter(|d| is_type(d, "credits.exhausted")).count(), 1);

    // key.created / key.revoked: the key's id, never the key.
    let k = seen.iter().find(|d| is_type(d, "key.created")).unwrap();
    assert_eq!((&k.json["data"]["key_id"], &k.json["data"]["scope"]), (&json!(temp_id), &json!("chat")), "{}", k.json);
    assert!(!String::from_utf8_lossy(&k.body).contains(&temp_key), "the key itself is never sent");
    let r = seen.iter().find(|d| is_type(d, "key.revoked")).unwrap();
    assert_eq!(r.json["data"]["key_id"], temp_id.as_str(), "{}", r.json);

    // agent.*: the agent's id and public fields.
    let a = &seen.iter().find(|d| is_type(d, "agent.updated")).unwrap().json["data"];
    assert_eq!(
        (&a["agent_id"], &a["agent"]["instructions"], &a["by_key_id"]),
        (&json!("hooked"), &json!("x"), &json!(key_id)),
        "{a}"
    );

    // webhook.disabled about the 410 endpoint; webhook.test with its event id.
    let w = &seen.iter().find(|d| is_type(d, "webhook.disabled")).unwrap().json["data"];
    assert_eq!((&w["webhook_id"], &w["last_status"]), (&json!(doomed_id), &json!(410)), "{w}");
    assert_eq!(w["url"], gone.url("/gone"), "{w}");
    assert_eq!(gone.count(), 1, "a disabled endpoint gets nothing more");
    let t = seen.iter().find(|d| is_type(d, "webhook.test")).unwrap();
    assert_eq!((t.webhook_id.as_deref(), &t.json["data"]["webhook_id"]), (Some(test_id.as_str()), &json!(hook_id)));

    // The "*" webhook got exactly what the log holds, plus the test event
    // (sent to one webhook, not logged).
    let logged: BTreeSet<String> = ids(&env.all_events(&key, "").await).into_iter().collect();
    let mut delivered = all.distinct_event_ids();
    assert!(delivered.remove(&test_id));
    assert_eq!(delivered, logged, "every logged event was delivered to the \"*\" webhook, and nothing else");

    // The stock library agrees, on one delivery of every type and on the 410.
    let mut pairs: Vec<(&str, &Delivery)> = samples.into_iter().map(|d| (secret.as_str(), d)).collect();
    let gone_seen = gone.deliveries();
    pairs.push((gone_secret.as_str(), &gone_seen[0]));
    python_verifies(&pairs);
}

/// Regression (found by this file): tool calls are slotted by their `index`,
/// which only stream deltas carry; a whole answer's `message.tool_calls`
/// (OpenAI's shape) has none and must give one `tool.invoked` per call, not
/// one with the last id and the names concatenated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_without_an_index_are_each_invoked() {
    let env = Env::start(Backend::Embedded, "tool_index", Tune::default()).await.expect("embedded always runs");
    let (_, key) = acme(&env, "default").await;
    env.mock.push(tool_calls_answer(false));
    env.chat(&key, &chat_body(AGENT, "weather?"), "r-tools").await.ok();
    // Emitted last for the call: everything before it is logged by then.
    env.wait_events(&key, "type=agent.execution.completed", 1).await;
    let tools = env.all_events(&key, "type=tool.invoked").await;
    let got: BTreeSet<(String, String)> =
        tools.iter().map(|e| (s(&e["data"]["tool_call_id"]), s(&e["data"]["tool_name"]))).collect();
    let expected = [("call_1", "get_weather"), ("call_2", "send_email")].map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(got, BTreeSet::from(expected), "one tool.invoked per tool call of a whole answer");
}

// ---------------------------------------------------------------------------
// 2. Retries: one event id, one 2xx, every attempt listed
// ---------------------------------------------------------------------------

async fn failed_attempts_are_retried_under_one_event_id(backend: Backend) {
    let tune = Tune::default().webhooks("timeout_ms", 2000).webhooks("claim_idle_ms", 4000);
    let Some(env) = Env::start(backend, "retries", tune).await else { return };
    let (_, key) = acme(&env, "default").await;
    let secret = new_secret();
    let flaky = Receiver::start(&secret).await;
    let script =
        [Behaviour::Status(500), Behaviour::Status(503), Behaviour::retry_after(429, 1), Behaviour::Status(204)];
    flaky.script(script);
    let broken = Receiver::start(&secret).await;
    broken.respond_default(503);
    // No answer within the timeout, then a dropped connection: both retried.
    let mute = Receiver::start(&secret).await;
    mute.script([Behaviour::Hang, Behaviour::Close]);
    let flaky_id = s(&env.register(&key, &flaky.url("/flaky"), &["request.completed"], &secret).await["id"]);
    let broken_id = s(&env.register(&key, &broken.url("/broken"), &["request.completed"], &secret).await["id"]);
    let mute_id = s(&env.register(&key, &mute.url("/mute"), &["request.completed"], &secret).await["id"]);

    env.chat_ok(&key, ALIAS, "r-retry").await;
    let seen = flaky.wait_until("a 2xx answer", |d| d.iter().any(Delivery::succeeded)).await;
    let attempts = env.wait_attempts(&key, &flaky_id, 4).await;
    env.wait_queue_empty().await;

    // The receiver: four attempts of one event, the same webhook-id each time,
    // one 2xx (the last), all signed.
    assert_eq!(flaky.count(), 4, "3 failures then one success, and nothing after: {seen:#?}");
    assert_eq!(flaky.distinct_webhook_ids().len(), 1, "the same webhook-id on every attempt");
    assert_eq!(flaky.distinct_event_ids().len(), 1);
    assert_eq!(flaky.success_count(), 1);
    assert!(seen[3].succeeded());
    flaky.assert_all_valid();
    assert!(seen.windows(2).all(|w| w[0].body == w[1].body), "every attempt sends the same bytes");
    // Retry-After: 1 outweighs the 200 ms the schedule says.
    let waited = seen[3].received_at - seen[2].received_at;
    assert!(waited >= Duration::from_millis(990), "Retry-After is honoured: the 4th attempt came after {waited:?}");

    // The deliveries list: newest first, each attempt's status, result and latency.
    assert_eq!(attempts.len(), 4, "{attempts:#?}");
    let event_id = seen[0].webhook_id.clone().unwrap();
    let column = |f: &str| attempts.iter().map(|a| a[f].clone()).collect::<Vec<_>>();
    assert_eq!(column("attempt"), [json!(4), json!(3), json!(2), json!(1)]);
    assert_eq!(column("status"), [json!(204), json!(429), json!(503), json!(500)]);
    assert_eq!(column("result"), [json!("delivered"), json!("retrying"), json!("retrying"), json!("retrying")]);
    for a in &attempts {
        assert_eq!((&a["event_id"], &a["event_type"]), (&json!(event_id), &json!("request.completed")), "{a}");
        assert_eq!((&a["object"], &a["error"]), (&json!("webhook.delivery_attempt"), &Value::Null), "{a}");
        assert!(a["latency_ms"].is_u64() && a["at_ms"].is_i64() && a["timestamp"].is_string(), "{a}");
    }
    assert!(attempts.windows(2).all(|w| w[0]["at_ms"].as_i64() >= w[1]["at_ms"].as_i64()), "newest first");
    let two = env.get(&key, &format!("/v1/webhooks/{flaky_id}/deliveries?limit=2")).await;
    assert_eq!(two.ok()["data"].as_array().unwrap()[..], attempts[..2]);
    env.get(&key, &format!("/v1/webhooks/{flaky_id}/deliveries?limit=0")).await.invalid("limit");

    // An endpoint that always fails is given up after the schedule (1 + 3
    // attempts), and stays enabled (100 failures would disable it).
    let attempts = env.wait_attempts(&key, &broken_id, 4).await;
    let results: Vec<_> = attempts.iter().map(|a| s(&a["result"])).collect();
    assert_eq!(results, ["failed", "retrying", "retrying", "retrying"]);
    assert_eq!(broken.count(), 4);
    assert_eq!(broken.distinct_webhook_ids(), flaky.distinct_webhook_ids(), "one event, one id for every endpoint");
    assert_eq!(env.webhook(&key, &broken_id).await["status"], "enabled");

    // Timeouts and network errors are retried; no status, an error instead.
    let attempts = env.wait_attempts(&key, &mute_id, 3).await;
    let column = |f: &str| attempts.iter().map(|a| a[f].clone()).collect::<Vec<_>>();
    assert_eq!(column("result"), [json!("delivered"), json!("retrying"), json!("retrying")]);
    assert_eq!(column("status"), [json!(200), Value::Null, Value::Null]);
    assert!(s(&attempts[2]["error"]).contains("no answer within 2000 ms"), "{attempts:#?}");
    assert!(attempts[1]["error"].as_str().is_some_and(|e| !e.is_empty()), "{attempts:#?}");
    assert_eq!((mute.count(), mute.distinct_webhook_ids()), (3, flaky.distinct_webhook_ids()));
}

/// A delivery waiting for its retry when the log prunes its event (embedded:
/// the delivery refers to the logged event rather than keeping a copy) still
/// sends the event's exact bytes.
async fn a_delivery_outlives_its_event_in_the_log(backend: Backend) {
    let Some(env) = Env::start(backend, "outlives", Tune::default()).await else { return };
    let (_, key) = acme(&env, "default").await;
    let secret = new_secret();
    let later = Receiver::start(&secret).await;
    // Long enough a wait for the pruning below to come first.
    later.script([Behaviour::retry_after(503, 2), Behaviour::Status(204)]);
    let id = s(&env.register(&key, &later.url("/later"), &["request.completed"], &secret).await["id"]);

    env.chat_ok(&key, ALIAS, "r-outlives").await;
    let attempts = env.wait_attempts(&key, &id, 1).await;
    assert_eq!(attempts[0]["result"], "retrying", "{attempts:#?}");
    // Everything in the log is older than the end of time.
    let deleted = env.events.log.prune(i64::MAX, 1).await.expect("prune");
    if backend == Backend::Embedded {
        assert!(deleted >= 1, "the event was pruned while its delivery waited");
        assert!(env.all_events(&key, "").await.is_empty());
    }
    let seen = later.wait_until("the retry's 2xx", |d| d.iter().any(Delivery::succeeded)).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, seen[1].body, "the retry sends the same bytes");
    assert_eq!(seen[1].event_type.as_deref(), Some("request.completed"));
    assert!(seen[1].json["data"].is_object(), "the whole event: {}", seen[1].json);
    later.assert_all_valid();
    env.wait_queue_empty().await;
}

/// Regression (found by this file): `Retry-After` has two forms, delay-seconds
/// and an HTTP-date (RFC 9110 §10.2.3); the date must be honoured too, not
/// only the schedule (here 50 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_date_is_honoured() {
    let env = Env::start(Backend::Embedded, "retry_after_date", Tune::default()).await.expect("embedded always runs");
    let (_, key) = acme(&env, "default").await;
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    let date = chrono::DateTime::from_timestamp(unix_now() + 3, 0).unwrap().format("%a, %d %b %Y %H:%M:%S GMT");
    receiver.script([Behaviour::StatusWith(503, vec![("retry-after".into(), date.to_string())])]);
    env.register(&key, &receiver.url("/later"), &["request.completed"], &secret).await;
    env.chat_ok(&key, ALIAS, "r-1").await;
    let seen = receiver.wait_for(2).await;
    let waited = seen[1].received_at - seen[0].received_at;
    assert!(waited >= Duration::from_millis(1500), "the retry waits for the date ({date}): it came after {waited:?}");
}

// ---------------------------------------------------------------------------
// 3. A hung receiver holds only its own slots
// ---------------------------------------------------------------------------

async fn a_hung_receiver_does_not_delay_other_endpoints(backend: Backend) {
    // A timeout far beyond the test: the hung attempts stay hung throughout.
    let tune = Tune::default()
        .webhooks("timeout_ms", 120_000)
        .webhooks("claim_idle_ms", 240_000)
        .webhooks("per_endpoint_concurrency", 2);
    let Some(env) = Env::start(backend, "hung", tune).await else { return };
    let (_, key) = acme(&env, "default").await;
    let secret = new_secret();
    let hung = Receiver::start(&secret).await;
    hung.hang_all();
    let fine = Receiver::start(&secret).await;
    let hung_id = s(&env.register(&key, &hung.url("/hung"), &["request.completed"], &secret).await["id"]);
    env.register(&key, &fine.url("/fine"), &["request.completed"], &secret).await;

    const CALLS: usize = 20;
    let calls = (0..CALLS).map(|i| {
        let env = &env;
        let key = key.as_str();
        async move { env.chat_ok(key, ALIAS, &format!("r-{i}")).await }
    });
    futures_util::future::join_all(calls).await;

    let got = fine.wait_until("every event at the healthy endpoint", |d| {
        d.iter().filter_map(Delivery::key).collect::<BTreeSet<_>>().len() >= CALLS
    });
    got.await;
    hung.wait_for(2).await;
    // Checked while the hung endpoint still holds its attempts.
    assert_eq!(fine.distinct_event_ids().len(), CALLS);
    fine.assert_all_valid();
    assert_eq!(hung.count(), 2, "the hung endpoint holds exactly its 2 slots, nothing more is sent to it");
    assert_eq!(hung.success_count(), 0);
    assert!(env.attempts(&key, &hung_id).await.is_empty(), "no attempt at the hung endpoint has finished");
    assert_eq!(env.webhook(&key, &hung_id).await["status"], "enabled");
}

// ---------------------------------------------------------------------------
// 4. 410 Gone disables
// ---------------------------------------------------------------------------

async fn gone_disables_the_endpoint(backend: Backend) {
    let Some(env) = Env::start(backend, "gone", Tune::default()).await else { return };
    let (_, key) = acme(&env, "default").await;
    let secret = new_secret();
    let gone = Receiver::start(&secret).await;
    gone.respond_default(410);
    let monitor = Receiver::start(&secret).await;
    let gone_id = s(&env.register(&key, &gone.url("/gone"), &["request.completed"], &secret).await["id"]);
    env.register(&key, &monitor.url("/monitor"), &["request.completed", "webhook.disabled"], &secret).await;

    env.chat_ok(&key, ALIAS, "r-1").await;
    let view = env.wait_webhook_status(&key, &gone_id, "disabled").await;
    assert!(view["disabled_at"].is_i64(), "{view}");
    assert!(s(&view["disabled_reason"]).contains("410"), "{view}");
    let disabled = monitor.wait_for_event(|d| is_type(d, "webhook.disabled")).await;
    let data = &disabled.json["data"];
    assert_eq!((&data["webhook_id"], &data["last_status"]), (&json!(gone_id), &json!(410)), "{data}");
    assert!(disabled.valid());

    let attempts = env.attempts(&key, &gone_id).await;
    assert_eq!(attempts.len(), 1, "410 is not retried: {attempts:#?}");
    assert_eq!((&attempts[0]["status"], &attempts[0]["result"]), (&json!(410), &json!("disabled")));

    // Later events reach the monitor only.
    env.chat_ok(&key, ALIAS, "r-2").await;
    env.chat_ok(&key, ALIAS, "r-3").await;
    monitor
        .wait_until("the later events", |d| {
            ["r-2", "r-3"]
                .iter()
                .all(|rid| d.iter().any(|d| is_type(d, "request.completed") && request_of(d) == Some(rid)))
        })
        .await;
    env.wait_queue_empty().await;
    assert_eq!(gone.count(), 1, "a disabled endpoint gets no further deliveries");
    assert_eq!(env.attempts(&key, &gone_id).await.len(), 1);
    let listed = env.get(&key, "/v1/webhooks").await;
    let entry = listed.ok()["data"].as_array().unwrap().iter().find(|w| w["id"] == gone_id.as_str()).cloned();
    assert_eq!(entry.expect("still listed")["status"], "disabled");
    let logged = env.all_events(&key, "type=webhook.disabled").await;
    assert_eq!(logged.len(), 1, "webhook.disabled is logged once: {logged:#?}");
    assert_eq!(monitor.deliveries().iter().filter(|d| is_type(d, "webhook.disabled")).count(), 1);
}

// ---------------------------------------------------------------------------
// 5. A run of failures disables
// ---------------------------------------------------------------------------

async fn a_run_of_failures_disables_the_endpoint(backend: Backend) {
    let tune = Tune::default().webhooks("disable_after_failures", 3);
    let Some(env) = Env::start(backend, "failures", tune).await else { return };
    let (_, key) = acme(&env, "default").await;
    let secret = new_secret();
    let failing = Receiver::start(&secret).await;
    // 400 is not retried: one attempt per event. A success resets the run.
    failing.script([Behaviour::Status(400), Behaviour::Status(400), Behaviour::Status(200)]);
    failing.respond_default(400);
    let monitor = Receiver::start(&secret).await;
    let id = s(&env.register(&key, &failing.url("/failing"), &["request.completed"], &secret).await["id"]);
    env.register(&key, &monitor.url("/monitor"), &["webhook.disabled"], &secret).await;

    // 400, 400, 200, 400, 400: never three failures in a row.
    for n in 1..=5 {
        env.chat_ok(&key, ALIAS, &format!("r-{n}")).await;
        env.wait_attempts(&key, &id, n).await;
        assert_eq!(env.webhook(&key, &id).await["status"], "enabled", "after {n} attempts");
    }
    // The third failure in a row disables it.
    env.chat_ok(&key, ALIAS, "r-6").await;
    let view = env.wait_webhook_status(&key, &id, "disabled").await;
    assert!(s(&view["disabled_reason"]).contains("consecutive"), "{view}");
    let disabled = monitor.wait_for_event(|d| is_type(d, "webhook.disabled")).await;
    assert_eq!(
        (&disabled.json["data"]["webhook_id"], &disabled.json["data"]["last_status"]),
        (&json!(id), &json!(400))
    );

    let attempts = env.wait_attempts(&key, &id, 6).await;
    let column = |f: &str| attempts.iter().map(|a| a[f].clone()).collect::<Vec<_>>();
    assert_eq!(column("status"), [400, 400, 400, 200, 400, 400].map(|s| json!(s)));
    let results = ["disabled", "failed", "failed", "delivered", "failed", "failed"];
    assert_eq!(column("result"), results.map(|s| json!(s)));

    env.chat_ok(&key, ALIAS, "r-7").await;
    env.wait_events(&key, "type=request.completed", 7).await;
    env.wait_queue_empty().await;
    assert_eq!(failing.count(), 6, "nothing is sent to a disabled endpoint");
}

// ---------------------------------------------------------------------------
// 6. SSRF
// ---------------------------------------------------------------------------

async fn private_targets_are_refused_at_registration_and_delivery(backend: Backend) {
    let tune = Tune::default().webhooks("allow_private_targets", false);
    let Some(env) = Env::start(backend, "ssrf", tune).await else { return };
    let (_, key) = acme(&env, "default").await;
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    let port = receiver.addr().port();

    let refused = [
        receiver.url("/hook"),
        format!("http://localhost:{port}/hook"),
        "http://[::1]/hook".to_owned(),
        "http://[::ffff:127.0.0.1]/hook".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://192.168.1.10/hook".to_owned(),
        "http://172.16.0.1/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://0.0.0.0/hook".to_owned(),
        // Spellings of 127.0.0.1 that only the resolver understands.
        "http://127.1/hook".to_owned(),
        "http://2130706433/hook".to_owned(),
        "http://0x7f.0.0.1/hook".to_owned(),
        "http://100.64.0.1/hook".to_owned(),
        "https://[fd00::1]/hook".to_owned(),
        "ftp://example.com/hook".to_owned(),
        "not a url".to_owned(),
        "example.com/hook".to_owned(),
        "http://user:pass@93.184.216.34/hook".to_owned(),
        "http:///hook".to_owned(),
    ];
    for url in &refused {
        let answer = env.post(&key, "/v1/webhooks", &json!({"url": url, "events": ["*"]})).await;
        answer.invalid("url");
        assert!(answer.text.contains("webhook URL"), "{url}: {}", answer.text);
    }
    assert!(env.get(&key, "/v1/webhooks").await.ok()["data"].as_array().unwrap().is_empty());
    // A public address is accepted (no DNS needed for a literal).
    let public = env.post(&key, "/v1/webhooks", &json!({"url": "http://93.184.216.34/hook"})).await;
    env.delete(&key, &format!("/v1/webhooks/{}", s(&public.expect(201)["id"]))).await.ok();

    // Written straight into the store, past the registration check: refused
    // at delivery, by address and by name.
    let direct = |id: &str, url: String| Webhook {
        id: id.to_owned(),
        workspace: "acme".into(),
        url,
        events: vec!["request.completed".into()],
        description: None,
        secret: Secret::new(secret.clone()),
        previous_secret: None,
        previous_until_ms: None,
        created_at: unix_now(),
        disabled_at: None,
        disabled_reason: None,
        failures: 0,
    };
    let by_address = direct("wh_direct_address", receiver.url("/address"));
    let by_name = direct("wh_direct_name", format!("http://localhost:{port}/name"));
    for hook in [&by_address, &by_name] {
        env.events.webhooks.insert_webhook(hook, 20).await.expect("the store takes the webhook");
    }
    env.chat_ok(&key, ALIAS, "r-1").await;
    for hook in [&by_address, &by_name] {
        // Refusals are retried like network errors, then given up.
        let attempts = env.wait_attempts(&key, &hook.id, 4).await;
        assert_eq!(s(&attempts[0]["result"]), "failed", "{attempts:#?}");
        for a in &attempts {
            assert_eq!(a["status"], Value::Null, "{a}");
            let error = s(&a["error"]);
            assert!(error.contains("refused") && error.contains("private"), "{}: {error}", hook.id);
        }
    }
    env.wait_queue_empty().await;
    assert_eq!(receiver.count(), 0, "nothing reached the loopback receiver");
}

/// Issue 10: a name that does not resolve and a private target get the same
/// answer, byte for byte, with no host or address in it; otherwise a tenant
/// could map the operator's internal names by registering guesses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_and_private_targets_get_one_answer() {
    let tune = Tune::default().webhooks("allow_private_targets", false);
    let env = Env::start(Backend::Embedded, "ssrf_alike", tune).await.expect("embedded always runs");
    let (_, key) = acme(&env, "default").await;
    let urls = [
        "http://nonexistent.invalid/hook",
        "https://no-such-host.invalid:8443/x",
        "http://localhost/hook",
        "http://10.0.0.1/hook",
        "http://[::1]:9/hook",
    ];
    let mut answers = Vec::new();
    for url in urls {
        let answer = env.post(&key, "/v1/webhooks", &json!({"url": url, "events": ["*"]})).await;
        answer.invalid("url");
        for part in ["nonexistent", "no-such-host", "localhost", "10.0.0.1", "::1", "127.0.0.1"] {
            assert!(!answer.text.contains(part), "{url}: the answer names no host or address: {}", answer.text);
        }
        answers.push((url, answer.status, answer.text));
    }
    let (first_url, status, text) = &answers[0];
    for (url, other_status, other_text) in &answers[1..] {
        assert_eq!((other_status, other_text), (status, text), "{url} is answered as {first_url} is");
    }
}

// ---------------------------------------------------------------------------
// 7. Integration credits
// ---------------------------------------------------------------------------

async fn deliveries_wait_for_integration_credits(backend: Backend) {
    // `integ`: 1 integration credit; a delivery costs half of it.
    const PRICE: u64 = CREDIT / 2;
    let tune = Tune::default().webhooks("price", PRICE).webhooks("credit_wait_ms", 200);
    let Some(env) = Env::start(backend, "integration", tune).await else { return };
    env.workspace("integ", "integ").await;
    let (_, key) = env.key("integ", Scope::Full).await;
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    let hook_id = s(&env.register(&key, &receiver.url("/paid"), &["key.created"], &secret).await["id"]);

    for n in 1..=3 {
        let body = json!({"name": format!("k{n}"), "workspace": "integ", "scope": "chat"});
        env.post(&env.admin, "/v1/keys", &body).await.expect(201);
    }
    receiver.wait_for(2).await;
    // The balance is spent: the watcher says so (integration, at zero)...
    let exhausted = env.wait_events(&key, "type=credits.exhausted", 1).await;
    assert_eq!((&exhausted[0]["data"]["type"], &exhausted[0]["data"]["available"]), (&json!("integration"), &json!(0)));
    let env = &env;
    eventually("the two deliveries settled", || async move { (integration(env).await["reserved"] == 0).then_some(()) })
        .await;
    // ...and the third waits: neither delivered nor failed, still queued.
    assert_eq!(receiver.count(), 2);
    let attempts = env.attempts(&key, &hook_id).await;
    assert_eq!(attempts.iter().map(|a| s(&a["result"])).collect::<Vec<_>>(), ["delivered", "delivered"]);
    assert_eq!(env.events.queue.pending().await.unwrap(), 1, "the third delivery is still queued");
    assert_eq!(integration(env).await["available"], 0);

    // A top-up: it arrives.
    let topup = json!({"workspace": "integ", "type": "integration", "amount": PRICE});
    env.post(&env.admin, "/v1/credits/topup", &topup).await.ok();
    receiver.wait_for(3).await;
    env.wait_queue_empty().await;
    assert_eq!(receiver.distinct_event_ids().len(), 3);
    assert_eq!(receiver.count(), 3, "each delivered once");
    receiver.assert_all_valid();
    let attempts = env.wait_attempts(&key, &hook_id, 3).await;
    assert!(attempts.iter().all(|a| a["result"] == "delivered"), "{attempts:#?}");

    // Charged exactly: the plan's credit and the top-up, nothing reserved.
    let balance = eventually("the third delivery settled", || async move {
        let b = integration(env).await;
        (b["reserved"] == 0 && b["available"] == 0).then_some(b)
    })
    .await;
    assert_eq!(
        (&balance["plan_remaining"], &balance["top_up"], &balance["uncollected"]),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(balance["plan_allowance"], CREDIT, "{balance}");
}

/// The `integ` workspace's integration balance, as the admin reads it.
async fn integration(env: &Env) -> Value {
    env.get(&env.admin, "/v1/credits?workspace=integ").await.ok()["integration"].clone()
}

// ---------------------------------------------------------------------------
// 8. Secret rotation
// ---------------------------------------------------------------------------

async fn a_rotated_secret_signs_alongside_the_old_one(backend: Backend) {
    let Some(env) = Env::start(backend, "rotation", Tune::default()).await else { return };
    let (_, key) = acme(&env, "default").await;
    let old = new_secret();
    let receiver = Receiver::start(&old).await;
    let id = s(&env.register(&key, &receiver.url("/r"), &["request.completed"], &old).await["id"]);
    let deliver = |rid: &'static str| {
        let (env, key, receiver) = (&env, &key, &receiver);
        async move {
            env.chat_ok(key, ALIAS, rid).await;
            receiver.wait_for_event(|d| request_of(d) == Some(rid)).await
        }
    };
    let before = deliver("r-before").await;
    assert!(before.valid());
    assert_eq!(before.header("webhook-signature").unwrap().split(' ').count(), 1);

    let rotated = env.post_raw(&key, &format!("/v1/webhooks/{id}/rotate-secret"), "").await;
    let new = s(&rotated.ok()["secret"]);
    assert!(new.starts_with("whsec_") && new != old, "{}", rotated.text);
    let expires = rotated.body["previous_secret_expires_at"].as_i64().expect("when the old secret stops signing");
    assert!(expires > unix_now(), "a grace period: {expires}");
    let view = env.webhook(&key, &id).await;
    assert_eq!(view["previous_secret_expires_at"], expires);
    assert!(view.get("secret").is_none() && !view.to_string().contains(&new), "never shown again: {view}");

    // Both secrets sign the Standard signature; X-Tollgate-Signature the new one.
    // `standard(secret, d)` / `tollgate(secret, d)`: a receiver knowing only `secret` verifies.
    let standard = |secret: &str, d: &Delivery| verify_std(&[receiver::key_from_secret(secret)], &d.headers, &d.body);
    let tollgate =
        |secret: &str, d: &Delivery| verify_tollgate(&[receiver::key_from_secret(secret)], &d.headers, &d.body);
    let after = deliver("r-after").await;
    let sig = after.header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').filter(|e| e.starts_with("v1,")).count(), 2, "one v1 entry per live secret: {sig}");
    assert!(standard(&old, &after), "a receiver with the old secret verifies");
    assert!(!tollgate(&old, &after), "X-Tollgate-Signature is the new secret's");
    assert!(standard(&new, &after) && tollgate(&new, &after), "a receiver with the new secret verifies both");
    python_verifies(&[(old.as_str(), &after), (new.as_str(), &after)]);

    // Rotating again to a given secret: the previous one is the new, the
    // first no longer signs.
    let third = new_secret();
    let rotated = env.post(&key, &format!("/v1/webhooks/{id}/rotate-secret"), &json!({"secret": third})).await;
    assert_eq!(rotated.ok()["secret"], third.as_str());
    let last = deliver("r-last").await;
    assert!(!standard(&old, &last), "only the latest previous secret keeps signing");
    assert!(standard(&new, &last) && !tollgate(&new, &last));
    assert!(standard(&third, &last) && tollgate(&third, &last));

    let bad =
        env.post(&key, &format!("/v1/webhooks/{id}/rotate-secret"), &json!({"secret": "whsec_dG9vc2hvcnQ="})).await;
    bad.invalid("secret");
    let missing = env.post_raw(&key, "/v1/webhooks/wh_nope/rotate-secret", "").await;
    assert_eq!(missing.status, 404, "{}", missing.text);
}

// ---------------------------------------------------------------------------
// 9. Scopes and bad input
// ---------------------------------------------------------------------------

async fn webhook_api_scopes_and_bad_input(backend: Backend) {
    let tune = Tune::default().webhooks("max_per_workspace", 3);
    let Some(env) = Env::start(backend, "scopes", tune).await else { return };
    env.workspace("a", "default").await;
    env.workspace("b", "default").await;
    let (_, chat_a) = env.key("a", Scope::Chat).await;
    let (_, hooks_a) = env.key("a", Scope::Webhook).await;
    let (_, hooks_b) = env.key("b", Scope::Webhook).await;
    let url = "http://127.0.0.1:9/hook";

    // Chat keys and static config keys: no webhooks, no events.
    for k in [chat_a.as_str(), KEY] {
        assert_eq!(env.get(k, "/v1/webhooks").await.status, 403);
        assert_eq!(env.post(k, "/v1/webhooks", &json!({"url": url})).await.status, 403);
        assert_eq!(env.get(k, "/v1/events").await.status, 403);
        assert_eq!(env.get(k, "/api/v1/events").await.status, 403);
    }

    // A webhook key manages its own workspace's webhooks and reads its events.
    let secret = new_secret();
    let mine = env.register(&hooks_a, url, &["request.completed", "key.created"], &secret).await;
    let mine_id = s(&mine["id"]);
    assert_eq!((&mine["workspace"], &mine["object"], &mine["url"]), (&json!("a"), &json!("webhook"), &json!(url)));
    let generated = env.post(&hooks_a, "/v1/webhooks", &json!({"url": url, "description": "all of it"})).await;
    let generated_secret = s(&generated.expect(201)["secret"]);
    assert_eq!(generated.body["events"], json!(["*"]), "all events by default");
    assert_eq!(receiver::key_from_secret(&generated_secret).len(), 32, "{generated_secret}");
    let list = env.get(&hooks_a, "/v1/webhooks").await;
    assert_eq!(list.ok()["data"].as_array().unwrap().len(), 2);
    let one = env.get(&hooks_a, &format!("/v1/webhooks/{mine_id}")).await;
    assert_eq!(one.ok()["id"], mine_id.as_str());
    for text in [&list.text, &one.text] {
        assert!(!text.contains(&secret) && !text.contains(&generated_secret), "secrets are never listed: {text}");
        assert!(!text.contains("\"secret\""), "{text}");
    }
    env.get(&hooks_a, "/v1/events").await.ok();
    env.get(&hooks_a, &format!("/v1/webhooks/{mine_id}/deliveries")).await.ok();

    // Another workspace's webhook does not exist for b.
    assert_eq!(env.get(&hooks_b, &format!("/v1/webhooks/{mine_id}")).await.status, 404);
    assert_eq!(env.get(&hooks_b, &format!("/v1/webhooks/{mine_id}/deliveries")).await.status, 404);
    assert_eq!(env.post(&hooks_b, &format!("/v1/webhooks/{mine_id}/test"), &json!({})).await.status, 404);
    assert_eq!(env.post_raw(&hooks_b, &format!("/v1/webhooks/{mine_id}/rotate-secret"), "").await.status, 404);
    assert_eq!(env.delete(&hooks_b, &format!("/v1/webhooks/{mine_id}")).await.status, 404);
    assert!(env.get(&hooks_b, "/v1/webhooks").await.ok()["data"].as_array().unwrap().is_empty());
    assert_eq!(env.get(&hooks_b, "/v1/webhooks?workspace=a").await.status, 403);
    assert_eq!(env.get(&hooks_b, "/v1/events?workspace=a").await.status, 403);
    assert_eq!(env.post(&hooks_b, "/v1/webhooks", &json!({"url": url, "workspace": "a"})).await.status, 403);
    // An admin key may act on any workspace.
    let admins = env.get(&env.admin, "/v1/webhooks?workspace=a").await;
    assert_eq!(admins.ok()["data"].as_array().unwrap().len(), 2);
    let for_b = env.post(&env.admin, "/v1/webhooks", &json!({"url": url, "workspace": "b"})).await;
    assert_eq!(for_b.expect(201)["workspace"], "b");

    // Bad input: 400, naming the parameter where there is one.
    let create = |body: &'static str| env.post_raw(&hooks_a, "/v1/webhooks", body);
    for body in
        ["{", "[]", "", r#"{"events":["*"]}"#, r#"{"url":"http://127.0.0.1:9/","colour":"red"}"#, r#"{"url":7}"#]
    {
        let answer = create(body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert_eq!(answer.body["error"]["type"], "invalid_request_error", "{body}: {}", answer.text);
    }
    create(r#"{"url":"http://127.0.0.1:9/","events":["note.exploded"]}"#).await.invalid("events");
    create(r#"{"url":"http://127.0.0.1:9/","events":[]}"#).await.invalid("events");
    create(r#"{"url":"http://127.0.0.1:9/","secret":"whsec_dG9vc2hvcnQ="}"#).await.invalid("secret");
    create(r#"{"url":"http://127.0.0.1:9/","secret":"whsec_!!not base64!!"}"#).await.invalid("secret");
    let long = json!({"url": url, "description": "x".repeat(513)});
    env.post(&hooks_a, "/v1/webhooks", &long).await.invalid("description");
    assert_eq!(env.get(&hooks_a, "/v1/webhooks").await.ok()["data"].as_array().unwrap().len(), 2, "none was stored");

    // Seed 001's alias registers too; the workspace's limit (3) holds.
    let alias =
        env.post(&hooks_a, "/api/v1/webhooks/outgoing/register", &json!({"url": url, "events": ["ai_message"]})).await;
    let alias_id = s(&alias.expect(201)["id"]);
    assert!(alias.body["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")));
    let over = env.post(&hooks_a, "/v1/webhooks", &json!({"url": url})).await;
    assert_eq!(over.status, 409, "{}", over.text);
    let listed = env.get(&hooks_a, "/api/v1/webhooks").await;
    assert_eq!(listed.ok()["data"].as_array().unwrap().len(), 3);

    // Deleted: gone for good.
    let deleted = env.delete(&hooks_a, &format!("/v1/webhooks/{alias_id}")).await;
    assert_eq!((&deleted.ok()["id"], &deleted.body["deleted"]), (&json!(alias_id), &json!(true)));
    assert_eq!(env.get(&hooks_a, &format!("/v1/webhooks/{alias_id}")).await.status, 404);
    assert_eq!(env.delete(&hooks_a, &format!("/v1/webhooks/{alias_id}")).await.status, 404);
    assert_eq!(env.get(&hooks_a, "/v1/webhooks").await.ok()["data"].as_array().unwrap().len(), 2);
}
