//! The Redis ledger's settle batches (issue 15): settles that gather while
//! the queue is busy go to Redis in one `settle.lua` call per workspace, and
//! a batch charges, releases, counts usage and corrects the token limiters
//! exactly as the same settles one by one would, at most once per
//! reservation id.
//!
//! The ledger is driven directly on a current-thread runtime, so every settle
//! is queued before the queue's task runs: what would gather under load is
//! here one deterministic batch. Each test starts its own `redis-server` on a
//! free port (skipped loudly when none is installed, mandatory under
//! `CI=true`).

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use std::sync::Arc;
use std::time::Duration;

use redis_server::RedisServer;
use tollgate::credits::redis::RedisLedger;
use tollgate::credits::{Admit, Kind, Ledger, Period, Settlement, Terms, Ticket, MICRO};
use tollgate::limits::LimitSet;
use tollgate::store::redis::{RedisStore, Timeouts};
use tollgate::tasks::Tasks;

const PREFIX: &str = "tg";
/// The key tpm limit: 60 µs of the limiter per token.
const KEY_TPM: u32 = 1_000_000;
const TOKENS_AT_ADMISSION: u64 = 1000;
const TOKENS_USED: u64 = 1500;

struct Ledgers {
    server: RedisServer,
    ledger: Arc<RedisLedger>,
    _tasks: Tasks,
}

async fn start(test: &str) -> Option<Ledgers> {
    let Some(server) = RedisServer::start() else {
        tools::skip(test, "redis-server is not installed");
        return None;
    };
    let timeouts = Timeouts { connect: Duration::from_secs(2), response: Duration::from_secs(2) };
    let store = RedisStore::connect(&[server.url()], false, PREFIX, timeouts).await.expect("connect to redis-server");
    let tasks = Tasks::on_current_runtime();
    let ledger = RedisLedger::new(Arc::new(store), &tasks);
    // The first call of a script is an EVALSHA that Redis refuses (NOSCRIPT),
    // then a load and the call again: done here, so the tests count only
    // the calls that carry settles.
    let warm = admit(&ledger, "warm-up", "w0", 1).await;
    ledger.settle(settlement(&warm, "warm-up", 1));
    ledger.flush().await.unwrap();
    Some(Ledgers { server, ledger, _tasks: tasks })
}

fn terms(workspace: &str) -> Terms {
    Terms {
        workspace: workspace.into(),
        allowance: [Some(100 * MICRO), None],
        rpm: None,
        tpm: None,
        key_rpm: None,
        key_tpm: Some(KEY_TPM),
        time_zone: chrono_tz::UTC,
        low_credits_threshold: None,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One request of key `k` in `workspace`, holding `amount`, under `limits`.
fn request(workspace: &str, id: &str, amount: u64, limits: LimitSet) -> Admit {
    let t = terms(workspace);
    let now_ms = now_ms();
    Admit {
        id: id.into(),
        workspace: workspace.into(),
        key: "k".into(),
        limits,
        tokens: TOKENS_AT_ADMISSION,
        kind: Kind::Message,
        amount,
        period: Period::at(now_ms, t.time_zone),
        allowance: t.allowance,
        now_ms,
        expires_at_ms: now_ms + 600_000,
    }
}

async fn admit(ledger: &RedisLedger, workspace: &str, id: &str, amount: u64) -> Ticket {
    let limits = LimitSet { key_tpm: Some(KEY_TPM), ..LimitSet::default() };
    ledger.admit(request(workspace, id, amount, limits)).await.expect("admitted").0
}

fn settlement(ticket: &Ticket, agent: &str, cost: u64) -> Settlement {
    let a = &ticket.admit;
    Settlement {
        ticket_id: a.id.clone(),
        workspace: a.workspace.clone(),
        key: a.key.clone(),
        agent: agent.into(),
        kind: a.kind,
        period: ticket.period.clone(),
        parts: ticket.parts,
        limits: a.limits,
        tokens_charged: a.tokens,
        tokens_used: TOKENS_USED,
        cost,
        input_tokens: 1000,
        output_tokens: 500,
        day: Period::utc_day(now_ms()),
        expires_at_ms: a.expires_at_ms,
        recorded: ticket.recorded,
        lease: ticket.lease.clone(),
    }
}

/// Calls of `command` the server has run (`INFO commandstats`).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.command(&["INFO", "commandstats"]);
    let line = info.lines().find(|l| l.starts_with(&format!("cmdstat_{command}:")));
    line.and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok()).unwrap_or(0)
}

