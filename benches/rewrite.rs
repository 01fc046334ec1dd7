//! Criterion micro-benchmark: parsing and rewriting a chat request for an agent
//! (and the strict JSON check's share of it), and splicing the agent id into a
//! non-stream answer.
//!
//! Run: `cargo bench --bench rewrite`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::agents::{rewrite::rewrite, Catalog};
use tollgate::auth::Principal;
use tollgate::config::Config;
use tollgate::relay::rewrite_json;
use tollgate::request::{parse, Endpoint};
use tollgate::upstream::Provider;

const REQUEST: &str = r#"{"model":"demo","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the following text in three bullet points: The quick brown fox jumps over the lazy dog. The dog, unimpressed, goes back to sleep while the fox wonders what it did wrong."}],"temperature":0.7,"max_tokens":1024,"stream":true}"#;

const ANSWER: &str = r#"{"id":"chatcmpl-abc123","object":"chat.completion","created":1704369000,"model":"mock-1","choices":[{"index":0,"message":{"role":"assistant","content":"- A fox jumps over a dog.\n- The dog goes back to sleep.\n- The fox is puzzled."},"finish_reason":"stop"}],"usage":{"prompt_tokens":58,"completion_tokens":24,"total_tokens":82}}"#;

fn catalog() -> Catalog {
    let config = Config::embedded_default().expect("default config is valid");
    let providers: HashMap<String, Arc<Provider>> = config
        .providers
        .iter()
        .map(|(name, p)| (name.clone(), Arc::new(Provider::from_config(name, p, 1).expect("provider builds"))))
        .collect();
    Catalog::new(&config, &providers, None)
}

fn bench(c: &mut Criterion) {
    let catalog = catalog();
    let principal = Principal {
        key_id: None,
        name: "bench".into(),
        workspace: None,
        scope: tollgate::scope::Scope::Chat,
        expires_at: None,
        revoked: false,
        models: None,
        rpm: None,
        tpm: None,
    };
    let mut group = c.benchmark_group("rewrite");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));
    group.bench_function("parse_and_rewrite_chat_request", |b| {
        b.iter(|| {
            let parsed = parse(black_box(REQUEST.as_bytes()), Endpoint::Chat).expect("valid request");
            let target = catalog.resolve(&parsed.model, &principal).expect("demo agent exists");
            black_box(rewrite(&parsed, &target, &target.route.primary().upstream_model_json).body.len())
        })
    });
    // Its share of the above: the strict pass `parse` runs after serde_json's.
    group.bench_function("strict_check_chat_request", |b| {
        b.iter(|| tollgate::json::check_strict(black_box(REQUEST.as_bytes())).expect("valid request"))
    });
    let target = catalog.get("demo").expect("demo agent exists").clone();
    let answer = Bytes::from_static(ANSWER.as_bytes());
    group.throughput(Throughput::Bytes(ANSWER.len() as u64));
    group.bench_function("rewrite_non_stream_answer", |b| {
        b.iter(|| black_box(rewrite_json(answer.clone(), target.client_model_json.as_ref()).expect("valid answer")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
