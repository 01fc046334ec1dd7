//! Webhook delivery across process boundaries: the real `tollgate serve`
//! binary, crashed (SIGKILL) or stopped cleanly (SIGTERM), then started again,
//! delivering to real receivers (`support/receiver.rs`) that check both
//! signatures of every request.
//!
//! - kill -9 with deliveries pending — some retrying after a 503, some in
//!   flight to a receiver that hangs — and a restart on the same store: every
//!   event gets a 2xx, on the embedded store and on Redis.
//! - Two replicas on one Redis: the replica holding deliveries in flight dies;
//!   the survivor takes them over (XAUTOCLAIM after `claim_idle_ms`) and
//!   delivers every one.
//! - SIGTERM with requests still streaming: their events, emitted after the
//!   event drain stopped, are flushed to the store at shutdown, listed by the
//!   next start's `GET /v1/events` and delivered.
//! - SIGTERM while the drain is retrying a batch the store refused (Redis
//!   writes paused): that batch is flushed too, once the store takes writes.
//!
//! What the design allows and the tests therefore accept: duplicates
//! (at-least-once; every attempt of one event carries its id as `webhook-id`
//! and the same bytes), and, on kill -9, the loss of events still in the
//! in-memory queue — so the crash tests kill only after `GET /v1/events`
//! lists every event (appended to the log together with its deliveries).

mod common;
#[path = "support/receiver.rs"]
mod receiver;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/served.rs"]
mod served;
#[path = "support/tools.rs"]
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{client, within, WAIT};
use receiver::{Delivery, Receiver};
use serde_json::{json, Value};
use served::{bootstrap_key, serve_in, Served};

