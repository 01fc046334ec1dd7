//! Credits across process boundaries: the real `tollgate serve` binary,
//! stopped cleanly (SIGTERM) or crashed (SIGKILL), then started again.
//!
//! - Embedded ledger: a clean shutdown loses nothing (even with a flush
//!   interval far longer than the test); a kill -9 after the write-behind had
//!   time to run loses nothing either, and a reservation held by a stream in
//!   flight at the kill is released by the restart.
//! - Redis ledger, two replicas on one Redis: a reservation of a replica that
//!   dies mid-stream is released by the other replica's reaper; the settles of
//!   a replica stopped cleanly right after its requests all land.
//!
//! Money assertions are exact: every charge is computed from the usage the
//! gateway reported for that call (price below, in micro-credits).

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/served.rs"]
mod served;
#[path = "support/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{client, within};
use serde_json::{json, Value};
use served::{bootstrap_key, serve_in, Served};

/// The workspace every test meters, on plan `metered`.
const WORKSPACE: &str = "acme";
/// The plan's monthly allowance, in whole credits and in micro-credits.
const PLAN_CREDITS: i64 = 10;
const INITIAL: i64 = PLAN_CREDITS * 1_000_000;
/// Per request, per 1K input tokens, per 1K output tokens (micro-credits).
/// With 1000 and 2000 per 1K, a call costs exactly 1000 + input + 2 × output.
const PRICE_REQUEST: i64 = 1000;
const PRICE_INPUT_PER_1K: i64 = 1000;
const PRICE_OUTPUT_PER_1K: i64 = 2000;

/// Agents: `priced` answers at once; `paced` streams two chunks
/// [`PACED_DELAY_MS`] apart; `slow` streams its first chunk at once and the
/// next one ten minutes later, so its call stays in flight.
const FAST: &str = "priced";
const PACED: &str = "paced";
const PACED_DELAY_MS: u64 = 250;
const SLOW: &str = "slow";

