//! Rate limits and credits end to end (issue 4), each scenario on the embedded
//! store and on a real Redis (`on_embedded::*`, `on_redis::*`):
//! rpm and tpm limits with OpenAI's headers and `Retry-After`; exact prices for
//! non-stream, stream, cut stream and failed calls; exactly N of M concurrent
//! requests against a balance that covers N (on Redis also with two replicas
//! sharing the balance); the monthly refresh across a month boundary with a
//! manual clock (UTC and Europe/Berlin); a top-up resuming service at once;
//! who may read and top up which workspace's credits and usage.
//!
//! Each test builds the gateway in-process with a [`ManualClock`] (calendar
//! time: periods, usage days) and its own store: a fresh embedded file, or its
//! own `redis-server` on a free port (skipped loudly when none is installed,
//! mandatory under `CI=true`). Redis settles are asynchronous: tests wait for
//! them by polling `GET /v1/credits` and `GET /v1/usage` within a bound, never
//! with a fixed sleep.

mod common;
#[macro_use]
#[path = "support/backends.rs"]
mod backends;
#[path = "support/credits_env.rs"]
mod credits_env;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mock::{COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use credits_env::*;
use serde_json::{json, Value};
use tollgate::clock::Clock;
use tollgate::scope::Scope;

on_both_backends!(
    requests_per_minute_per_key_and_per_workspace,
    tokens_per_minute_estimated_then_corrected,
    prices_are_exact_for_every_way_a_call_ends,
    concurrent_requests_never_overspend,
    plan_credits_refresh_once_at_the_month_start_in_the_workspace_zone,
    a_top_up_resumes_service_at_once,
    credits_and_usage_are_scoped_to_the_callers_workspace,
    a_reservation_whose_settle_never_comes_is_released,
    a_call_in_flight_across_the_month_boundary,
);

// ---------------------------------------------------------------------------
// 1. Requests per minute
// ---------------------------------------------------------------------------

async fn requests_per_minute_per_key_and_per_workspace(backend: Backend) {
    let Some(env) = Env::start(backend, "rpm", NOV_14_NOON).await else { return };
    let body = chat_body(ALIAS, "hi");
    let stream = chat_stream_body(ALIAS, "hi");

    // A key's own limit: 3 a minute, a burst of 3, then one every 20 s.
    env.workspace("solo", "default", None).await;
    let (_, key) = env.key("solo", Scope::Chat, Some(3), None).await;
    let per = Duration::from_secs(20);
    for i in 1..=3u64 {
        // The last one streamed: a stream carries the same headers.
        let a = if i < 3 { env.chat(&key, &body).await } else { read(env.chat_stream(&key, &stream).await).await };
        a.ok();
        assert_eq!(a.header("x-ratelimit-limit-requests"), Some("3"), "{:?}", a.headers);
        assert_eq!(a.num_header("x-ratelimit-remaining-requests"), 3 - i, "request {i}: {:?}", a.headers);
        // The limiter is full again after i units of 20 s, less the time
        // elapsed since the first request (under 20 s, or 429s would differ).
        let reset = go_duration(a.header("x-ratelimit-reset-requests").unwrap());
        assert!(reset > per * (i as u32 - 1) && reset <= per * i as u32, "request {i}: reset {reset:?}");
        assert!(a.header("x-ratelimit-limit-tokens").is_none(), "no tokens limit, no tokens headers");
    }
    let refused = env.chat(&key, &body).await;
    refused.error(429, "requests", "rate_limit_exceeded");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("(key)"), "{}", refused.text);
    let wait = retry_after(&refused);
    assert!(wait > Duration::ZERO && wait <= per, "the next request fits within 20 s: {wait:?}");
    assert_eq!(refused.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
    go_duration(refused.header("x-ratelimit-reset-requests").unwrap());
    assert_ne!(refused.header("x-should-retry"), Some("false"), "a rate limit is worth retrying");
    assert_eq!(env.mock.attempts(), 3, "the refused request never reached the upstream");

    // A workspace's plan: 3 a minute across its keys, 2 a minute per key
    // (`key_rpm`) for keys without their own limit.
    env.workspace("team", "team", None).await;
    let (_, a) = env.key("team", Scope::Chat, None, None).await;
    let (_, b) = env.key("team", Scope::Chat, None, None).await;
    let first = env.chat(&a, &body).await;
    first.ok();
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("2"), "the tighter window: the key's");
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("1"));
    env.chat(&a, &body).await.ok();
    let by_key = env.chat(&a, &body).await;
    by_key.error(429, "requests", "rate_limit_exceeded");
    assert!(by_key.body["error"]["message"].as_str().unwrap().contains("(key)"), "{}", by_key.text);
    retry_after(&by_key);
    // The key's refusal took nothing from the workspace: b gets its third.
    let third = env.chat(&b, &body).await;
    third.ok();
    assert_eq!(third.header("x-ratelimit-remaining-requests"), Some("0"), "{:?}", third.headers);
    assert_eq!(third.header("x-ratelimit-limit-requests"), Some("3"), "the workspace window is the tighter now");
    let by_workspace = env.chat(&b, &body).await;
    by_workspace.error(429, "requests", "rate_limit_exceeded");
    let message = by_workspace.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("(workspace)") && message.contains("limit 3"), "{message}");
    let wait = retry_after(&by_workspace);
    assert!(wait > Duration::ZERO && wait <= per, "{wait:?}");
    assert_eq!(by_workspace.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(by_workspace.header("x-ratelimit-remaining-requests"), Some("0"));
    env.chat(&a, &body).await.error(429, "requests", "rate_limit_exceeded");
    assert_eq!(env.mock.attempts(), 6);

    // Static config keys are not metered.
    for _ in 0..5 {
        let a = env.chat(KEY, &body).await;
        a.ok();
        assert!(a.header("x-ratelimit-limit-requests").is_none());
    }
}

/// DESIGN.md's lesson 2: a "distributed" limit must not be per replica. Two
/// replicas on one Redis, 30 concurrent calls each against a key's rpm of 20:
/// 20 pass (plus one per 3 s the storm lasted), never 20 per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_two_replicas_share_one_rate_limit() {
    let Some(mut env) = Env::start(Backend::Redis, "rpm-replicas", NOV_14_NOON).await else { return };
    env.add_replica().await;
    let env = Arc::new(env);
    env.workspace("shared", "default", None).await;
    let (_, key) = env.key("shared", Scope::Chat, Some(20), None).await;
    let started = std::time::Instant::now();
    let mut calls = Vec::new();
    for replica in [0, 1] {
        for i in 0..30 {
            let (env, key) = (env.clone(), key.clone());
            calls.push(tokio::spawn(async move {
                env.chat_on(replica, &key, &chat_body(ALIAS, &format!("call {replica}/{i}"))).await
            }));
        }
    }
    let (mut ok, mut limited) = (0u64, 0u64);
    for call in calls {
        let a = within("a call", call).await.expect("the call task");
        if a.status == 200 {
            ok += 1;
        } else {
            a.error(429, "requests", "rate_limit_exceeded");
            limited += 1;
        }
    }
    // One unit comes back every 60 s / 20 = 3 s: a slow storm may earn more.
    let earned = started.elapsed().as_secs() / 3;
    assert!(ok >= 20 && ok <= 20 + earned, "{ok} passed, {limited} limited in {:?}", started.elapsed());
    assert_eq!(ok + limited, 60);
}

