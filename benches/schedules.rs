//! 1,000 schedules due in the same minute on one gateway (issue 13): how late
//! their runs start (p50/p99 of `late_ms`, start − due time) and the p99 of
//! ordinary chat traffic during that minute against the same load without
//! schedules, in one process: one in-process gateway on the embedded store
//! and the built-in mock provider, a closed-loop load of `SCHED_BENCH_C`
//! clients (8) for `SCHED_BENCH_SECS` (10 s) each phase.
//!
//! Run: `cargo bench --bench schedules` (waits for the next minute boundary).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tollgate::auth::keys::NewKey;
use tollgate::scope::Scope;

const SCHEDULES: usize = 1000;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Closed-loop chat load for `secs`; latencies in µs.
async fn load(base: &str, key: &str, clients: u64, secs: Duration) -> Histogram<u64> {
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    let until = Instant::now() + secs;
    for _ in 0..clients {
        let (http, url, key) = (http.clone(), format!("{base}/v1/chat/completions"), key.to_owned());
        tasks.spawn(async move {
            let mut h = Histogram::<u64>::new(3).unwrap();
            let body = json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]});
            while Instant::now() < until {
                let start = Instant::now();
                let response = http.post(&url).bearer_auth(&key).json(&body).send().await.expect("a response");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("a body");
                h.record(start.elapsed().as_micros() as u64).unwrap();
            }
            h
        });
    }
    let mut all = Histogram::<u64>::new(3).unwrap();
    while let Some(h) = tasks.join_next().await {
        all.add(h.unwrap()).unwrap();
    }
    all
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (clients, secs) = (env_num("SCHED_BENCH_C", 8), Duration::from_secs(env_num("SCHED_BENCH_SECS", 10)));
    let runs = env_num("SCHED_BENCH_RUNS", tollgate::config::SchedulesConfig::default().max_concurrent_runs as u64);
    let dir = std::env::temp_dir().join(format!("tollgate-sched-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[log]
level = "warn"
[store]
backend = "embedded"
path = "{}/bench.db"
[providers.mock]
kind = "mock"
[agents.demo]
provider = "mock"
upstream_model = "mock-1"
[workspaces.acme]
plan = "default"
[schedules]
max_concurrent_runs = {runs}
"#,
        dir.display()
    );
    let config = tollgate::config::Config::from_toml(&toml, "bench.toml").expect("a valid config");
    let gateway = tollgate::gateway::Gateway::open(config).await.expect("the gateway opens");
    let app = gateway.app().clone();
    let new = NewKey {
        name: "bench".into(),
        workspace: "acme".into(),
        scope: Scope::Full,
        expires_at: None,
        rpm: None,
        tpm: None,
        models: None,
    };
    let key = tollgate::admin::create_key(&app.stores, new).await.unwrap().plaintext.expose().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));

    // Baseline: the load without schedules.
    let baseline = load(&base, &key, clients, secs).await;

    // 1,000 schedules for the next whole minute at least 15 s away.
    let now = tollgate::clock::Clock::now_ms(&tollgate::clock::SystemClock);
    let due = (now + 15_000) / 60_000 * 60_000 + 60_000;
    let at = chrono::DateTime::from_timestamp_millis(due).unwrap();
    let cron = format!("{} {} * * *", chrono::Timelike::minute(&at), chrono::Timelike::hour(&at));
    let http = reqwest::Client::new();
    for i in 0..SCHEDULES {
        let body = json!({"cron": cron, "time_zone": "UTC", "prompt": format!("report {i}"), "agent": "demo"});
        let r = http.post(format!("{base}/v1/schedules")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    // The same load, from the due time on.
    let wait = due - tollgate::clock::Clock::now_ms(&tollgate::clock::SystemClock);
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let during = load(&base, &key, clients, secs).await;

    // Every run's lateness, once all have ended.
    let deadline = Instant::now() + Duration::from_secs(120);
    let late = loop {
        let (mut late, mut after, mut ended) = (Histogram::<u64>::new(3).unwrap(), String::new(), 0);
        loop {
            let url = format!("{base}/v1/tasks?limit=100&after={after}");
            let page: Value = http.get(url).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
            for t in page["data"].as_array().unwrap() {
                if matches!(t["status"].as_str(), Some("completed" | "failed" | "skipped")) {
                    ended += 1;
                }
                if let Some(l) = t["late_ms"].as_i64() {
                    late.record(l.max(0) as u64).unwrap();
                }
            }
            if page["has_more"] != true {
                break;
            }
            after = page["last_id"].as_str().unwrap().to_owned();
        }
        if ended >= SCHEDULES {
            break late;
        }
        assert!(Instant::now() < deadline, "{ended} of {SCHEDULES} runs ended after 120 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);

    println!("schedules bench: {SCHEDULES} schedules due at {at}, {clients} chat clients, {secs:?} per phase");
    println!("| | p50 | p99 | max |");
    println!("|---|--:|--:|--:|");
    let row = |name: &str, h: &Histogram<u64>, scale: fn(u64) -> f64| {
        let (p50, p99, max) = (scale(h.value_at_quantile(0.5)), scale(h.value_at_quantile(0.99)), scale(h.max()));
        println!("| {name} | {p50:.2} ms | {p99:.2} ms | {max:.2} ms |");
    };
    row("run start lateness (start − due)", &late, |v| v as f64);
    row("chat latency, no schedules", &baseline, ms);
    row("chat latency, during the minute", &during, ms);
    println!(
        "chat p99 during / without: {:.2}x ({} and {} requests)",
        during.value_at_quantile(0.99) as f64 / baseline.value_at_quantile(0.99) as f64,
        during.len(),
        baseline.len()
    );
}