/// How long a stopped gateway may take to exit, or a reaper to release.
const GENEROUS: Duration = Duration::from_secs(60);

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("credits-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The config of every test: `store` and `credits` sections vary.
fn config(dir: &Path, store: &str, credits: &str) -> PathBuf {
    let text = format!(
        r#"
[server]
shutdown_grace_ms = 5000

[log]
level = "info"

{store}

[credits]
{credits}

[plans.metered]
message_credits = {PLAN_CREDITS}

[workspaces.{WORKSPACE}]
plan = "metered"

[providers.mock]
kind = "mock"
stream_chunks = 2
chunk_delay_ms = 0

[providers.slowmock]
kind = "mock"
stream_chunks = 4
chunk_delay_ms = 600000

[agents.{FAST}]
provider = "mock"
upstream_model = "mock-1"
caps = {{ max_tokens = 64 }}
price = {{ request = {PRICE_REQUEST}, input_per_1k = {PRICE_INPUT_PER_1K}, output_per_1k = {PRICE_OUTPUT_PER_1K} }}

[providers.pacedmock]
kind = "mock"
stream_chunks = 2
chunk_delay_ms = {PACED_DELAY_MS}

[agents.{PACED}]
provider = "pacedmock"
upstream_model = "mock-1"
caps = {{ max_tokens = 64 }}
price = {{ request = {PRICE_REQUEST}, input_per_1k = {PRICE_INPUT_PER_1K}, output_per_1k = {PRICE_OUTPUT_PER_1K} }}

[agents.{SLOW}]
provider = "slowmock"
upstream_model = "mock-1"
caps = {{ max_tokens = 64 }}
price = {{ request = {PRICE_REQUEST}, input_per_1k = {PRICE_INPUT_PER_1K}, output_per_1k = {PRICE_OUTPUT_PER_1K} }}
"#
    );
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts `tollgate serve --config <config>` in `dir`, logging to `<name>.log`.
async fn serve_with(dir: &Path, config: &Path, name: &str) -> Served {
    serve_in(dir, &["--config", config.to_str().expect("a UTF-8 temp path")], name).await
}

/// Creates a metered `chat` key in [`WORKSPACE`].
async fn create_key(base: &str, admin: &str) -> String {
    let body = json!({"name": "metered", "workspace": WORKSPACE, "scope": "chat"});
    let request = client().post(format!("{base}/v1/keys")).bearer_auth(admin).json(&body);
    let response = within("POST /v1/keys", request.send()).await.unwrap();
    let status = response.status();
    let created: Value = within("the key", response.json()).await.unwrap();
    assert_eq!(status, 201, "{created}");
    created["key"].as_str().expect("the plaintext key").to_owned()
}

/// The workspace's `message` balance, as `GET /v1/credits` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Message {
    available: i64,
    reserved: i64,
    plan_remaining: i64,
    top_up: i64,
}

async fn credits(base: &str, key: &str) -> Message {
    let request = client().get(format!("{base}/v1/credits")).bearer_auth(key);
    let response = within("GET /v1/credits", request.send()).await.unwrap();
    let status = response.status();
    let body: Value = within("the credits", response.json()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let m = &body["message"];
    let field = |name: &str| m[name].as_i64().unwrap_or_else(|| panic!("message.{name} in {body}"));
    let message = Message {
        available: field("available"),
        reserved: field("reserved"),
        plan_remaining: field("plan_remaining"),
        top_up: field("top_up"),
    };
    assert!(message.available >= 0 && message.reserved >= 0, "never negative: {body}");
    assert_eq!(message.available, message.plan_remaining + message.top_up, "{body}");
    message
}

/// `GET /v1/usage` totals: (requests, credits).
async fn usage_totals(base: &str, key: &str) -> (u64, u64) {
    let request = client().get(format!("{base}/v1/usage")).bearer_auth(key);
    let response = within("GET /v1/usage", request.send()).await.unwrap();
    let status = response.status();
    let body: Value = within("the usage", response.json()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let total = &body["total"];
    (total["requests"].as_u64().expect("total.requests"), total["credits"].as_u64().expect("total.credits"))
}

/// What a call with this usage costs at the agents' price.
fn cost(usage: &Value) -> i64 {
    let input = usage["prompt_tokens"].as_i64().unwrap_or_else(|| panic!("prompt_tokens in {usage}"));
    let output = usage["completion_tokens"].as_i64().unwrap_or_else(|| panic!("completion_tokens in {usage}"));
    assert!(input > 0 && output > 0, "{usage}");
    PRICE_REQUEST + input * PRICE_INPUT_PER_1K / 1000 + output * PRICE_OUTPUT_PER_1K / 1000
}

/// One non-stream call to [`FAST`]; returns its cost.
async fn chat(base: &str, key: &str, i: usize) -> i64 {
    let body =
        json!({"model": FAST, "messages": [{"role": "user", "content": format!("call number {i} of the test")}]});
    let request = client().post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body);
    let response = within("a chat completion", request.send()).await.unwrap();
    let status = response.status();
    let answer: Value = within("the answer", response.json()).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    cost(&answer["usage"])
}

/// One stream to [`FAST`], read to its end; returns its cost (from the usage chunk).
async fn chat_stream(base: &str, key: &str, i: usize) -> i64 {
    stream_cost(start_stream(base, key, FAST, i).await).await
}

/// A stream with the usage chunk asked for, its headers received (so admitted).
async fn start_stream(base: &str, key: &str, model: &str, i: usize) -> reqwest::Response {
    let body = json!({
        "model": model, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": format!("streamed call {i} reads to the end")}],
    });
    let request = client().post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body);
    let response = within("a chat stream", request.send()).await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// Reads a stream to its end; its cost, from the usage chunk.
async fn stream_cost(response: reqwest::Response) -> i64 {
    let text = within("the whole stream", response.text()).await.unwrap();
    assert!(text.contains("data: [DONE]"), "{text}");
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|event| event.get("usage").filter(|u| u.is_object()).cloned())
        .unwrap_or_else(|| panic!("no usage chunk in the stream:\n{text}"));
    cost(&usage)
}

/// `n` concurrent calls, every fourth one a stream; returns their total cost.
async fn calls(base: &str, key: &str, n: usize) -> i64 {
    let mut total = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (base, key) = (base.to_owned(), key.to_owned());
        tasks.spawn(async move {
            if i % 4 == 3 {
                chat_stream(&base, &key, i).await
            } else {
                chat(&base, &key, i).await
            }
        });
    }
    while let Some(cost) = tasks.join_next().await {
        total += cost.expect("a call task");
    }
    total
}

/// A stream to [`SLOW`] that stays in flight: the response (headers received,
/// so admitted and reserved) is kept open by the caller.
async fn slow_stream(base: &str, key: &str) -> reqwest::Response {
    let body = json!({
        "model": SLOW, "stream": true,
        "messages": [{"role": "user", "content": "a stream that is still running when its gateway dies"}],
    });
    let request = client().post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body);
    let mut response = within("the slow stream's headers", request.send()).await.unwrap();
    assert_eq!(response.status(), 200);
    let first = within("the slow stream's first chunk", response.chunk()).await.unwrap();
    assert!(first.is_some_and(|c| !c.is_empty()), "the first chunk arrives at once");
    response
}

fn embedded_store() -> &'static str {
    "[store]\nbackend = \"embedded\"\npath = \"data/credits.db\""
}