/// The key tpm limiter's theoretical arrival time, µs.
fn tat(server: &RedisServer, workspace: &str) -> i64 {
    server.command(&["GET", &format!("{PREFIX}:rl:{{{workspace}}}:k:k:t")]).trim().parse().expect("a limiter TAT")
}

#[tokio::test(flavor = "current_thread")]
async fn settles_that_gather_go_in_one_call_per_workspace_and_apply_exactly() {
    let Some(env) = start("settles_that_gather_go_in_one_call_per_workspace_and_apply_exactly").await else {
        return;
    };
    let (ledger, server) = (&env.ledger, &env.server);
    // 100 calls in "a", 20 in "b", each holding half a credit.
    let mut tickets = Vec::new();
    for i in 0..100 {
        tickets.push(admit(ledger, "a", &format!("a{i}"), MICRO / 2).await);
    }
    for i in 0..20 {
        tickets.push(admit(ledger, "b", &format!("b{i}"), MICRO / 2).await);
    }
    let held = ledger.balances(&terms("a"), now_ms()).await.unwrap();
    assert_eq!(held.message.reserved, 50 * MICRO as i64, "{held:?}");
    let tat_before = tat(server, "a");

    let (scripts, expires) = (calls(server, "evalsha"), calls(server, "expire"));
    // Costs of 0.3 credit, some above what was held (0.7 > 0.5), over two
    // agents; then every settle once more, as a retry would send it.
    for (i, t) in tickets.iter().enumerate() {
        let cost = if i % 10 == 0 { 7 * MICRO / 10 } else { 3 * MICRO / 10 };
        ledger.settle(settlement(t, if i % 2 == 0 { "even" } else { "odd" }, cost));
    }
    ledger.flush().await.unwrap();
    assert_eq!(calls(server, "evalsha") - scripts, 2, "one settle call per workspace");
    assert_eq!(calls(server, "expire") - expires, 2, "one usage write per workspace and day");
    for (i, t) in tickets.iter().enumerate() {
        ledger.settle(settlement(t, "retry", if i % 10 == 0 { 7 * MICRO / 10 } else { 3 * MICRO / 10 }));
    }
    ledger.flush().await.unwrap();

    // a: 10 calls at 0.7 + 90 at 0.3 = 34 credits; b: 2 × 0.7 + 18 × 0.3 = 6.8.
    for (ws, spent) in [("a", 34 * MICRO), ("b", 6_800_000)] {
        let b = ledger.balances(&terms(ws), now_ms()).await.unwrap().message;
        assert_eq!((b.reserved, b.uncollected), (0, 0), "{ws}: {b:?}");
        assert_eq!(b.plan_remaining, (100 * MICRO - spent) as i64, "{ws}: charged exactly once: {b:?}");
    }
    let day = Period::utc_day(now_ms());
    let mut rows = ledger.usage("a", &day, &day).await.unwrap();
    rows.sort_by(|x, y| x.agent.cmp(&y.agent));
    let totals: Vec<_> =
        rows.iter().map(|r| (r.agent.as_str(), r.requests, r.input_tokens, r.output_tokens, r.credits)).collect();
    // "even" holds i = 0, 10, 20, ... (all ten 0.7-credit calls) and 40 others.
    assert_eq!(
        totals,
        [
            ("even", 50, 50_000, 25_000, 10 * 7 * MICRO / 10 + 40 * 3 * MICRO / 10),
            ("odd", 50, 50_000, 25_000, 15 * MICRO)
        ]
    );
    // Each settle moved the limiter by the 500 tokens used beyond the
    // admission's estimate: 100 × 500 tokens × 60 µs, applied once.
    assert_eq!(tat(server, "a") - tat_before, 100 * 500 * 60, "token corrections, once each");
}

