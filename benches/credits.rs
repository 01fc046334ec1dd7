//! Criterion micro-benchmark: the embedded ledger's request-path work — one
//! admission (four GCRA limits + a credit reservation) and its settle — for a
//! metered workspace, next to the pieces it is made of.
//!
//! Run: `cargo bench --bench credits`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::clock::SystemClock;
use tollgate::config::{Config, Price};
use tollgate::credits::{Meter, Period, Request};
use tollgate::usage::{Outcome, Usage};

const CONFIG: &str = r#"
[providers.mock]
kind = "mock"
[plans.metered]
message_credits = 1000000000
rpm = 100000000
tpm = 1000000000
key_rpm = 100000000
key_tpm = 1000000000
[workspaces.ws]
plan = "metered"
"#;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("tollgate-bench-credits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let toml = format!("{CONFIG}\n[store]\npath = \"{}\"\n", dir.join("bench.db").display());
    let config = Config::from_toml(&toml, "bench.toml").expect("valid config");
    let meter = runtime.block_on(async {
        let stores = tollgate::store::Stores::open(&config.store).await.expect("store opens");
        tollgate::admin::seed_workspaces(&stores, &config).await.expect("workspace");
        Meter::open(&stores, &config, Arc::new(SystemClock), &tollgate::tasks::Tasks::on_current_runtime())
    });
    let (key, workspace): (Arc<str>, Arc<str>) = ("key_bench".into(), "ws".into());
    let price = Price { request: 1000, input_per_1k: 100, output_per_1k: 300 };
    let agent: Arc<str> = "bench-agent".into();
    let usage = Usage { prompt_tokens: 20, completion_tokens: 30, estimated: false };
    let request = || Request {
        key_id: &key,
        workspace: &workspace,
        key_rpm: None,
        key_tpm: None,
        price: &price,
        prompt_estimate: 25,
        max_tokens: Some(64),
    };

    let mut group = c.benchmark_group("credits");
    group.bench_function("embedded_admit_and_settle", |b| {
        b.iter(|| {
            let (ticket, headers) = runtime.block_on(meter.admit(request())).expect("admitted");
            black_box(headers);
            meter.settle(ticket, agent.clone(), &price, Outcome::Completed, &usage);
        })
    });
    let limiter = tollgate::limits::local::LocalLimiter::default();
    let limits = tollgate::limits::LimitSet {
        key_rpm: Some(100_000_000),
        key_tpm: Some(1_000_000_000),
        workspace_rpm: Some(100_000_000),
        workspace_tpm: Some(1_000_000_000),
    };
    group.bench_function("four_gcra_limits", |b| {
        b.iter(|| black_box(limiter.check(&key, &workspace, &limits, 89).expect("under the limits")))
    });
    group.bench_function("terms_from_cache", |b| {
        b.iter(|| black_box(runtime.block_on(meter.terms.get(&workspace)).expect("terms")))
    });
    group.bench_function("period_of_now", |b| {
        b.iter(|| black_box(Period::at(black_box(1_795_000_000_000), chrono_tz::Tz::Europe__Berlin)))
    });
    group.bench_function("utc_day", |b| b.iter(|| black_box(Period::utc_day(black_box(1_795_000_000_000)))));
    group.finish();
    // Write what the benchmark settled, so the store's thread ends cleanly.
    runtime.block_on(meter.ledger.flush()).expect("flush");
}

criterion_group!(benches, bench);
criterion_main!(benches);