// ---------------------------------------------------------------- embedded

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_clean_shutdown_loses_no_charge() {
    let dir = temp_dir("embedded-sigterm");
    // An hour between write-behind flushes: only the shutdown flush can save
    // the charges, so this tests that flush and nothing else.
    let config = config(&dir, embedded_store(), "flush_interval_ms = 3600000");
    let first = serve_with(&dir, &config, "first").await;
    let admin = bootstrap_key(&first.log());
    let key = create_key(&first.base, &admin).await;
    let before = credits(&first.base, &key).await;
    assert_eq!((before.available, before.reserved), (INITIAL, 0), "a fresh plan allowance");

    const N: usize = 12;
    let spent = calls(&first.base, &key, N).await;
    assert!(spent > N as i64 * PRICE_REQUEST);
    // SIGTERM right away: nothing was flushed before (the interval is an hour).
    let log = first.terminate().await;

    let second = serve_with(&dir, &config, "second").await;
    let after = credits(&second.base, &key).await;
    assert_eq!(
        after,
        Message { available: INITIAL - spent, reserved: 0, plan_remaining: INITIAL - spent, top_up: 0 },
        "a clean shutdown loses nothing; first run's log:\n{log}"
    );
    assert_eq!(usage_totals(&second.base, &key).await, (N as u64, spent as u64), "usage survives too");
    second.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kill_9_loses_at_most_the_last_flush_interval_and_releases_in_flight_reservations() {
    const FLUSH_MS: u64 = 200;
    let dir = temp_dir("embedded-kill9");
    let config = config(&dir, embedded_store(), &format!("flush_interval_ms = {FLUSH_MS}"));
    let first = serve_with(&dir, &config, "first").await;
    let admin = bootstrap_key(&first.log());
    let key = create_key(&first.base, &admin).await;
    assert_eq!(credits(&first.base, &key).await.available, INITIAL);

    const N: usize = 12;
    let spent = calls(&first.base, &key, N).await;
    let settled = credits(&first.base, &key).await;
    assert_eq!((settled.available, settled.reserved), (INITIAL - spent, 0), "all settled in memory");

    // A stream in flight: admitted, its worst case reserved.
    let in_flight = slow_stream(&first.base, &key).await;
    let holding = credits(&first.base, &key).await;
    assert!(holding.reserved > 0, "the slow stream holds a reservation: {holding:?}");
    assert_eq!(holding.available, settled.available - holding.reserved, "{holding:?}");

    // Several flush intervals pass (the charges are then on disk, and so is
    // whatever the file holds while the reservation is out), then SIGKILL.
    // A longer wait only makes the assertion easier: it is about durability.
    tokio::time::sleep(Duration::from_millis(3 * FLUSH_MS)).await;
    let log = first.log();
    first.kill_9();
    drop(in_flight);

    let second = serve_with(&dir, &config, "second").await;
    let after = credits(&second.base, &key).await;
    assert_eq!(
        after,
        Message { available: INITIAL - spent, reserved: 0, plan_remaining: INITIAL - spent, top_up: 0 },
        "every charge older than the flush interval survives a kill -9, and the in-flight stream's \
         reservation is released by the restart; first run's log:\n{log}"
    );
    assert_eq!(usage_totals(&second.base, &key).await, (N as u64, spent as u64), "usage survives too");

    // The restarted gateway meters from there on.
    let more = chat(&second.base, &key, 99).await;
    assert_eq!(credits(&second.base, &key).await.available, INITIAL - spent - more);
    second.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- redis

fn redis_store(server: &redis_server::RedisServer, prefix: &str) -> String {
    format!("[store]\nbackend = \"redis\"\nurls = [\"{}\"]\nprefix = \"{prefix}\"", server.url())
}

fn skip(test: &str) {
    tools::skip(test, tools::NO_REDIS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reaper_on_a_surviving_replica_releases_a_killed_replicas_reservation() {
    let Some(server) = redis_server::RedisServer::start() else {
        return skip("redis_reaper_on_a_surviving_replica_releases_a_killed_replicas_reservation");
    };
    const TTL_MS: u64 = 2000;
    let dir_a = temp_dir("redis-reaper-a");
    let dir_b = temp_dir("redis-reaper-b");
    let store = redis_store(&server, "reaper");
    let credits_toml = format!("reservation_ttl_ms = {TTL_MS}\nreaper_interval_ms = 200");
    let a = serve_with(&dir_a, &config(&dir_a, &store, &credits_toml), "a").await;
    let admin = bootstrap_key(&a.log());
    let b = serve_with(&dir_b, &config(&dir_b, &store, &credits_toml), "b").await;
    let key = create_key(&a.base, &admin).await;

    // Some settled calls first, through A; B sees them.
    let spent = calls(&a.base, &key, 4).await;
    let before = within("A's settles to reach Redis", async {
        loop {
            let seen = credits(&b.base, &key).await;
            if seen.reserved == 0 && seen.available == INITIAL - spent {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // A stream in flight through A; B sees its reservation. A reservation
    // lives for TTL_MS even while its call runs, so B's look must come within
    // that: when a slow machine took longer, the look proves nothing either
    // way, and a new stream tries again.
    let mut in_flight = Vec::new();
    let mut held = None;
    for _ in 0..5 {
        let started = Instant::now();
        in_flight.push(slow_stream(&a.base, &key).await);
        let seen = credits(&b.base, &key).await;
        if seen.reserved > 0 {
            held = Some(seen);
            break;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(TTL_MS),
            "B does not see the reservation of A's call in flight after {:?}: {seen:?}",
            started.elapsed()
        );
        eprintln!("(the machine is slow: the reservation was reaped before B looked; trying again)");
    }
    let held = held.expect("B saw a reservation of A's stream in flight in one of 5 tries");
    assert_eq!(held.available + held.reserved, before.available, "held, not spent: {held:?} vs {before:?}");

    // A dies mid-stream: its settle never comes; B's reaper releases it.
    let log_a = a.log();
    a.kill_9();
    drop(in_flight);
    let mut lowest = i64::MAX;
    let released = tokio::time::timeout(GENEROUS, async {
        loop {
            let seen = credits(&b.base, &key).await;
            lowest = lowest.min(seen.available);
            if seen.reserved == 0 {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("B's reaper did not release A's reservation within {GENEROUS:?}; A's log:\n{log_a}"));
    assert!(lowest >= 0, "available never went negative");
    assert_eq!(released, before, "the reservation went back whole, nothing else changed");
    assert_eq!(usage_totals(&b.base, &key).await, (4, spent as u64), "a reaped call is not a charged call");

    // B keeps metering the same balance.
    let more = chat(&b.base, &key, 7).await;
    let after = within("B's settle", async {
        loop {
            let seen = credits(&b.base, &key).await;
            if seen.reserved == 0 {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(after.available, INITIAL - spent - more);
    b.terminate().await;
    for dir in [dir_a, dir_b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_settles_of_a_replica_stopped_cleanly_right_after_its_calls_all_land() {
    let Some(server) = redis_server::RedisServer::start() else {
        return skip("redis_settles_of_a_replica_stopped_cleanly_right_after_its_calls_all_land");
    };
    let dir_a = temp_dir("redis-sigterm-a");
    let dir_b = temp_dir("redis-sigterm-b");
    let store = redis_store(&server, "sigterm");
    // The default reservation TTL (10 min): no reaper can stand in for a lost
    // settle. A short command timeout, so settles held up below fail and retry.
    let store = format!("{store}\ncommand_timeout_ms = 500");
    let a = serve_with(&dir_a, &config(&dir_a, &store, ""), "a").await;
    let admin = bootstrap_key(&a.log());
    let b = serve_with(&dir_b, &config(&dir_b, &store, ""), "b").await;
    let key = create_key(&a.base, &admin).await;
    assert_eq!(credits(&b.base, &key).await.available, INITIAL);

    const N: usize = 24;
    let mut spent = calls(&a.base, &key, N).await;

    // Streams admitted now that end while Redis refuses writes: their settles
    // are still queued (failing, retrying) when A gets its SIGTERM.
    const PACED_N: usize = 4;
    let mut paced = Vec::new();
    for i in 0..PACED_N {
        paced.push(start_stream(&a.base, &key, PACED, i).await);
    }
    const PAUSE_MS: u64 = 4000;
    let paused = Instant::now();
    assert_eq!(server.command(&["CLIENT", "PAUSE", &PAUSE_MS.to_string(), "WRITE"]), "+OK");
    for response in paced {
        spent += stream_cost(response).await;
    }
    let ended = paused.elapsed();
    // SIGTERM at once: the shutdown must wait for the queued settles.
    let log_a = a.terminate().await;

    let seen = credits(&b.base, &key).await;
    assert_eq!(
        seen,
        Message { available: INITIAL - spent, reserved: 0, plan_remaining: INITIAL - spent, top_up: 0 },
        "every settle of the stopped replica reached Redis before it exited; A's log:\n{log_a}"
    );
    assert_eq!(usage_totals(&b.base, &key).await, ((N + PACED_N) as u64, spent as u64));
    if ended < Duration::from_millis(PAUSE_MS) && !log_a.contains("settle failed; retrying") {
        // Only the test's strength depends on timing, never its outcome.
        eprintln!("note: the paced streams' settles were not held up by the pause on this run");
    }
    b.terminate().await;
    for dir in [dir_a, dir_b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