#[tokio::test(flavor = "current_thread")]
async fn a_batch_larger_than_one_call_holds_is_split() {
    let Some(env) = start("a_batch_larger_than_one_call_holds_is_split").await else { return };
    let (ledger, server) = (&env.ledger, &env.server);
    let mut tickets = Vec::new();
    for i in 0..300 {
        tickets.push(admit(ledger, "a", &format!("a{i}"), 1000).await);
    }
    let scripts = calls(server, "evalsha");
    for t in &tickets {
        ledger.settle(settlement(t, "agent", 1000));
    }
    ledger.flush().await.unwrap();
    // 256 per call at most: the queue took 256, then the other 44.
    assert_eq!(calls(server, "evalsha") - scripts, 2);
    let b = ledger.balances(&terms("a"), now_ms()).await.unwrap().message;
    assert_eq!((b.reserved, b.plan_remaining), (0, (100 * MICRO - 300 * 1000) as i64), "{b:?}");
}

// ---------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------

/// Requests one lease grants in these tests: a key asks for one after more
/// than 4 admissions within the lease time.
const LEASE: u64 = 8;
/// The key rpm limit: 10 ms of the limiter per request, so its arrival time
/// stays ahead of Redis's clock for the whole test (and moves exactly).
const KEY_RPM: u32 = 6000;

async fn start_leased(test: &str) -> Option<Ledgers> {
    let mut env = start(test).await?;
    let timeouts = Timeouts { connect: Duration::from_secs(2), response: Duration::from_millis(500) };
    let store = RedisStore::connect(&[env.server.url()], false, PREFIX, timeouts).await.expect("connect");
    // Lease time long enough that only the test retires them.
    env.ledger = RedisLedger::with_leases(Arc::new(store), &env._tasks, LEASE, Duration::from_secs(60));
    Some(env)
}

fn rpm_and_tpm(key_rpm: u32) -> LimitSet {
    LimitSet { key_tpm: Some(KEY_TPM), key_rpm: Some(key_rpm), ..LimitSet::default() }
}

async fn admit_limited(ledger: &RedisLedger, id: &str, amount: u64, key_rpm: u32) -> Ticket {
    ledger.admit(request("a", id, amount, rpm_and_tpm(key_rpm))).await.expect("admitted").0
}

