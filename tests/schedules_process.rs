//! Scheduled runs across real `tollgate serve` processes on one Redis:
//!
//! - three replicas and 100 schedules due in the same minute: exactly 100
//!   runs, 100 notes and 100 `scheduled_trigger` deliveries to a receiver
//!   that checks both signatures of each;
//! - kill -9 during a run: another replica starts it once more after the
//!   lease and it completes with one note; a run interrupted twice is marked
//!   failed (`interrupted`), never lost silently.
//!
//! The model is the test's in-process mock upstream, so a run can be made to
//! hang until its replica is killed.

mod common;
#[path = "support/receiver.rs"]
mod receiver;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/served.rs"]
mod served;
#[path = "support/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mock::{MockUpstream, Reply};
use common::{client, within};
use receiver::Receiver;
use serde_json::{json, Value};
use served::{bootstrap_key, serve_in, Served};

const WORKSPACE: &str = "acme";
const AGENT: &str = "worker";
const PLACEHOLDER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// How long the minute test may wait for its schedules' minute to come.
const MINUTE_WAIT: Duration = Duration::from_secs(150);

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schedules-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn config(dir: &Path, redis: &redis_server::RedisServer, upstream: &str, lease_ms: u64) -> PathBuf {
    let text = format!(
        r#"
[log]
level = "info"

[store]
backend = "redis"
urls = ["{redis}"]
prefix = "schp"

[schedules]
poll_ms = 100
lease_ms = {lease_ms}
max_concurrent_runs = 64

[webhooks]
allow_private_targets = true
poll_interval_ms = 50
disable_after_failures = 100000

[workspaces.{WORKSPACE}]
plan = "default"

[providers.up]
kind = "openai"
base_url = "{upstream}"
api_key = "sk-upstream"
first_byte_timeout_ms = 120000
max_retries = 0

[agents.{AGENT}]
provider = "up"
upstream_model = "up-1"
"#,
        redis = redis.url()
    );
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn serve(dir: &Path, config: &Path, name: &str) -> Served {
    serve_in(dir, &["--config", config.to_str().expect("a UTF-8 path")], name).await
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = within("a gateway answer", request.send()).await.expect("the gateway answers");
    let status = response.status().as_u16();
    let text = within("its body", response.text()).await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// A `full` key of the workspace, made with the first start's admin key.
async fn full_key(first: &Served) -> String {
    let admin = bootstrap_key(&first.log());
    let body = json!({"name": "scheduler-test", "workspace": WORKSPACE, "scope": "full"});
    let (status, created) = send(client().post(format!("{}/v1/keys", first.base)).bearer_auth(admin).json(&body)).await;
    assert_eq!(status, 201, "{created}");
    created["key"].as_str().unwrap().to_owned()
}

/// Every item of a list route, all pages.
async fn all(base: &str, key: &str, path: &str) -> Vec<Value> {
    let (mut out, mut after) = (Vec::new(), String::new());
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, page) =
            send(client().get(format!("{base}{path}{sep}limit=100&after={after}")).bearer_auth(key)).await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        if page["has_more"] != true {
            return out;
        }
        after = page["last_id"].as_str().unwrap().to_owned();
    }
}