/// The workspace of every test's key, events and webhooks.
const WORKSPACE: &str = "acme";
/// Answers at once.
const FAST: &str = "demo";
/// Streams its frames [`PACED_DELAY_MS`] apart (about a second in all), so a
/// stream admitted just before a SIGTERM is still running when it comes.
const PACED: &str = "paced";
const PACED_DELAY_MS: u64 = 300;
/// The only event type the tests' webhooks subscribe to.
const COMPLETED: &str = "request.completed";
/// A well-formed secret for a receiver until it learns its webhook's own.
const PLACEHOLDER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The Redis key prefix of every Redis test (each has a server of its own).
const PREFIX: &str = "whp";

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("webhooks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The retry waits: short first (the scenarios see retries quickly), then a
/// second each, 20 in all, so a failing delivery is still queued ~17 s after
/// its first attempt — far longer than any scenario waits before its kill.
fn retry_schedule() -> String {
    let mut waits = vec![100, 200, 400, 800];
    waits.resize(20, 1000);
    format!("{waits:?}")
}

/// The config of every test; `store` and the attempt timeout (with the claim
/// idle time just above it) vary.
fn config(dir: &Path, store: &str, timeout_ms: u64, claim_idle_ms: u64) -> PathBuf {
    let schedule = retry_schedule();
    let text = format!(
        r#"
[server]
shutdown_grace_ms = 15000

[log]
level = "info"

{store}

[events]
retry_interval_ms = 100

[webhooks]
allow_private_targets = true
retry_schedule_ms = {schedule}
jitter_percent = 0
poll_interval_ms = 50
timeout_ms = {timeout_ms}
claim_idle_ms = {claim_idle_ms}
# Receivers here fail on purpose for a while; they must never be disabled for it.
disable_after_failures = 100000
# Every event of a test may be in flight to a hanging receiver at once.
per_endpoint_concurrency = 32
attempts_kept = 1000

[workspaces.{WORKSPACE}]
plan = "default"

[providers.mock]
kind = "mock"
stream_chunks = 2
chunk_delay_ms = 0

[providers.pacedmock]
kind = "mock"
stream_chunks = 2
chunk_delay_ms = {PACED_DELAY_MS}

[agents.{FAST}]
provider = "mock"
upstream_model = "mock-1"
caps = {{ max_tokens = 64 }}

[agents.{PACED}]
provider = "pacedmock"
upstream_model = "mock-1"
caps = {{ max_tokens = 64 }}
"#
    );
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn embedded_store() -> &'static str {
    "[store]\nbackend = \"embedded\"\npath = \"data/webhooks.db\""
}

fn redis_store(server: &redis_server::RedisServer) -> String {
    format!("[store]\nbackend = \"redis\"\nurls = [\"{}\"]\nprefix = \"{PREFIX}\"", server.url())
}

fn skip(test: &str) {
    tools::skip(test, tools::NO_REDIS);
}

/// Starts `tollgate serve --config <config>` in `dir`, logging to `<name>.log`.
async fn serve_with(dir: &Path, config: &Path, name: &str) -> Served {
    serve_in(dir, &["--config", config.to_str().expect("a UTF-8 temp path")], name).await
}

async fn send_json(what: &str, request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = within(what, request.send()).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let text = within(what, response.text()).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    (status, body)
}

/// A `full` key of [`WORKSPACE`]: chats, manages its webhooks, reads its events.
async fn create_key(base: &str, admin: &str) -> String {
    let body = json!({"name": "webhooks", "workspace": WORKSPACE, "scope": "full"});
    let (status, created) =
        send_json("POST /v1/keys", client().post(format!("{base}/v1/keys")).bearer_auth(admin).json(&body)).await;
    assert_eq!(status, 201, "{created}");
    created["key"].as_str().expect("the plaintext key").to_owned()
}

/// Registers `receiver` for [`COMPLETED`] and teaches it the webhook's secret;
/// returns the webhook id.
async fn register(base: &str, key: &str, receiver: &Receiver, path: &str) -> String {
    let body = json!({"url": receiver.url(path), "events": [COMPLETED]});
    let request = client().post(format!("{base}/v1/webhooks")).bearer_auth(key).json(&body);
    let (status, created) = send_json("POST /v1/webhooks", request).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap_or_else(|| panic!("the secret, once: {created}"));
    assert!(secret.starts_with("whsec_"), "{created}");
    receiver.set_secrets(&[secret]);
    created["id"].as_str().expect("the webhook id").to_owned()
}

/// One non-stream call with our own request id (the event's `data.request_id`).
async fn chat(base: &str, key: &str, request_id: &str) {
    let body = json!({"model": FAST, "messages": [{"role": "user", "content": format!("call {request_id}")}]});
    let request = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", request_id)
        .json(&body);
    let (status, answer) = send_json("a chat completion", request).await;
    assert_eq!(status, 200, "{answer}");
}

/// `n` concurrent calls with ids `<tag>-<i>`; returns the ids.
async fn chats(base: &str, key: &str, tag: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for id in &ids {
        let (base, key, id) = (base.to_owned(), key.to_owned(), id.clone());
        tasks.spawn(async move { chat(&base, &key, &id).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a chat task");
    }
    ids
}

/// A stream to [`PACED`] with our request id, its headers received (so admitted).
async fn start_paced_stream(base: &str, key: &str, request_id: &str) -> reqwest::Response {
    let body = json!({
        "model": PACED, "stream": true,
        "messages": [{"role": "user", "content": format!("stream {request_id}")}],
    });
    let request = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", request_id)
        .json(&body);
    let response = within("a paced stream's headers", request.send()).await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// Every [`COMPLETED`] event of the workspace's log, oldest first, all pages.
async fn logged(base: &str, key: &str) -> Vec<Value> {
    logged_of(base, key, &format!("type={COMPLETED}&")).await
}

/// Every event of the workspace's log that `filter` (`type=...&` or empty)
/// selects, oldest first, all pages.
async fn logged_of(base: &str, key: &str, filter: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/events?{filter}order=asc&limit=1000");
        if let Some(cursor) = &after {
            url.push_str(&format!("&after={cursor}"));
        }
        let (status, page) = send_json("GET /v1/events", client().get(url).bearer_auth(key)).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["data"].as_array().unwrap_or_else(|| panic!("data in {page}")).iter().cloned());
        if page["has_more"] != json!(true) {
            return all;
        }
        after = Some(page["next_cursor"].as_str().unwrap_or_else(|| panic!("next_cursor in {page}")).to_owned());
    }
}

/// Waits until the log lists a [`COMPLETED`] event for every one of
/// `request_ids`; returns request id → event id, checking each event.
async fn wait_logged(base: &str, key: &str, request_ids: &[String]) -> BTreeMap<String, String> {
    let deadline = Instant::now() + WAIT;
    let events = loop {
        let events = logged(base, key).await;
        let ids: BTreeSet<&str> = events.iter().filter_map(|e| e["data"]["request_id"].as_str()).collect();
        let missing: Vec<&String> = request_ids.iter().filter(|id| !ids.contains(id.as_str())).collect();
        if missing.is_empty() {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "after {WAIT:?}, GET /v1/events still lacks the {COMPLETED} events of requests {missing:?}; it lists \
             {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut by_request = BTreeMap::new();
    for event in &events {
        let Some(request_id) = event["data"]["request_id"].as_str() else { panic!("data.request_id in {event}") };
        if !request_ids.iter().any(|id| id == request_id) {
            continue;
        }
        let id = event["id"].as_str().unwrap_or_else(|| panic!("id in {event}"));
        assert!(id.starts_with("evt_"), "{event}");
        assert_eq!(event["type"], COMPLETED, "{event}");
        assert_eq!(event["workspace"], WORKSPACE, "{event}");
        assert_eq!(event["data"]["status"], 200, "{event}");
        let before = by_request.insert(request_id.to_owned(), id.to_owned());
        assert!(before.is_none(), "one {COMPLETED} event per request, got two for {request_id}: {events:#?}");
    }
    by_request
}

/// Waits until `receiver` got a 2xx for each of `event_ids`, then checks every
/// request it got: both signatures valid, `webhook-id` = the body's event id,
/// only the expected events, and every attempt of one event byte-identical.
async fn assert_each_delivered(receiver: &Receiver, event_ids: &BTreeSet<String>, what: &str) -> Vec<Delivery> {
    let seen = receiver
        .wait_until(&format!("a 2xx for each of {} events at {what}", event_ids.len()), |got| {
            event_ids.iter().all(|id| got.iter().any(|d| d.succeeded() && d.event_id.as_deref() == Some(id)))
        })
        .await;
    receiver.assert_all_valid();
    let mut bodies: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for d in &seen {
        let id = d.event_id.as_deref().unwrap_or_else(|| panic!("an event id in the body at {what}: {d:#?}"));
        assert!(event_ids.contains(id), "only the test's events reach {what}; got {id}: {d:#?}");
        assert_eq!(d.webhook_id.as_deref(), Some(id), "webhook-id is the event id on every attempt at {what}");
        assert_eq!(d.event_type.as_deref(), Some(COMPLETED), "{d:#?}");
        assert_eq!(d.json["workspace"], WORKSPACE, "{d:#?}");
        let first = *bodies.entry(id).or_insert(&d.body);
        assert_eq!(first, d.body.as_slice(), "every attempt of {id} at {what} sends the same bytes");
    }
    seen
}

/// Waits until the webhook's attempt history (`GET /v1/webhooks/{id}/deliveries`)
/// has an attempt matching `wanted` for each of `event_ids`; returns those attempts.
async fn wait_attempts(
    base: &str,
    key: &str,
    webhook: &str,
    event_ids: &BTreeSet<String>,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let url = format!("{base}/v1/webhooks/{webhook}/deliveries?limit=1000");
    within(&format!("a matching attempt of each event in {webhook}'s history"), async {
        loop {
            let (status, page) = send_json("GET deliveries", client().get(&url).bearer_auth(key)).await;
            assert_eq!(status, 200, "{page}");
            let attempts = page["data"].as_array().unwrap_or_else(|| panic!("data in {page}"));
            let matching: Vec<Value> = attempts.iter().filter(|a| wanted(a)).cloned().collect();
            let ids: BTreeSet<&str> = matching.iter().filter_map(|a| a["event_id"].as_str()).collect();
            if event_ids.iter().all(|id| ids.contains(id.as_str())) {
                return matching;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Waits until the webhook's attempt history records a delivered 2xx attempt
/// for each of `event_ids`; returns the whole history.
async fn wait_attempts_delivered(base: &str, key: &str, webhook: &str, event_ids: &BTreeSet<String>) -> Vec<Value> {
    wait_attempts(base, key, webhook, event_ids, |a| {
        a["result"] == "delivered" && a["status"].as_u64().is_some_and(|s| (200..300).contains(&s))
    })
    .await;
    let url = format!("{base}/v1/webhooks/{webhook}/deliveries?limit=1000");
    let (status, page) = send_json("GET deliveries", client().get(&url).bearer_auth(key)).await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap_or_else(|| panic!("data in {page}")).clone()
}

/// Deliveries the Redis queue still holds: the delivery stream (claimed or
/// not, an entry leaves it only when done or moved to the retry set, atomically)
/// plus the retry set.
fn redis_queued(server: &redis_server::RedisServer) -> u64 {
    let count = |args: &[&str]| {
        let reply = server.command(args);
        reply.strip_prefix(':').and_then(|n| n.parse::<u64>().ok()).unwrap_or_else(|| panic!("{args:?}: {reply}"))
    };
    count(&["XLEN", &format!("{PREFIX}:{{deliveries}}:queue")])
        + count(&["ZCARD", &format!("{PREFIX}:{{deliveries}}:retry")])
}

// ---------------------------------------------------------------- kill -9

/// How many events the crash tests queue.
const EVENTS: usize = 6;

/// kill -9 of a gateway whose deliveries are all pending — to one receiver
/// that answers 503 (retrying), to another that hangs (in flight) — then a
/// new gateway process on the same store delivers every one.
async fn kill_9_then_restart_delivers(dir: &Path, store: &str, redis: Option<&redis_server::RedisServer>) {
    // The attempt timeout is longer than the time to the kill, so the hanging
    // receiver's attempts are (almost always) in flight when it comes; Redis
    // then hands them to the new process only after `claim_idle_ms`.
    let config = config(dir, store, 4000, 5000);
    let failing = Receiver::start(PLACEHOLDER_SECRET).await;
    failing.respond_default(503);
    let hanging = Receiver::start(PLACEHOLDER_SECRET).await;
    hanging.hang_all();

    let first = serve_with(dir, &config, "first").await;
    let admin = bootstrap_key(&first.log());
    let key = create_key(&first.base, &admin).await;
    let failing_hook = register(&first.base, &key, &failing, "/failing").await;
    register(&first.base, &key, &hanging, "/hanging").await;

    let requests = chats(&first.base, &key, "crash", EVENTS).await;
    // Listed in the log = appended, and with it its deliveries (embedded: one
    // transaction; Redis: the deliveries are written first).
    let events = wait_logged(&first.base, &key, &requests).await;
    let event_ids: BTreeSet<String> = events.values().cloned().collect();
    assert_eq!(event_ids.len(), EVENTS);
    // Attempted everywhere: retrying after a 503 on one side, hanging on the other.
    for (receiver, name) in [(&failing, "the failing receiver"), (&hanging, "the hanging receiver")] {
        receiver
            .wait_until(&format!("an attempt of each event at {name}"), |got| {
                event_ids.iter().all(|id| got.iter().any(|d| d.event_id.as_deref() == Some(id)))
            })
            .await;
    }
    assert_eq!(failing.success_count() + hanging.success_count(), 0, "nothing was delivered before the kill");
    // The failed attempts are recorded (the gateway records one after its answer).
    let retrying = wait_attempts(&first.base, &key, &failing_hook, &event_ids, |a| {
        a["status"] == 503 && a["result"] == "retrying"
    })
    .await;
    let log = first.log();
    first.kill_9();

    if let Some(server) = redis {
        assert_eq!(
            redis_queued(server),
            2 * EVENTS as u64,
            "after the kill, Redis still queues every delivery (one per event and webhook); log:\n{log}"
        );
    }

    failing.respond_default(200);
    hanging.respond_default(200);
    let second = serve_with(dir, &config, "second").await;
    assert_each_delivered(&failing, &event_ids, "the failing receiver").await;
    assert_each_delivered(&hanging, &event_ids, "the hanging receiver").await;

    // The restarted gateway's view: the log and the attempt history survived.
    assert_eq!(wait_logged(&second.base, &key, &requests).await, events, "the event log survives the kill");
    let history = wait_attempts_delivered(&second.base, &key, &failing_hook, &event_ids).await;
    for attempt in &retrying {
        assert!(
            history.contains(attempt),
            "the attempts recorded before the kill survive it: {attempt} in {history:#?}"
        );
    }
    if let Some(server) = redis {
        // Nothing left behind: every delivery left the queue once delivered.
        within("the Redis delivery queue to empty", async {
            while redis_queued(server) != 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    second.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kill_9_with_deliveries_pending_delivers_them_after_restart() {
    let dir = temp_dir("embedded-kill9");
    kill_9_then_restart_delivers(&dir, embedded_store(), None).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill_9_with_deliveries_pending_delivers_them_after_restart() {
    let Some(server) = redis_server::RedisServer::start() else {
        return skip("redis_kill_9_with_deliveries_pending_delivers_them_after_restart");
    };
    let dir = temp_dir("redis-kill9");
    kill_9_then_restart_delivers(&dir, &redis_store(&server), Some(&server)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- two replicas

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replica_killed_mid_delivery_its_deliveries_are_taken_over_by_the_other() {
    let Some(server) = redis_server::RedisServer::start() else {
        return skip("redis_replica_killed_mid_delivery_its_deliveries_are_taken_over_by_the_other");
    };
    let dir = temp_dir("redis-takeover");
    // A's attempts must still be hanging when A dies: a long attempt timeout,
    // and B may take them over once they were idle a little longer.
    const TIMEOUT_MS: u64 = 8000;
    let config = config(&dir, &redis_store(&server), TIMEOUT_MS, TIMEOUT_MS + 1000);
    let hanging = Receiver::start(PLACEHOLDER_SECRET).await;
    hanging.hang_all();

    // A alone: whatever is delivered before B starts, A claimed.
    let a = serve_with(&dir, &config, "a").await;
    let admin = bootstrap_key(&a.log());
    let key = create_key(&a.base, &admin).await;
    let hook = register(&a.base, &key, &hanging, "/hook").await;
    let requests = chats(&a.base, &key, "takeover", EVENTS).await;
    let events = wait_logged(&a.base, &key, &requests).await;
    let event_ids: BTreeSet<String> = events.values().cloned().collect();
    hanging
        .wait_until("A's attempt of each event, hanging", |got| {
            event_ids.iter().all(|id| got.iter().any(|d| d.event_id.as_deref() == Some(id)))
        })
        .await;

    let b = serve_with(&dir, &config, "b").await;
    let attempts_before_kill = hanging.count();
    let log_a = a.log();
    a.kill_9();
    if attempts_before_kill > EVENTS {
        // Only the test's strength depends on timing, never its outcome: an
        // attempt timed out and was retried, so not every delivery was in flight.
        eprintln!(
            "note: {attempts_before_kill} attempts before the kill, not {EVENTS}: some of A's attempts timed out first"
        );
    }
    assert_eq!(redis_queued(&server), EVENTS as u64, "A's deliveries are still queued in Redis; A's log:\n{log_a}");

    hanging.respond_default(200);
    assert_each_delivered(&hanging, &event_ids, "the receiver, from replica B").await;
    wait_attempts_delivered(&b.base, &key, &hook, &event_ids).await;
    within("the Redis delivery queue to empty", async {
        while redis_queued(&server) != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    b.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- SIGTERM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sigterm_flushes_queued_events_and_the_next_start_delivers_them() {
    let dir = temp_dir("embedded-sigterm");
    let config = config(&dir, embedded_store(), 4000, 5000);
    let receiver = Receiver::start(PLACEHOLDER_SECRET).await;

    let first = serve_with(&dir, &config, "first").await;
    let admin = bootstrap_key(&first.log());
    let key = create_key(&first.base, &admin).await;
    let hook = register(&first.base, &key, &receiver, "/hook").await;

    // Calls that completed before the signal: their events are in the queue or
    // already stored when it comes.
    const QUICK: usize = 8;
    let mut requests = chats(&first.base, &key, "before", QUICK).await;
    // Streams admitted before the signal and ending during the shutdown drain:
    // their events are emitted after the event drain stopped, so only the
    // shutdown flush can store them.
    const STREAMS: usize = 6;
    // All admitted (headers received) before the signal, each then read to its end.
    let (admitted, mut admit) = tokio::sync::mpsc::channel(STREAMS);
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..STREAMS {
        let id = format!("draining-{i}");
        requests.push(id.clone());
        let (base, key, admitted) = (first.base.clone(), key.clone(), admitted.clone());
        streams.spawn(async move {
            let response = start_paced_stream(&base, &key, &id).await;
            admitted.send(()).await.expect("the test waits for admissions");
            within("a draining stream", response.text()).await
        });
    }
    for _ in 0..STREAMS {
        within("the streams' admission", admit.recv()).await.expect("a stream task admitted");
    }
    let log = first.terminate().await;
    while let Some(text) = streams.join_next().await {
        let text = text.expect("a stream task").expect("the stream's body");
        assert!(text.contains("data: [DONE]"), "a stream in flight at SIGTERM ends normally: {text}\nlog:\n{log}");
    }
    assert!(!log.contains("could not be stored"), "the shutdown flush stored every event; log:\n{log}");

    let second = serve_with(&dir, &config, "second").await;
    let events = wait_logged(&second.base, &key, &requests).await;
    let event_ids: BTreeSet<String> = events.values().cloned().collect();
    assert_eq!(event_ids.len(), QUICK + STREAMS, "one event per request that got a 200");
    assert_each_delivered(&receiver, &event_ids, "the receiver").await;
    wait_attempts_delivered(&second.base, &key, &hook, &event_ids).await;
    second.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the gateway's log at `path` contains `needle`.
async fn wait_for_log(path: &Path, needle: &str) {
    within(&format!("{needle:?} in {}", path.display()), async {
        while !std::fs::read_to_string(path).unwrap_or_default().contains(needle) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A clean shutdown must not lose the batch the event drain is writing (or
/// retrying) when the signal comes: `append_until_stored` promises events are
/// "only dropped if the process dies meanwhile".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigterm_while_the_store_refuses_writes_keeps_the_batch_being_written() {
    let Some(server) = redis_server::RedisServer::start() else {
        return skip("redis_sigterm_while_the_store_refuses_writes_keeps_the_batch_being_written");
    };
    let dir = temp_dir("redis-sigterm-paused");
    // A short command timeout: appends held up by the pause fail and retry.
    let store = format!("{}\ncommand_timeout_ms = 500", redis_store(&server));
    let config = config(&dir, &store, 4000, 5000);
    let receiver = Receiver::start(PLACEHOLDER_SECRET).await;

    let first = serve_with(&dir, &config, "first").await;
    let admin = bootstrap_key(&first.log());
    let key = create_key(&first.base, &admin).await;
    register(&first.base, &key, &receiver, "/hook").await;

    // Streams admitted while Redis takes writes, ending once it refuses them:
    // their events reach the drain, whose append then fails and retries.
    const STREAMS: usize = 3;
    let requests: Vec<String> = (0..STREAMS).map(|i| format!("paused-{i}")).collect();
    let mut streams = tokio::task::JoinSet::new();
    for id in &requests {
        let response = start_paced_stream(&first.base, &key, id).await;
        streams.spawn(async move { within("a paced stream", response.text()).await });
    }
    assert_eq!(server.command(&["CLIENT", "PAUSE", "60000", "WRITE"]), "+OK");
    while let Some(text) = streams.join_next().await {
        let text = text.expect("a stream task").expect("the stream's body");
        assert!(text.contains("data: [DONE]"), "{text}");
    }
    wait_for_log(&first.log_path, "cannot store events; retrying").await;

    // SIGTERM while the batch is still being retried; Redis takes writes
    // again as soon as the shutdown has begun, so the shutdown flush can store it.
    let log_path = first.log_path.clone();
    let stopping = tokio::spawn(first.terminate());
    wait_for_log(&log_path, "shutdown signal received").await;
    assert_eq!(server.command(&["CLIENT", "UNPAUSE"]), "+OK");
    let log = within("the first gateway's exit", stopping).await.expect("terminate");

    let second = serve_with(&dir, &config, "second").await;
    // Every event of the streams, whichever the drain was holding at the signal.
    let all = logged_of(&second.base, &key, "").await;
    let mut missing = Vec::new();
    for id in &requests {
        for kind in ["agent.execution.started", COMPLETED, "ai_message", "agent.execution.completed"] {
            let field = if kind.starts_with("agent.") { "execution_id" } else { "request_id" };
            if !all.iter().any(|e| e["type"] == kind && e["data"][field] == id.as_str()) {
                missing.push(format!("{kind} of {id}"));
            }
        }
    }
    let stats = log.lines().find(|l| l.contains("events at shutdown")).unwrap_or("no \"events at shutdown\" line");
    assert!(
        missing.is_empty(),
        "events emitted before the SIGTERM are missing after the restart: {missing:?}\nshutdown stats: \
         {stats}\nthe log lists: {all:#?}\nfirst run's log:\n{log}"
    );
    let events = wait_logged(&second.base, &key, &requests).await;
    let event_ids: BTreeSet<String> = events.values().cloned().collect();
    assert_each_delivered(&receiver, &event_ids, "the receiver").await;
    second.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}