// ---------------------------------------------------------------------------
// 2. Tokens per minute
// ---------------------------------------------------------------------------

async fn tokens_per_minute_estimated_then_corrected(backend: Backend) {
    let Some(env) = Env::start(backend, "tpm", NOV_14_NOON).await else { return };
    env.workspace("tok", "default", None).await;
    let (_, key) = env.key("tok", Scope::Chat, None, Some(100)).await;
    let per_token_ms = 600; // 60 s / 100 tokens
    let mut body = chat_body(ALIAS, "hi");
    body["max_tokens"] = json!(50);
    let charged = estimate(&body) + 50;
    let used = PROMPT_TOKENS + COMPLETION_TOKENS;
    assert!(charged < 100 && 2 * charged > 100 && used + charged <= 100, "the test's arithmetic: {charged}");

    let started = Instant::now();
    let first = env.chat(&key, &body).await;
    first.ok();
    assert_eq!(first.header("x-ratelimit-limit-tokens"), Some("100"));
    assert_eq!(first.num_header("x-ratelimit-remaining-tokens"), 100 - charged, "{:?}", first.headers);
    let reset = go_duration(first.header("x-ratelimit-reset-tokens").unwrap());
    let full = Duration::from_millis(charged * per_token_ms);
    assert!(reset <= full && reset > full - Duration::from_secs(1), "reset {reset:?}, expected about {full:?}");
    assert!(first.header("x-ratelimit-limit-requests").is_none(), "no requests limit, no requests headers");
    env.settled("tok", 1).await;

    // Charged `charged` tokens before the call, corrected to the `used` ones
    // after it: a second request fits, which it would not uncorrected (until
    // 100 - charged tokens came back, many seconds later).
    let second = env.chat(&key, &body).await;
    let elapsed = started.elapsed();
    second.ok();
    let remaining = second.num_header("x-ratelimit-remaining-tokens");
    let exact = 100 - used - charged;
    let refilled = elapsed.as_millis() as u64 / per_token_ms + 1;
    assert!(
        remaining >= exact && remaining <= exact + refilled,
        "remaining {remaining}: expected {exact} (+ at most {refilled} refilled in {elapsed:?})"
    );

    // A request larger than the whole minute's budget: refused for good.
    let mut large = chat_body(ALIAS, "hi");
    large["max_tokens"] = json!(200);
    let refused = env.chat(&key, &large).await;
    refused.error(429, "tokens", "rate_limit_exceeded");
    assert_eq!(refused.header("x-should-retry"), Some("false"), "{:?}", refused.headers);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("limit 100"), "{}", refused.text);
    assert_eq!(env.mock.attempts(), 2, "refused before the upstream");

    // Over the minute's budget for now: 429 with Retry-After.
    env.settled("tok", 2).await;
    let mut now_too_many = chat_body(ALIAS, "hi");
    now_too_many["max_tokens"] = json!(90);
    let refused = env.chat(&key, &now_too_many).await;
    refused.error(429, "tokens", "rate_limit_exceeded");
    let wait = retry_after(&refused);
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60), "{wait:?}");
    assert_eq!(refused.header("x-ratelimit-limit-tokens"), Some("100"));
    assert_eq!(refused.header("x-ratelimit-remaining-tokens"), Some("0"));
    assert_ne!(refused.header("x-should-retry"), Some("false"));
}

// ---------------------------------------------------------------------------
// 3. Exact prices
// ---------------------------------------------------------------------------