fn limiter(server: &RedisServer, which: &str) -> i64 {
    let tat = server.command(&["GET", &format!("{PREFIX}:rl:{{a}}:k:k:{which}")]);
    tat.trim().parse().unwrap_or_else(|_| panic!("a limiter TAT, not {tat:?}"))
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_key_is_admitted_from_leases_and_what_they_did_not_use_goes_back() {
    let test = "a_busy_key_is_admitted_from_leases_and_what_they_did_not_use_goes_back";
    let Some(env) = start_leased(test).await else { return };
    let (ledger, server) = (&env.ledger, &env.server);
    let amount = MICRO / 100;
    let scripts = calls(server, "evalsha");
    let first = admit_limited(ledger, "r0", amount, KEY_RPM).await;
    let (rpm_first, tpm_first) = (limiter(server, "r"), limiter(server, "t"));
    let mut tickets = vec![first];
    for i in 1..15 {
        tickets.push(admit_limited(ledger, &format!("r{i}"), amount, KEY_RPM).await);
    }
    // 4 one by one; the 5th takes a lease of 8 (calls 5–12); the 13th another
    // (13–15, 5 left unused).
    assert_eq!(calls(server, "evalsha") - scripts, 6, "15 admissions, 6 round trips");
    // Read in Redis itself: a balance read through the ledger would retire the leases.
    let held = server.command(&["HGET", &format!("{PREFIX}:credits:{{a}}"), "message:held_plan"]);
    assert_eq!(held.trim(), (20 * amount).to_string(), "the leases hold their whole slices");

    let costs: Vec<u64> = (0..15).map(|i| if i % 3 == 0 { 2 * amount } else { amount / 2 }).collect();
    for (t, cost) in tickets.iter().zip(&costs) {
        ledger.settle(settlement(t, "agent", *cost));
    }
    // A balance read on this replica returns its idle leases first.
    let b = ledger_balance(ledger).await;
    let spent: u64 = costs.iter().sum();
    assert_eq!((b.reserved, b.uncollected), (0, 0), "{b:?}");
    assert_eq!(b.plan_remaining, (100 * MICRO - spent) as i64, "each call charged its cost once: {b:?}");
    ledger.flush().await.unwrap();
    let day = Period::utc_day(now_ms());
    let rows = ledger.usage("a", &day, &day).await.unwrap();
    let totals: Vec<_> = rows.iter().map(|r| (r.requests, r.input_tokens, r.credits)).collect();
    assert_eq!(totals, [(15, 15_000, spent)], "one usage line per call, none for the leases");
    // The limiters: 15 requests and their 1500 tokens each, the unused 5
    // requests and the estimates' differences given back.
    assert_eq!(limiter(server, "r") - rpm_first, 14 * 10_000, "rpm: 15 requests used");
    assert_eq!(limiter(server, "t") - tpm_first, (15 * TOKENS_USED as i64 - 1000) * 60, "tpm: the tokens used");
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_near_its_limit_is_admitted_one_request_at_a_time() {
    let Some(env) = start_leased("a_key_near_its_limit_is_admitted_one_request_at_a_time").await else {
        return;
    };
    let (ledger, server) = (&env.ledger, &env.server);
    let scripts = calls(server, "evalsha");
    // An rpm of 100 cannot grant 16 leases of 8: every admission goes to Redis.
    for i in 0..20 {
        admit_limited(ledger, &format!("r{i}"), MICRO / 100, 100).await;
    }
    assert_eq!(calls(server, "evalsha") - scripts, 20);
    assert_eq!(ledger_balance(ledger).await.reserved, (20 * MICRO / 100) as i64);
}

#[tokio::test(flavor = "current_thread")]
async fn a_lease_taken_while_the_gateway_gave_up_is_undone_whole() {
    let Some(env) = start_leased("a_lease_taken_while_the_gateway_gave_up_is_undone_whole").await else {
        return;
    };
    let (ledger, server) = (&env.ledger, &env.server);
    let amount = MICRO / 100;
    // 0.4 s of the limiter per request: still ahead of the clock after the
    // hang, so the arrival time's return is seen exactly.
    let rpm = 150;
    let mut tickets = Vec::new();
    for i in 0..4 {
        tickets.push(admit_limited(ledger, &format!("r{i}"), amount, rpm).await);
    }
    let before = (limiter(server, "r"), ledger_balance(ledger).await);
    // The 5th asks for a lease; Redis hangs past the response timeout, then
    // runs it, then the gateway's cancel.
    server.pause();
    assert!(
        ledger.admit(request("a", "late", amount, rpm_and_tpm(rpm))).await.is_err(),
        "Redis did not answer in time"
    );
    server.resume();
    ledger.flush().await.unwrap();
    let after = (limiter(server, "r"), ledger_balance(ledger).await);
    assert_eq!(after, before, "the lease's 8 requests and its credits all given back");
    drop(tickets);
}

async fn ledger_balance(ledger: &RedisLedger) -> tollgate::credits::Balance {
    ledger.balances(&terms("a"), now_ms()).await.expect("balances").message
}

#[tokio::test(flavor = "current_thread")]
async fn requests_of_a_busy_key_wait_for_the_lease_being_taken() {
    let Some(env) = start_leased("requests_of_a_busy_key_wait_for_the_lease_being_taken").await else { return };
    let (ledger, server) = (&env.ledger, &env.server);
    let amount = MICRO / 100;
    // Busy: 4 one by one, then a lease of 8, used up.
    let mut tickets = Vec::new();
    for i in 0..12 {
        tickets.push(admit_limited(ledger, &format!("w{i}"), amount, KEY_RPM).await);
    }
    let scripts = calls(server, "evalsha");
    // 24 at once: one takes a lease while the others wait, 8 at a time.
    let ids: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
    let at_once = ids.iter().map(|id| admit_limited(ledger, id, amount, KEY_RPM));
    tickets.extend(futures_util::future::join_all(at_once).await);
    let taken = calls(server, "evalsha") - scripts;
    assert!(taken <= 4, "24 concurrent requests took {taken} round trips (3 leases of 8 cover them)");
    for t in &tickets {
        ledger.settle(settlement(t, "agent", amount));
    }
    ledger.flush().await.unwrap();
    let b = ledger_balance(ledger).await;
    assert_eq!((b.reserved, b.plan_remaining), (0, (100 * MICRO - 36 * amount) as i64), "{b:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_leases_usage_lines_go_with_its_return_once_even_when_it_is_retried() {
    let test = "a_leases_usage_lines_go_with_its_return_once_even_when_it_is_retried";
    let Some(env) = start_leased(test).await else { return };
    let (ledger, server) = (&env.ledger, &env.server);
    let amount = MICRO / 100;
    let mut tickets = Vec::new();
    for i in 0..12 {
        tickets.push(admit_limited(ledger, &format!("r{i}"), amount, KEY_RPM).await);
    }
    // 4 one by one (agent a0), applied now; then the lease's 8 (calls 5–12)
    // for two agents, whose usage waits in the lease.
    let cost = |i: usize| amount / 2 + i as u64;
    for (i, t) in tickets.iter().enumerate().take(4) {
        ledger.settle(settlement(t, "a0", cost(i)));
    }
    ledger.flush().await.unwrap();
    for (i, t) in tickets.iter().enumerate().skip(4) {
        ledger.settle(settlement(t, if i % 2 == 0 { "a1" } else { "a2" }, cost(i)));
    }
    let day = Period::utc_day(now_ms());
    let in_redis = server.command(&["HGETALL", &format!("{PREFIX}:usage:{{a}}:{day}")]);
    assert!(!in_redis.contains("a1"), "a leased call's usage is not written on its own: {in_redis}");
    // The return and its lines go in one call; Redis stops past the response
    // timeout, so the call is retried and Redis then runs it twice.
    let scripts = calls(server, "evalsha");
    server.pause();
    let resume = async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        server.resume();
    };
    let (flushed, ()) = tokio::join!(ledger.flush(), resume);
    flushed.unwrap();
    assert!(calls(server, "evalsha") - scripts >= 2, "the return was retried");
    let mut rows: Vec<_> = ledger
        .usage("a", &day, &day)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.agent, r.requests, r.input_tokens, r.output_tokens, r.credits))
        .collect();
    rows.sort();
    let sum = |range: &mut dyn Iterator<Item = usize>| range.map(cost).sum::<u64>();
    assert_eq!(
        rows,
        [
            ("a0".to_string(), 4, 4000, 2000, sum(&mut (0..4))),
            ("a1".to_string(), 4, 4000, 2000, sum(&mut (4..12).filter(|i| i % 2 == 0))),
            ("a2".to_string(), 4, 4000, 2000, sum(&mut (4..12).filter(|i| i % 2 == 1))),
        ],
        "each call's usage counted once, under its agent"
    );
    let b = ledger_balance(ledger).await;
    assert_eq!((b.reserved, b.plan_remaining), (0, (100 * MICRO - sum(&mut (0..12))) as i64), "{b:?}");
}