/// Polls `GET /v1/tasks/{id}` until its status is `status` (bounded).
async fn task_becomes(base: &str, key: &str, id: &str, status: &str, bound: Duration) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let (_, task) = send(client().get(format!("{base}/v1/tasks/{id}")).bearer_auth(key)).await;
        if task["status"] == status {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} is not {status} after {bound:?}: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_100_due_times_exactly_once() {
    let Some(redis) = redis_server::RedisServer::start() else {
        return tools::skip("three_replicas_run_100_due_times_exactly_once", tools::NO_REDIS);
    };
    let dir = temp_dir("minute");
    let mock = MockUpstream::start().await;
    let config = config(&dir, &redis, &mock.base_url(), 10_000);
    let first = serve(&dir, &config, "a").await;
    let key = full_key(&first).await;
    let others = [serve(&dir, &config, "b").await, serve(&dir, &config, "c").await];

    let receiver = Receiver::start(PLACEHOLDER_SECRET).await;
    let body = json!({"url": receiver.url("/hook"), "events": ["scheduled_trigger"]});
    let (status, hook) = send(client().post(format!("{}/v1/webhooks", first.base)).bearer_auth(&key).json(&body)).await;
    assert_eq!(status, 201, "{hook}");
    receiver.set_secrets(&[hook["secret"].as_str().unwrap()]);

    // 100 schedules of every minute, created on all three replicas.
    let bases: Vec<&str> = [&first].into_iter().chain(&others).map(|s| s.base.as_str()).collect();
    let mut ids = Vec::new();
    for i in 0..100 {
        let body =
            json!({"name": format!("s{i}"), "cron": "* * * * *", "time_zone": "UTC", "prompt": "Tick", "agent": AGENT});
        let base = bases[i % 3];
        let (status, s) = send(client().post(format!("{base}/v1/schedules")).bearer_auth(&key).json(&body)).await;
        assert_eq!(status, 201, "{s}");
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    // Once each has run once, disable them all, so the next minute adds none.
    let deadline = Instant::now() + MINUTE_WAIT;
    let first_due = loop {
        let tasks = all(&first.base, &key, "/v1/tasks?status=completed").await;
        if tasks.len() >= 100 {
            break tasks.iter().filter_map(|t| t["due_at_ms"].as_i64()).min().unwrap();
        }
        assert!(Instant::now() < deadline, "{} of 100 runs completed after {MINUTE_WAIT:?}", tasks.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for id in &ids {
        let url = format!("{}/v1/schedules/{id}", first.base);
        let (status, _) = send(client().patch(url).bearer_auth(&key).json(&json!({"enabled": false}))).await;
        assert_eq!(status, 200);
    }
    let tasks: Vec<Value> = all(&first.base, &key, "/v1/tasks").await;
    let in_first_minute: Vec<&Value> = tasks.iter().filter(|t| t["due_at_ms"] == first_due).collect();
    assert_eq!(in_first_minute.len(), 100, "one run per schedule for its due time");
    assert!(in_first_minute.iter().all(|t| t["status"] == "completed" && t["attempts"] == 1));
    let notes = all(&first.base, &key, "/v1/notes").await;
    let first_notes = notes.iter().filter(|n| in_first_minute.iter().any(|t| t["note_id"] == n["id"])).count();
    assert_eq!(first_notes, 100, "one note per run");
    // Runs of a later minute (if the disabling came after it) are still one per schedule.
    let mut keys: Vec<(String, i64)> = tasks
        .iter()
        .map(|t| (t["schedule_id"].as_str().unwrap().to_owned(), t["due_at_ms"].as_i64().unwrap()))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "never two tasks for one (schedule, due time)");
    assert_eq!(notes.len(), n, "never two notes for one due time");

    let seen = receiver
        .wait_until("100 scheduled_trigger deliveries", |got| {
            got.iter().filter(|d| d.succeeded() && d.json["data"]["due_at_ms"] == first_due).count() >= 100
        })
        .await;
    receiver.assert_all_valid();
    let mut runs: Vec<&str> = seen
        .iter()
        .filter(|d| d.json["data"]["due_at_ms"] == first_due)
        .map(|d| d.json["data"]["run_id"].as_str().unwrap())
        .collect();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), 100, "a trigger for each run, none twice");
    assert_eq!(mock.attempts(), n, "one model call per run");
    for served in [first].into_iter().chain(others) {
        served.terminate().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_replica_is_killed_is_retried_once_then_failed() {
    let Some(redis) = redis_server::RedisServer::start() else {
        return tools::skip("a_run_whose_replica_is_killed_is_retried_once_then_failed", tools::NO_REDIS);
    };
    let dir = temp_dir("kill9");
    let mock = MockUpstream::start().await;
    let config = config(&dir, &redis, &mock.base_url(), 1500);
    let a = serve(&dir, &config, "a").await;
    let key = full_key(&a).await;
    let body = json!({"name": "report", "cron": "0 0 1 1 *", "prompt": "Write the report", "agent": AGENT});
    let (status, schedule) =
        send(client().post(format!("{}/v1/schedules", a.base)).bearer_auth(&key).json(&body)).await;
    assert_eq!(status, 201, "{schedule}");
    let id = schedule["id"].as_str().unwrap();

    // A takes the run and hangs in the model call; kill -9 while it does.
    mock.push(Reply::Hang);
    let (status, task) = send(client().post(format!("{}/v1/schedules/{id}/run", a.base)).bearer_auth(&key)).await;
    assert_eq!(status, 202, "{task}");
    let task_id = task["id"].as_str().unwrap().to_owned();
    mock.wait_for_requests(1).await;
    a.kill_9();

    // B finds the run's lease ended and starts it again: it completes once.
    let b = serve(&dir, &config, "b").await;
    let done = task_becomes(&b.base, &key, &task_id, "completed", Duration::from_secs(30)).await;
    assert_eq!(done["attempts"], 2, "{done}");
    let notes = all(&b.base, &key, &format!("/v1/notes?task_id={task_id}")).await;
    assert_eq!(notes.len(), 1, "one note for the run: {notes:?}");
    assert_eq!(mock.attempts(), 2);

    // A run interrupted twice (B, then C, killed mid-call) is failed by D.
    mock.push(Reply::Hang);
    mock.push(Reply::Hang);
    let (status, task) = send(client().post(format!("{}/v1/schedules/{id}/run", b.base)).bearer_auth(&key)).await;
    assert_eq!(status, 202, "{task}");
    let task_id = task["id"].as_str().unwrap().to_owned();
    mock.wait_for_requests(3).await;
    b.kill_9();
    let c = serve(&dir, &config, "c").await;
    mock.wait_for_requests(4).await;
    c.kill_9();
    let d = serve(&dir, &config, "d").await;
    let failed = task_becomes(&d.base, &key, &task_id, "failed", Duration::from_secs(30)).await;
    assert_eq!(failed["reason"], "interrupted", "{failed}");
    assert_eq!(failed["attempts"], 2);
    assert_eq!(mock.attempts(), 4, "no third start");
    assert!(all(&d.base, &key, &format!("/v1/notes?task_id={task_id}")).await.is_empty());
    d.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}
