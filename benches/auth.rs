//! Criterion micro-benchmark: authenticating a request, for a static config key
//! and for a store key already in the cache (no store round trip). The issue's
//! budget: a cached lookup adds ≤ 5 µs at p50.
//!
//! Run: `cargo bench --bench auth`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use tollgate::auth::keys::{issue, NewKey};
use tollgate::auth::{hash_key, Authenticator};
use tollgate::config::KeyConfig;
use tollgate::scope::Scope;
use tollgate::store::embedded::EmbeddedStore;
use tollgate::store::KeyStore;

fn headers(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_str(&format!("Bearer {key}")).expect("valid header"));
    h
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("tollgate-bench-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(EmbeddedStore::open(&dir.join("bench.db")).expect("store opens"));
    let issued = issue(
        NewKey {
            name: "bench".into(),
            workspace: "ws".into(),
            scope: Scope::Chat,
            expires_at: None,
            rpm: None,
            tpm: None,
            models: None,
        },
        1,
    )
    .expect("valid key");
    runtime.block_on(store.insert_key(&issued.record)).expect("insert");
    let static_key = "tg_static_bench_key";
    let auth = Authenticator::new(
        &[KeyConfig {
            name: "static".into(),
            sha256: hash_key(static_key.as_bytes()),
            scope: Scope::Chat,
            models: None,
        }],
        Duration::from_secs(3600),
    )
    .with_store(store);
    let store_headers = headers(issued.plaintext.expose());
    let static_headers = headers(static_key);
    runtime.block_on(auth.authenticate(&store_headers, 2)).expect("warms the cache");

    let mut group = c.benchmark_group("auth");
    group.bench_function("static_key", |b| {
        b.iter(|| black_box(runtime.block_on(auth.authenticate(black_box(&static_headers), 2)).is_ok()))
    });
    group.bench_function("cached_store_key", |b| {
        b.iter(|| black_box(runtime.block_on(auth.authenticate(black_box(&store_headers), 2)).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