async fn prices_are_exact_for_every_way_a_call_ends(backend: Backend) {
    let Some(env) = Env::start(backend, "prices", NOV_14_NOON).await else { return };
    env.workspace("shop", "metered", None).await;
    let (key_id, key) = env.key("shop", Scope::Chat, None, None).await;
    let allowance = (METERED_CREDITS * CREDIT) as i64;
    let credits = env.credits("shop").await;
    assert_eq!(message(&credits), (allowance, 0, 0, allowance), "{credits}");
    assert_eq!(credits["message"]["metered"], true);
    assert_eq!(credits["integration"]["metered"], false, "the plan grants no integration credits");

    let body = chat_body("priced", "What does a call cost?");
    let e = estimate(&body);
    let full = priced_cost(PROMPT_TOKENS, COMPLETION_TOKENS);
    assert_eq!(priced_cost(11, 3), 1025, "1000 + ceil((11 * 1500 + 3 * 2700) / 1000)");
    let mut spent = 0u64;
    let (mut calls, mut input, mut output) = (0u64, 0u64, 0u64);

    // Non-stream: the usage the upstream reported.
    let answer = env.chat(&key, &body).await;
    assert_eq!(answer.ok()["usage"]["prompt_tokens"], PROMPT_TOKENS);
    (spent, calls, input, output) = (spent + full, calls + 1, input + PROMPT_TOKENS, output + COMPLETION_TOKENS);
    let credits = env.settled("shop", calls).await;
    assert_eq!(message(&credits), (allowance - spent as i64, 0, 0, allowance - spent as i64), "{credits}");

    // Stream with the usage chunk asked for, and without (the gateway asks
    // the upstream for it anyway): both pay the reported usage.
    for include_usage in [true, false] {
        let mut stream = chat_stream_body("priced", "What does a call cost?");
        if include_usage {
            stream["stream_options"] = json!({"include_usage": true});
        }
        let mut sse = SseReader::new(env.chat_stream(&key, &stream).await);
        let chunks = json_events(&sse.rest().await);
        let usage_chunks = chunks.iter().filter(|c| !c["usage"].is_null()).count();
        assert_eq!(usage_chunks, include_usage as usize, "the client sees usage only when it asked: {chunks:?}");
        (spent, calls, input, output) = (spent + full, calls + 1, input + PROMPT_TOKENS, output + COMPLETION_TOKENS);
        let credits = env.settled("shop", calls).await;
        assert_eq!(message(&credits).3, allowance - spent as i64, "include_usage {include_usage}: {credits}");
    }

    // A stream the client cuts after two chunks: the worst case is held while
    // it runs; it pays the request, the prompt estimate and the two chunks.
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let mut cut = body.clone();
    cut["stream"] = json!(true);
    cut["max_tokens"] = json!(40);
    let mut sse = SseReader::new(env.chat_stream(&key, &cut).await);
    let held = priced_cost(e, 40);
    let credits = env.credits("shop").await;
    assert_eq!(
        message(&credits),
        (allowance - spent as i64 - held as i64, 0, held as i64, allowance - spent as i64 - held as i64),
        "the reservation of the open stream: {credits}"
    );
    upstream.send_content("priced-up", "Two").await;
    upstream.send_content("priced-up", " words").await;
    assert_eq!(sse.next_json().await["choices"][0]["delta"]["content"], "Two");
    assert_eq!(sse.next_json().await["choices"][0]["delta"]["content"], " words");
    drop(sse);
    upstream.cancelled().await;
    let cut_cost = priced_cost(e, 2);
    assert!(cut_cost > REQUEST_PRICE && cut_cost <= held);
    (spent, calls, input, output) = (spent + cut_cost, calls + 1, input + e, output + 2);
    let credits = env.settled("shop", calls).await;
    assert_eq!(message(&credits).3, allowance - spent as i64, "a cut stream pays {cut_cost}: {credits}");

    // The client gives up before the answer starts (the upstream hangs): the
    // call pays the request and the prompt estimate, no output.
    env.mock.push(Reply::Hang);
    let before = env.mock.attempts();
    let gone = {
        let request = env.http.post(format!("{}/v1/chat/completions", env.replicas[0].base));
        let request = request.bearer_auth(&key).json(&body);
        tokio::spawn(async move { request.send().await })
    };
    env.mock.wait_for_requests(before + 1).await;
    gone.abort();
    assert!(gone.await.is_err(), "the client task was cancelled");
    (spent, calls, input) = (spent + priced_cost(e, 0), calls + 1, input + e);
    let credits = env.settled("shop", calls).await;
    assert_eq!(message(&credits).3, allowance - spent as i64, "a call cancelled before its answer: {credits}");

    // An upstream that fails mid-stream after two chunks: pays what it got.
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let mut sse = SseReader::new(env.chat_stream(&key, &cut).await);
    upstream.send_content("priced-up", "Two").await;
    upstream.send_content("priced-up", " words").await;
    // The gateway relayed both before the upstream dies.
    assert_eq!(sse.next_json().await["choices"][0]["delta"]["content"], "Two");
    assert_eq!(sse.next_json().await["choices"][0]["delta"]["content"], " words");
    upstream.die().await;
    let events = json_events(&sse.rest().await);
    assert_eq!(events.len(), 1, "only an error event follows: {events:?}");
    assert!(events[0].get("error").is_some(), "the stream ends with an error event: {events:?}");
    (spent, calls, input, output) = (spent + cut_cost, calls + 1, input + e, output + 2);
    let credits = env.settled("shop", calls).await;
    assert_eq!(message(&credits).3, allowance - spent as i64, "a stream the upstream cut pays {cut_cost}: {credits}");

    // 5xx on every attempt: no answer, no charge.
    let attempts = env.mock.attempts();
    for _ in 0..3 {
        env.mock.push(Reply::status(500, r#"{"error":{"message":"boom","type":"server_error"}}"#));
    }
    env.chat(&key, &body).await.error(502, "upstream_error", "upstream_status");
    assert_eq!(env.mock.attempts(), attempts + 3, "two retries after the first attempt");
    (calls, input) = (calls + 1, input + e);
    let credits = env.settled("shop", calls).await;
    assert_eq!(message(&credits).3, allowance - spent as i64, "a failed call pays nothing: {credits}");

    // The upstream refuses the request (4xx, no retry): nothing delivered, nothing charged.
    let rejection = r#"{"error":{"message":"bad","type":"invalid_request_error","code":"bad_thing","param":null}}"#;
    env.mock.push(Reply::status(400, rejection));
    env.chat(&key, &body).await.error(400, "invalid_request_error", "bad_thing");
    (calls, input) = (calls + 1, input + e);
    let credits = env.settled("shop", calls).await;
    let left = allowance - spent as i64;
    assert_eq!(message(&credits), (left, 0, 0, left), "{credits}");
    never_negative(&credits);
    assert_eq!(credits["message"]["uncollected"], 0);

    let usage = env.usage("shop", ALL_DAYS).await;
    assert_eq!(
        usage["total"],
        json!({"requests": calls, "input_tokens": input, "output_tokens": output, "credits": spent}),
        "{usage}"
    );
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one key, one model, one day: {usage}");
    assert_eq!(rows[0]["day"], "2026-11-14");
    assert_eq!(rows[0]["key_id"], key_id.as_str());
    assert_eq!(rows[0]["agent"], "priced");

    // Static config keys are not metered.
    env.chat(KEY, &body).await.ok();
    assert_eq!(message(&env.credits("shop").await).3, left);
}

// ---------------------------------------------------------------------------
// 4. Exactness under concurrency
// ---------------------------------------------------------------------------

/// Fires `per_replica` concurrent `flat` calls (one credit each) at each of
/// `replicas` at once; returns (succeeded, refused with insufficient_quota).
async fn storm(env: &Arc<Env>, key: &str, replicas: &[usize], per_replica: usize) -> (usize, usize) {
    let mut calls = Vec::new();
    for &replica in replicas {
        for i in 0..per_replica {
            let (env, key) = (env.clone(), key.to_owned());
            calls.push(tokio::spawn(async move {
                env.chat_on(replica, &key, &chat_body("flat", &format!("call {replica}/{i}"))).await
            }));
        }
    }
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        let a = within("a call of the storm", call).await.expect("the call task");
        if a.status == 200 {
            ok += 1;
        } else {
            a.error(429, "insufficient_quota", "insufficient_quota");
            assert_eq!(a.header("x-should-retry"), Some("false"), "{:?}", a.headers);
            assert!(a.header("retry-after").is_none(), "waiting does not help: {:?}", a.headers);
            refused += 1;
        }
    }
    (ok, refused)
}

/// Reads the balances over and over while `running`; panics on a negative part.
fn watch_balances(env: &Arc<Env>, workspace: &'static str, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u32> {
    let env = env.clone();
    tokio::spawn(async move {
        let mut reads = 0;
        while running.load(Ordering::Acquire) {
            let replica = reads as usize % env.replicas.len();
            never_negative(&env.credits_on(replica, workspace).await);
            reads += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reads
    })
}

async fn concurrent_requests_never_overspend(backend: Backend) {
    let Some(mut env) = Env::start(backend, "exact", NOV_14_NOON).await else { return };
    // 100 plan credits + 50 topped up = 150 calls at one credit each.
    env.workspace("race", "hundred", None).await;
    env.workspace("race2", "hundred", None).await;
    let (_, key) = env.key("race", Scope::Chat, None, None).await;
    let (_, key2) = env.key("race2", Scope::Chat, None, None).await;
    for ws in ["race", "race2"] {
        let topup = json!({"workspace": ws, "type": "message", "amount": 50 * CREDIT});
        env.post(&env.admin.clone(), "/v1/credits/topup", &topup).await.ok();
    }
    if backend == Backend::Redis {
        env.add_replica().await;
    }
    let env = Arc::new(env);

    // One replica, 200 calls at once.
    let running = Arc::new(AtomicBool::new(true));
    let watcher = watch_balances(&env, "race", running.clone());
    let (ok, refused) = storm(&env, &key, &[0], 200).await;
    assert_eq!((ok, refused), (150, 50), "exactly the calls the balance covers succeed");
    let credits = env.settled("race", 150).await;
    running.store(false, Ordering::Release);
    let reads = within("the balance watcher", watcher).await.unwrap();
    assert_eq!(message(&credits), (0, 0, 0, 0), "all spent, nothing held: {credits}");
    assert_eq!(credits["message"]["uncollected"], 0, "{credits}");
    never_negative(&credits);
    let usage = env.usage("race", ALL_DAYS).await;
    assert_eq!(usage["total"]["credits"], 150 * CREDIT, "{usage}");
    assert!(reads > 0);
    env.chat(&key, &chat_body("flat", "one more")).await.error(429, "insufficient_quota", "insufficient_quota");

    // Redis: two replicas share one balance, 100 calls each at once.
    if backend == Backend::Redis {
        assert_eq!(env.replicas.len(), 2);
        let running = Arc::new(AtomicBool::new(true));
        let watcher = watch_balances(&env, "race2", running.clone());
        let (ok, refused) = storm(&env, &key2, &[0, 1], 100).await;
        assert_eq!((ok, refused), (150, 50), "two replicas together grant exactly what the balance covers");
        let credits = env.settled("race2", 150).await;
        running.store(false, Ordering::Release);
        within("the balance watcher", watcher).await.unwrap();
        assert_eq!(message(&credits), (0, 0, 0, 0), "{credits}");
        assert_eq!(credits["message"]["uncollected"], 0, "{credits}");
        let on_b = env.credits_on(1, "race2").await;
        assert_eq!(message(&on_b), (0, 0, 0, 0), "the other replica sees the same balance: {on_b}");
    }
}

// ---------------------------------------------------------------------------
// 5. Monthly refresh
// ---------------------------------------------------------------------------

async fn plan_credits_refresh_once_at_the_month_start_in_the_workspace_zone(backend: Backend) {
    let Some(mut env) = Env::start(backend, "refresh", "2026-11-30T22:59:59Z").await else { return };
    if backend == Backend::Redis {
        // A second replica that lives through the boundary too.
        env.add_replica().await;
    }
    env.workspace("utc", "metered", None).await;
    env.workspace("berlin", "metered", Some("Europe/Berlin")).await;
    let (_, utc) = env.key("utc", Scope::Chat, None, None).await;
    let (_, berlin) = env.key("berlin", Scope::Chat, None, None).await;
    let c = CREDIT as i64;
    let allowance = METERED_CREDITS as i64 * c;
    let flat = chat_body("flat", "one credit");

    // November: utc gets 5 credits topped up and spends 12 (the plan's 10
    // first, then 2 of the top-up); berlin spends 4.
    let topup = json!({"workspace": "utc", "type": "message", "amount": 5 * CREDIT});
    env.post(&env.admin.clone(), "/v1/credits/topup", &topup).await.ok();
    for _ in 0..12 {
        env.chat(&utc, &flat).await.ok();
    }
    for _ in 0..4 {
        env.chat(&berlin, &flat).await.ok();
    }
    let u = env.settled("utc", 12).await;
    assert_eq!(message(&u), (0, 3 * c, 0, 3 * c), "plan part first, then the top-up: {u}");
    assert_eq!(u["period"], "2026-11");
    assert_eq!(u["next_refresh_ms"], at("2026-12-01T00:00:00Z"), "{u}");
    let b = env.settled("berlin", 4).await;
    assert_eq!(message(&b), (allowance - 4 * c, 0, 0, allowance - 4 * c), "{b}");
    assert_eq!((b["period"].as_str(), b["time_zone"].as_str()), (Some("2026-11"), Some("Europe/Berlin")), "{b}");
    assert_eq!(b["next_refresh_ms"], at("2026-11-30T23:00:00Z"), "midnight in Berlin: {b}");

    // 23:00:01Z: already December in Berlin, still November in UTC. Berlin
    // first sees the new month through a call: refreshed, then charged.
    env.clock.set(at("2026-11-30T23:00:01Z"));
    env.chat(&berlin, &flat).await.ok();
    let b = env.settled("berlin", 5).await;
    assert_eq!(message(&b), (allowance - c, 0, 0, allowance - c), "refreshed to the allowance, then one spent: {b}");
    assert_eq!(b["period"], "2026-12");
    assert_eq!(b["period_start_ms"], at("2026-11-30T23:00:00Z"));
    assert_eq!(b["next_refresh_ms"], at("2026-12-31T23:00:00Z"));
    let u = env.credits("utc").await;
    assert_eq!((message(&u), u["period"].as_str()), ((0, 3 * c, 0, 3 * c), Some("2026-11")), "not yet in UTC: {u}");

    // One second past midnight UTC: utc's plan part is back to the allowance,
    // its top-up is what was left of it.
    env.clock.set(at("2026-11-30T23:59:59Z"));
    assert_eq!(message(&env.credits("utc").await).0, 0);
    env.clock.set(at("2026-12-01T00:00:01Z"));
    let u = env.credits("utc").await;
    assert_eq!(message(&u), (allowance, 3 * c, 0, allowance + 3 * c), "{u}");
    assert_eq!(
        (u["period"].as_str(), u["period_start_ms"].as_i64()),
        (Some("2026-12"), Some(at("2026-12-01T00:00:00Z")))
    );
    env.chat(&utc, &flat).await.ok();
    let mut expected = (allowance - c, 3 * c, 0, allowance + 2 * c);
    assert_eq!(message(&env.settled("utc", 13).await), expected, "spent after the refresh");
    // Exactly once: reading again, or calling again, does not refresh again.
    assert_eq!(message(&env.credits("utc").await), expected);
    let b = env.credits("berlin").await;
    assert_eq!(message(&b), (allowance - c, 0, 0, allowance - c), "Berlin's December began an hour ago: {b}");

    if backend == Backend::Redis {
        // The other replica sees December for the first time now: no second refresh.
        let u = env.credits_on(1, "utc").await;
        assert_eq!(message(&u), expected, "replica B must not refresh again: {u}");
        env.chat_on(1, &utc, &flat).await.ok();
        expected = (allowance - 2 * c, 3 * c, 0, allowance + c);
        assert_eq!(message(&env.settled("utc", 14).await), expected);
        assert_eq!(message(&env.credits_on(1, "utc").await), expected);
        assert_eq!(message(&env.credits_on(1, "berlin").await), (allowance - c, 0, 0, allowance - c));
    }

    // A restarted process finds the month already refreshed.
    env.restart_replica(0).await;
    assert_eq!(message(&env.credits("utc").await), expected, "a restart does not refresh again");
    assert_eq!(message(&env.credits("berlin").await), (allowance - c, 0, 0, allowance - c));

    // Spending the whole plan part goes on into the top-up, which the next
    // refresh leaves as it is.
    let calls = (expected.0 / c) as u64 + 1;
    for _ in 0..calls {
        env.chat(&utc, &flat).await.ok();
    }
    let before = if backend == Backend::Redis { 14 } else { 13 };
    let u = env.settled("utc", before + calls).await;
    assert_eq!(message(&u), (0, 2 * c, 0, 2 * c), "{u}");
    env.clock.set(at("2027-01-01T00:00:00Z"));
    let u = env.credits("utc").await;
    assert_eq!(message(&u), (allowance, 2 * c, 0, allowance + 2 * c), "January, exactly at midnight: {u}");
    assert_eq!(u["period"], "2027-01");
    never_negative(&u);
}

/// Calls in flight when the month turns: what they hold of November's plan
/// part lapses with it (December starts at the full allowance, and their
/// settle pays from the old part); what they hold of the top-up is still held,
/// and the settle gives back what they did not use.
async fn a_call_in_flight_across_the_month_boundary(backend: Backend) {
    let Some(env) = Env::start(backend, "boundary", "2026-11-30T23:59:59Z").await else { return };
    env.workspace("planned", "metered", None).await;
    env.workspace("prepaid", "empty", None).await;
    let topup = json!({"workspace": "prepaid", "type": "message", "amount": 5000});
    env.post(&env.admin.clone(), "/v1/credits/topup", &topup).await.ok();
    let allowance = (METERED_CREDITS * CREDIT) as i64;
    let mut body = chat_stream_body("priced", "across the boundary");
    body["max_tokens"] = json!(40);
    let held = priced_cost(estimate(&body), 40) as i64;
    let full = priced_cost(PROMPT_TOKENS, COMPLETION_TOKENS) as i64;

    let mut open = Vec::new();
    for workspace in ["planned", "prepaid"] {
        let (_, key) = env.key(workspace, Scope::Chat, None, None).await;
        let (reply, upstream) = scripted_stream();
        env.mock.push(reply);
        let sse = SseReader::new(env.chat_stream(&key, &body).await);
        open.push((sse, upstream));
    }
    assert_eq!(message(&env.credits("planned").await), (allowance - held, 0, held, allowance - held));
    assert_eq!(message(&env.credits("prepaid").await), (0, 5000 - held, held, 5000 - held));

    env.clock.set(at("2026-12-01T00:00:01Z"));
    let planned = env.credits("planned").await;
    assert_eq!(message(&planned), (allowance, 0, 0, allowance), "November's holds lapsed: {planned}");
    let prepaid = env.credits("prepaid").await;
    assert_eq!(message(&prepaid), (0, 5000 - held, held, 5000 - held), "top-up holds stay held: {prepaid}");

    for (mut sse, upstream) in open {
        upstream.send_content("priced-up", "Done").await;
        upstream.finish("priced-up", Some((PROMPT_TOKENS, COMPLETION_TOKENS))).await;
        sse.rest().await;
    }
    let planned = env.settled("planned", 1).await;
    assert_eq!(message(&planned), (allowance, 0, 0, allowance), "paid from November's part: {planned}");
    let prepaid = env.settled("prepaid", 1).await;
    assert_eq!(message(&prepaid), (0, 5000 - full, 0, 5000 - full), "the unused hold came back: {prepaid}");
    never_negative(&planned);
    never_negative(&prepaid);
    assert_eq!(env.usage("planned", ALL_DAYS).await["total"]["credits"], full);
}

// ---------------------------------------------------------------------------
// 6. Top-ups
// ---------------------------------------------------------------------------

async fn a_top_up_resumes_service_at_once(backend: Backend) {
    let Some(env) = Env::start(backend, "topup", NOV_14_NOON).await else { return };
    let admin = env.admin.clone();
    env.workspace("broke", "empty", None).await;
    let (_, chat) = env.key("broke", Scope::Chat, None, None).await;
    let (_, full) = env.key("broke", Scope::Full, None, None).await;
    let body = chat_body("per_request", "anything");

    let credits = env.credits("broke").await;
    assert_eq!(credits["message"]["metered"], true, "a plan of 0 credits is metered: {credits}");
    assert_eq!(message(&credits), (0, 0, 0, 0));
    let refused = env.chat(&chat, &body).await;
    refused.error(429, "insufficient_quota", "insufficient_quota");
    assert_eq!(refused.header("x-should-retry"), Some("false"), "{:?}", refused.headers);
    assert!(refused.header("retry-after").is_none());
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("message"), "{}", refused.text);
    assert_eq!(env.mock.attempts(), 0, "refused before the upstream");

    // An admin tops up: the very next call goes through, no restart.
    let topup = |amount: u64| json!({"workspace": "broke", "type": "message", "amount": amount});
    let answer = env.post(&admin, "/v1/credits/topup", &topup(1500)).await;
    let balances = answer.ok();
    assert_eq!((balances["object"].as_str(), balances["workspace"].as_str()), (Some("credits"), Some("broke")));
    assert_eq!(message(balances), (0, 1500, 0, 1500), "{balances}");
    env.chat(&chat, &body).await.ok();
    assert_eq!(message(&env.settled("broke", 1).await), (0, 500, 0, 500));
    env.chat(&chat, &body).await.error(429, "insufficient_quota", "insufficient_quota");
    // Through the /api/v1 alias.
    let answer = env.post(&admin, "/api/v1/credits/topup", &topup(500)).await;
    assert_eq!(message(answer.ok()), (0, 1000, 0, 1000));
    env.chat(&chat, &body).await.ok();
    assert_eq!(message(&env.settled("broke", 2).await), (0, 0, 0, 0));
    env.chat(&chat, &body).await.error(429, "insufficient_quota", "insufficient_quota");

    // `empty` meters message credits only: integration credits would never be
    // spent, so a top-up of them is refused and says why.
    let answer =
        env.post(&admin, "/v1/credits/topup", &json!({"workspace": "broke", "type": "integration", "amount": 7})).await;
    answer.error(400, "invalid_request_error", "invalid_value");
    assert_eq!(answer.body["error"]["param"], "type");
    assert!(answer.text.contains("does not meter integration credits"), "{}", answer.text);

    // Only admin keys top up.
    for key in [&chat, &full] {
        let answer = env.post(key, "/v1/credits/topup", &topup(CREDIT)).await;
        answer.error(403, "permission_error", "insufficient_scope");
    }
    // Bad bodies are refused with a 400 that says why.
    let invalid = [
        (json!({"workspace": "broke", "type": "bogus", "amount": 1}), "type"),
        (json!({"workspace": "broke", "type": "message", "amount": 0}), "amount"),
        (json!({"workspace": "broke", "type": "message", "amount": (1u64 << 53) + 1}), "amount"),
    ];
    for (body, param) in invalid {
        let answer = env.post(&admin, "/v1/credits/topup", &body).await;
        answer.error(400, "invalid_request_error", "invalid_value");
        assert_eq!(answer.body["error"]["param"], param, "{body}: {}", answer.text);
    }
    for body in [r#"{"workspace": "broke", "type": "message""#, "", r#"[1, 2]"#] {
        env.post_raw(&admin, "/v1/credits/topup", body).await.error(400, "invalid_request_error", "invalid_json");
    }
    // A body that parses but is not the request: the field and what is wrong with it.
    let wrong = [
        (r#"{"workspace": "broke", "type": "message", "amount": -5}"#, "invalid_type", "amount"),
        (r#"{"workspace": "broke", "type": "message", "amount": 1.5}"#, "invalid_type", "amount"),
        (r#"{"workspace": "broke", "type": "message", "amount": "5"}"#, "invalid_type", "amount"),
        (r#"{"workspace": "broke", "type": "message"}"#, "missing_required_parameter", "amount"),
        (r#"{"workspace": "broke", "type": "message", "amount": 5, "note": "x"}"#, "invalid_value", "note"),
    ];
    for (body, code, param) in wrong {
        let answer = env.post_raw(&admin, "/v1/credits/topup", body).await;
        answer.error(400, "invalid_request_error", code);
        assert_eq!(answer.body["error"]["param"], param, "{body}: {}", answer.text);
    }
    let answer =
        env.post(&admin, "/v1/credits/topup", &json!({"workspace": "nope", "type": "message", "amount": 1})).await;
    answer.error(404, "not_found_error", "not_found");
    let credits = env.credits("broke").await;
    assert_eq!(message(&credits), (0, 0, 0, 0), "refused top-ups changed nothing: {credits}");
    assert_eq!(credits["integration"]["top_up"], 0);
}

/// A top-up part holds at most 2^53 micro-credits (`MAX_BALANCE`, the largest
/// integer a Lua script counts exactly): a top-up past it is refused.
async fn a_top_up_part_never_passes_2_pow_53(backend: Backend) {
    let Some(env) = Env::start(backend, "topup-max", NOV_14_NOON).await else { return };
    let admin = env.admin.clone();
    env.workspace("rich", "empty", None).await;
    let rich = |amount: u64| json!({"workspace": "rich", "type": "message", "amount": amount});
    let max = 1i64 << 53;
    assert_eq!(message(env.post(&admin, "/v1/credits/topup", &rich(1 << 52)).await.ok()).1, 1 << 52);
    assert_eq!(message(env.post(&admin, "/v1/credits/topup", &rich((1 << 52) - 1)).await.ok()).1, max - 1);
    for amount in [2, 1 << 20] {
        let answer = env.post(&admin, "/v1/credits/topup", &rich(amount)).await;
        answer.error(400, "invalid_request_error", "invalid_value");
        assert_eq!(answer.body["error"]["param"], "amount");
        assert_eq!(message(&env.credits("rich").await).1, max - 1, "a refused top-up adds nothing");
    }
    assert_eq!(message(env.post(&admin, "/v1/credits/topup", &rich(1)).await.ok()).1, max, "exactly 2^53 is allowed");
    let answer = env.post(&admin, "/v1/credits/topup", &rich(1)).await;
    answer.error(400, "invalid_request_error", "invalid_value");
    assert_eq!(message(&env.credits("rich").await).1, max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded_a_top_up_part_never_passes_2_pow_53() {
    a_top_up_part_never_passes_2_pow_53(Backend::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_top_up_part_never_passes_2_pow_53() {
    a_top_up_part_never_passes_2_pow_53(Backend::Redis).await
}

// ---------------------------------------------------------------------------
// 7. Who reads what
// ---------------------------------------------------------------------------

/// A usage row as the API writes it.
fn row(day: &str, key_id: &str, agent: &str, requests: u64, price: impl Fn(u64, u64) -> u64) -> Value {
    let (input, output) = (PROMPT_TOKENS * requests, COMPLETION_TOKENS * requests);
    json!({"day": day, "key_id": key_id, "agent": agent, "requests": requests, "input_tokens": input,
           "output_tokens": output, "credits": price(PROMPT_TOKENS, COMPLETION_TOKENS) * requests})
}

fn sorted_rows(usage: &Value) -> Vec<Value> {
    let mut rows = usage["data"].as_array().unwrap_or_else(|| panic!("usage rows: {usage}")).clone();
    rows.sort_by_key(|r| (r["day"].to_string(), r["key_id"].to_string(), r["agent"].to_string()));
    rows
}

async fn credits_and_usage_are_scoped_to_the_callers_workspace(backend: Backend) {
    let Some(env) = Env::start(backend, "scoping", NOV_14_NOON).await else { return };
    let admin = env.admin.clone();
    env.workspace("acme", "metered", None).await;
    env.workspace("other", "default", None).await;
    let (chat_id, chat) = env.key("acme", Scope::Chat, None, None).await;
    let (full_id, full) = env.key("acme", Scope::Full, None, None).await;
    let (_, stranger) = env.key("other", Scope::Chat, None, None).await;

    // GET /v1/credits: a key reads its own workspace.
    let own = env.get(&chat, "/v1/credits").await;
    let own = own.ok().clone();
    assert_eq!(own["object"], "credits");
    assert_eq!(own["workspace"], "acme");
    assert_eq!(own["unit"], "micro-credits");
    assert_eq!(own["time_zone"], "UTC");
    assert_eq!(own["period"], "2026-11");
    assert_eq!(own["period_start_ms"], at("2026-11-01T00:00:00Z"));
    assert_eq!(own["next_refresh_ms"], at("2026-12-01T00:00:00Z"));
    assert_eq!(own["message"]["plan_allowance"], METERED_CREDITS * CREDIT);
    assert_eq!(own["message"]["metered"], true);
    assert_eq!(own["integration"]["metered"], false);
    assert!(own["integration"]["plan_allowance"].is_null(), "{own}");
    assert_eq!(env.get(&chat, "/v1/credits?workspace=acme").await.ok()["workspace"], "acme");
    assert_eq!(env.get(&chat, "/api/v1/credits").await.ok(), &own, "the /api/v1 alias");
    for (key, query) in [(&chat, "other"), (&full, "other"), (&stranger, "acme")] {
        let answer = env.get(key, &format!("/v1/credits?workspace={query}")).await;
        answer.error(403, "permission_error", "insufficient_scope");
    }
    let theirs = env.get(&stranger, "/v1/credits").await;
    assert_eq!(theirs.ok()["workspace"], "other");
    assert_eq!(theirs.body["message"]["metered"], false, "the default plan meters nothing");
    assert_eq!(env.get(&admin, "/v1/credits?workspace=other").await.ok()["workspace"], "other");
    assert_eq!(env.get(&admin, "/v1/credits").await.ok()["workspace"], "admin");
    env.get(&admin, "/v1/credits?workspace=nope").await.error(404, "not_found_error", "not_found");
    env.get("tg_not_a_key", "/v1/credits").await.error(401, "invalid_request_error", "invalid_api_key");

    // Usage per key, agent and UTC day.
    let priced = chat_body("priced", "usage");
    let agent = chat_body(AGENT, "usage");
    for (key, body) in [(&chat, &priced), (&chat, &priced), (&chat, &agent), (&full, &priced)] {
        env.chat(key, body).await.ok();
    }
    env.settled("acme", 4).await;
    env.clock.set(at("2026-11-15T09:00:00Z"));
    env.chat(&chat, &priced).await.ok();
    env.settled("acme", 5).await;
    let free = |_: u64, _: u64| 0;
    let all = vec![
        row("2026-11-14", &chat_id, AGENT, 1, free),
        row("2026-11-14", &chat_id, "priced", 2, priced_cost),
        row("2026-11-14", &full_id, "priced", 1, priced_cost),
        row("2026-11-15", &chat_id, "priced", 1, priced_cost),
    ];
    let mut all = all;
    all.sort_by_key(|r| (r["day"].to_string(), r["key_id"].to_string(), r["agent"].to_string()));

    let usage = env.get(&chat, "/v1/usage?from=2026-11-14&to=2026-11-15").await;
    let usage = usage.ok().clone();
    assert_eq!((usage["object"].as_str(), usage["workspace"].as_str()), (Some("list"), Some("acme")));
    assert_eq!((usage["from"].as_str(), usage["to"].as_str()), (Some("2026-11-14"), Some("2026-11-15")));
    assert_eq!(sorted_rows(&usage), all, "{usage}");
    let credits = 4 * priced_cost(PROMPT_TOKENS, COMPLETION_TOKENS);
    let total = json!({"requests": 5, "input_tokens": 5 * PROMPT_TOKENS, "output_tokens": 5 * COMPLETION_TOKENS, "credits": credits});
    assert_eq!(usage["total"], total);
    // The default range is the last 30 UTC days up to today (the clock's).
    let default = env.get(&chat, "/v1/usage").await;
    assert_eq!(sorted_rows(default.ok()), all);
    assert_eq!((default.body["from"].as_str(), default.body["to"].as_str()), (Some("2026-10-17"), Some("2026-11-15")));
    assert_eq!(env.get(&chat, "/api/v1/usage").await.ok(), default.ok(), "the /api/v1 alias");

    let filtered = |query: &'static str| {
        let env = &env;
        let chat = chat.clone();
        async move { sorted_rows(env.get(&chat, &format!("/v1/usage?from=2026-11-14&to=2026-11-15&{query}")).await.ok()) }
    };
    let today = env.get(&chat, "/v1/usage?from=2026-11-15&to=2026-11-15").await;
    let expected: Vec<Value> = all.iter().filter(|r| r["day"] == "2026-11-15").cloned().collect();
    assert_eq!(sorted_rows(today.ok()), expected);
    let by_key = env.get(&chat, &format!("/v1/usage?from=2026-11-14&to=2026-11-15&key_id={chat_id}")).await;
    let expected: Vec<Value> = all.iter().filter(|r| r["key_id"] == chat_id.as_str()).cloned().collect();
    assert_eq!(sorted_rows(by_key.ok()), expected);
    assert_eq!(by_key.body["total"]["requests"], 4, "the total follows the filters");
    assert_eq!(filtered("agent=helper").await, vec![row("2026-11-14", &chat_id, AGENT, 1, free)]);
    let both = env.get(&chat, &format!("/v1/usage?from=2026-11-14&to=2026-11-15&key_id={full_id}&agent=priced")).await;
    assert_eq!(sorted_rows(both.ok()), vec![row("2026-11-14", &full_id, "priced", 1, priced_cost)]);
    let none = env.get(&chat, "/v1/usage?from=2026-11-14&to=2026-11-15&agent=nope").await;
    assert_eq!((none.ok()["data"].clone(), none.body["total"]["requests"].clone()), (json!([]), json!(0)));

    // Bad ranges: 400 naming the parameter.
    for query in [
        "from=2026-13-01&to=2026-11-15",
        "from=2026-11-14&to=tomorrow",
        "from=2026-11-15&to=2026-11-14",
        "from=2025-01-01&to=2026-11-15",
        "from=14.11.2026",
        "from=&to=2026-11-15",
    ] {
        let answer = env.get(&chat, &format!("/v1/usage?{query}")).await;
        answer.error(400, "invalid_request_error", "invalid_value");
        assert_eq!(answer.body["error"]["param"], "from", "{query}: {}", answer.text);
    }
    // 366 days is the longest range.
    env.get(&chat, "/v1/usage?from=2025-11-15&to=2026-11-15").await.ok();

    // Another workspace's usage: its own (none), never acme's; an admin reads any.
    let theirs = env.get(&stranger, "/v1/usage").await;
    assert_eq!((theirs.ok()["workspace"].as_str(), theirs.body["data"].clone()), (Some("other"), json!([])));
    env.get(&stranger, "/v1/usage?workspace=acme").await.error(403, "permission_error", "insufficient_scope");
    env.get(&chat, "/v1/usage?workspace=other").await.error(403, "permission_error", "insufficient_scope");
    let as_admin = env.get(&admin, "/v1/usage?workspace=acme&from=2026-11-14&to=2026-11-15").await;
    assert_eq!(sorted_rows(as_admin.ok()), all);
}

// ---------------------------------------------------------------------------
// 8. Reservations whose settle never comes
// ---------------------------------------------------------------------------

/// A replica dies mid-call: its reservation is never settled. Embedded: the
/// file holds the balance including what calls in flight held, so the restart
/// releases it. Redis: the reaper of any replica releases it once it expired;
/// a settle arriving after that still charges the call once, and a repeated
/// settle (a retry) charges nothing more.
async fn a_reservation_whose_settle_never_comes_is_released(backend: Backend) {
    let Some(mut env) = Env::start(backend, "reaper", NOV_14_NOON).await else { return };
    env.workspace("crash", "metered", None).await;
    let allowance = (METERED_CREDITS * CREDIT) as i64;
    let price =
        tollgate::config::Price { request: REQUEST_PRICE, input_per_1k: INPUT_PER_1K, output_per_1k: OUTPUT_PER_1K };
    let (key_id, workspace): (Arc<str>, Arc<str>) = ("key_crashed".into(), "crash".into());
    let request = tollgate::credits::Request {
        key_id: &key_id,
        workspace: &workspace,
        key_rpm: None,
        key_tpm: None,
        price: &price,
        prompt_estimate: 100,
        max_tokens: Some(1000),
    };
    let held = priced_cost(100, 1000);
    let (ticket, _) = within("admit", env.replicas[0].meter.admit(request)).await.expect("admitted");
    let credits = env.credits("crash").await;
    assert_eq!(message(&credits), (allowance - held as i64, 0, held as i64, allowance - held as i64), "{credits}");

    match backend {
        Backend::Embedded => {
            // The periodic flush ran (every 100 ms here), then kill -9.
            within("a flush", env.replicas[0].meter.ledger.flush()).await.unwrap();
            drop(ticket);
            env.kill_replica(0).await;
            let credits = env.credits("crash").await;
            assert_eq!(message(&credits), (allowance, 0, 0, allowance), "released by the restart: {credits}");
        }
        Backend::Redis => {
            env.add_replica().await;
            env.kill_replica(0).await;
            // Not before it expires (the reaper runs every second meanwhile).
            let reaped = env.replicas[1].meter.ledger.reap(env.clock.now_ms()).await.unwrap();
            assert_eq!(reaped, 0, "nothing has expired yet");
            assert_eq!(message(&env.credits("crash").await).2, held as i64);
            env.clock.set(at(NOV_14_NOON) + 601_000);
            let credits = within("the reaper", async {
                loop {
                    let credits = env.credits("crash").await;
                    if message(&credits).2 == 0 {
                        return credits;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            assert_eq!(message(&credits), (allowance, 0, 0, allowance), "released by the reaper: {credits}");

            // The dead replica's settle shows up after all (it was queued
            // elsewhere): charged once, from the balance directly.
            let meter = env.replicas[1].meter.clone();
            let usage = tollgate::usage::Usage {
                prompt_tokens: PROMPT_TOKENS,
                completion_tokens: COMPLETION_TOKENS,
                estimated: false,
            };
            let id = ticket.admit.id.clone();
            meter.settle(ticket, "priced".into(), &price, tollgate::usage::Outcome::Completed, &usage);
            within("the settle", meter.ledger.flush()).await.unwrap();
            let full = priced_cost(PROMPT_TOKENS, COMPLETION_TOKENS) as i64;
            assert_eq!(message(&env.credits("crash").await), (allowance - full, 0, 0, allowance - full));
            // The same settle again (a retry after a lost answer): nothing changes.
            meter.ledger.settle(tollgate::credits::Settlement {
                ticket_id: id,
                workspace: workspace.clone(),
                key: key_id.clone(),
                agent: "priced".into(),
                kind: tollgate::credits::Kind::Message,
                period: "2026-11".into(),
                parts: (held, 0),
                limits: Default::default(),
                tokens_charged: 1100,
                tokens_used: 14,
                cost: full as u64,
                input_tokens: PROMPT_TOKENS,
                output_tokens: COMPLETION_TOKENS,
                day: "2026-11-14".into(),
                expires_at_ms: 0,
                recorded: true,
                lease: None,
            });
            within("the settle", meter.ledger.flush()).await.unwrap();
            let credits = env.credits("crash").await;
            assert_eq!(message(&credits), (allowance - full, 0, 0, allowance - full), "settled once: {credits}");
            assert_eq!(env.usage("crash", ALL_DAYS).await["total"]["requests"], 1);
        }
    }
    // Service goes on.
    let (_, key) = env.key("crash", Scope::Chat, None, None).await;
    env.chat(&key, &chat_body("priced", "after the crash")).await.ok();
}

// ---------------------------------------------------------------------------
// 9. Worst cases beyond any balance
// ---------------------------------------------------------------------------

/// A `max_tokens` so large that the priced worst case passes 2^63
/// micro-credits must be refused like any reservation the balance cannot
/// cover, and the upstream never called.
async fn an_absurd_max_tokens_cannot_skip_the_balance_check(backend: Backend) {
    let Some(env) = Env::start(backend, "absurd", NOV_14_NOON).await else { return };
    let allowance = (METERED_CREDITS * CREDIT) as i64;
    for (workspace, plan, balance) in [("poor", "metered", allowance), ("broke", "empty", 0)] {
        env.workspace(workspace, plan, None).await;
        let (_, key) = env.key(workspace, Scope::Chat, None, None).await;
        // i64::MAX is the largest max_tokens the parser accepts; 4e18 tokens at
        // 2700 per 1K are still past 2^63 micro-credits; 1e9 is merely too much.
        for max_tokens in [i64::MAX as u64, 4_000_000_000_000_000_000, 1_000_000_000] {
            let mut body = chat_body("priced", "how much can I get?");
            body["max_tokens"] = json!(max_tokens);
            let refused = env.chat(&key, &body).await;
            refused.error(429, "insufficient_quota", "insufficient_quota");
            assert_eq!(refused.header("x-should-retry"), Some("false"));
        }
        assert_eq!(env.mock.attempts(), 0, "nothing reached the upstream");
        let credits = env.settled(workspace, 0).await;
        assert_eq!(message(&credits), (balance, 0, 0, balance), "{credits}");
        never_negative(&credits);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded_an_absurd_max_tokens_cannot_skip_the_balance_check() {
    an_absurd_max_tokens_cannot_skip_the_balance_check(Backend::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_an_absurd_max_tokens_cannot_skip_the_balance_check() {
    an_absurd_max_tokens_cannot_skip_the_balance_check(Backend::Redis).await
}

/// A metered call answered 503 because Redis hung (SIGSTOP) must not hold
/// credits when Redis resumes and runs the admission it was sent: the
/// gateway's cancel undoes it at once, no reaper needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_an_admission_given_up_on_leaves_the_balance_untouched() {
    let Some(env) = Env::start(Backend::Redis, "given_up", NOV_14_NOON).await else { return };
    env.workspace("hung", "metered", None).await;
    // Two requests a minute: one admitted, one given up on, and the next
    // passes only if the late admission's request was given back.
    let (_, key) = env.key("hung", Scope::Chat, Some(2), None).await;
    let body = json!({"model": "priced", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]});
    env.chat(&key, &body).await.ok();
    let before = env.settled("hung", 1).await;

    let redis = env._redis.as_ref().expect("a Redis env");
    redis.pause();
    env.chat(&key, &body).await.error(503, "api_error", "store_unavailable");
    redis.resume();

    // Redis now runs the admission it had queued, then the gateway's cancel.
    // Watch the balance for a while: nothing may stay held.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut after = env.credits("hung").await;
    while Instant::now() < deadline {
        after = env.credits("hung").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(message(&after), message(&before), "before {before}\nafter {after}");
    let next = env.chat(&key, &body).await;
    assert_eq!(next.status, 200, "the refused call's request was given back to the limiter: {}", next.text);
}
