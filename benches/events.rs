//! Criterion micro-benchmark: what events cost, and how fast the embedded
//! store absorbs them.
//! - `emit`: building a `request.completed` event and handing it to the bus
//!   (what a request pays; the queue is drained by a task meanwhile).
//! - `append_batch_256`: one batch of 256 events appended to the embedded
//!   store's log, fanned out to one webhook (what the drain pays per batch):
//!   its inverse is the sustained event rate before the queue fills and
//!   events start to spill.
//!
//! Run: `cargo bench --bench events`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use tollgate::clock::SystemClock;
use tollgate::config::Config;
use tollgate::events::{EventType, Events, Webhook};
use tollgate::secret::Secret;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("tollgate-bench-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let toml = format!(
        "[providers.mock]\nkind = \"mock\"\n[store]\npath = \"{}\"\n[events]\nqueue_capacity = 10000\n",
        dir.join("bench.db").display()
    );
    let config = Config::from_toml(&toml, "bench.toml").expect("valid config");
    let events = runtime.block_on(async {
        let stores = tollgate::store::Stores::open(&config.store).await.expect("store opens");
        let tasks = tollgate::tasks::Tasks::on_current_runtime();
        Arc::new(Events::open(&stores, &config, Arc::new(SystemClock), &tasks).await.expect("events open"))
    });
    let workspace: Arc<str> = "ws".into();
    let webhook = Webhook {
        id: "wh_bench".into(),
        workspace: "ws".into(),
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["request.completed".into()],
        description: None,
        secret: Secret::new(tollgate::events::sign::generate_secret()),
        previous_secret: None,
        previous_until_ms: None,
        created_at: 0,
        disabled_at: None,
        disabled_reason: None,
        failures: 0,
    };
    runtime.block_on(events.webhooks.insert_webhook(&webhook, 10)).expect("webhook");
    let data = json!({
        "request_id": "req_0123456789abcdef00000001", "key_id": "key_0123456789abcdef01234567",
        "agent": "demo", "is_agent": true, "provider": "mock", "upstream_model": "mock-1",
        "endpoint": "chat.completions", "status": 200, "outcome": "completed", "streamed": false,
        "input_tokens": 12, "output_tokens": 9, "tokens_estimated": false, "credits": 1500, "latency_ms": 3
    });

    let mut group = c.benchmark_group("events");
    let batch: Vec<_> =
        (0..256).map(|_| events.factory.event(workspace.clone(), EventType::RequestCompleted, &data)).collect();
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("append_batch_256", |b| {
        b.iter(|| {
            // Fresh ids per batch (the log's ids are unique).
            let fresh: Vec<_> = batch
                .iter()
                .map(|e| tollgate::events::Event {
                    id: events.factory.event(workspace.clone(), e.kind, &0).id,
                    ..e.clone()
                })
                .collect();
            runtime.block_on(events.log.append(&fresh)).expect("append")
        })
    });
    // Emitting, with the drain running on a thread of its own as in the
    // gateway (the control runtime): a request's whole cost of an event.
    group.throughput(Throughput::Elements(1));
    let drain = {
        let events = events.clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(events.bus.drain(stopped))
        });
        (stop, thread)
    };
    group.bench_function("emit", |b| {
        let _guard = runtime.enter();
        b.iter(|| events.emit(&workspace, EventType::RequestCompleted, black_box(&data)))
    });
    let stats = &events.bus.stats;
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "emitted {} events, of which {} spilled (queue full); {} stored so far",
        load(&stats.emitted),
        load(&stats.spilled),
        load(&stats.stored)
    );
    let (stop, thread) = drain;
    let _ = stop.send(true);
    let _ = thread.join();
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
