//! End-to-end load benchmark: `cargo bench --bench load`.
//!
//! Measures what the gateway costs on top of an upstream, in one run, against two
//! references with the same load generator and the same mock upstream:
//!
//! - `direct`  — load generator → mock upstream (the floor),
//! - `gateway` — load generator → `tollgate serve` → mock upstream,
//! - `nginx`   — load generator → nginx reverse proxy → mock upstream (if nginx is installed),
//!
//! and, for non-streaming requests only, the gateway authenticating with a store-backed key
//! instead of a static one (the only difference in their configs):
//!
//! - `gw-embedded` — the key in the embedded store (SQLite),
//! - `gw-redis`    — the key in Redis, on a private `redis-server` (if installed),
//!
//! and prints a Markdown report with throughput, latency percentiles, server CPU per request,
//! peak RSS and PASS/MISS budgets for the gateway and for the cached key lookup.
//!
//! Environment: `BENCH_SECS` (measured seconds per run, default 5), `BENCH_WARMUP_SECS`
//! (default 1), `BENCH_CONCURRENCY` (default `1,16,64`), `BENCH_STREAM_CONCURRENCY`
//! (default `1,16`), `BENCH_KEEP_TMP` (keep configs and logs).
//!
//! The binary doubles as the mock upstream: `load --mock-upstream` (see `load/mock.rs`).

#[path = "load/loadgen.rs"]
mod loadgen;
#[path = "load/mock.rs"]
mod mock;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/redis.rs"]
mod redis;
#[path = "load/report.rs"]
mod report;
#[path = "load/sys.rs"]
mod sys;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;

use loadgen::{Spec, Target};
use mock::UPSTREAM_MODEL;
use procs::{Harness, Server, Store, AGENT_MODEL, BENCH_KEY, UPSTREAM_KEY};
use report::{Header, Record, Usage, DIRECT, GATEWAY, GW_EMBEDDED, GW_REDIS, NGINX};
use sys::{Machine, ProcSample};

fn main() {
    // Cargo passes `--bench` (and maybe a filter); only our own flag matters.
    if std::env::args().any(|arg| arg == "--mock-upstream") {
        mock::serve();
        return;
    }
    let settings = Settings::from_env();
    let mut header = Header {
        machine: Machine::detect(),
        command: settings.command(),
        setup: settings.setup(),
        warnings: Vec::new(),
    };

    // Created before anything that could panic, so its Drop always stops the children.
    let mut harness = Harness::new().expect("cannot set up the benchmark temp dir");
    let paths = start_paths(&mut harness, &mut header);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot build the load generator runtime");
    let records = run_matrix(&runtime, &settings, &paths);

    println!("{}", report::render(&header, &records));
    if harness.keeps_dir() {
        eprintln!("configs and logs kept in {}", harness.dir().display());
    }
}

/// Starts the mock upstream and every server that goes in front of it. Without the mock
/// nothing can be measured; a gateway or nginx that is missing or does not start is
/// reported loudly and its path skipped, so the others still get measured.
fn start_paths(harness: &mut Harness, header: &mut Header) -> Vec<Path> {
    let upstream = harness.start_mock().expect("the mock upstream must start for any measurement");
    let mut paths = vec![Path::direct(upstream)];

    eprintln!("starting gateway ({})", env!("CARGO_BIN_EXE_tollgate"));
    let static_gateway = harness
        .write_gateway_config(GATEWAY, upstream, &Store::Unused)
        .and_then(|config| harness.start_gateway(GATEWAY, &config));
    match static_gateway {
        Ok(server) => paths.push(Path::through(GATEWAY, server, AGENT_MODEL, BENCH_KEY)),
        Err(err) => skip(header, "gateway did not start", &err),
    }
    paths.extend(start_store_paths(harness, header, upstream));

    match procs::find_nginx() {
        None => skip(header, "nginx is not installed", "looked in $PATH and the usual sbin directories"),
        Some(bin) => match harness.start_nginx(&bin, upstream) {
            Ok(server) => {
                header.setup.push(format!(
                    "nginx reference: {}, `worker_processes auto`, upstream keepalive 128, proxy_buffering off, \
                     access log on (combined, buffer=64k flush=1s), as the gateway logs every request",
                    procs::nginx_version(&bin)
                ));
                paths.push(Path::through(NGINX, server, UPSTREAM_MODEL, UPSTREAM_KEY));
            }
            Err(err) => skip(header, "nginx did not start", &err),
        },
    }
    paths
}

/// Starts the gateways whose bench key lives in a store: embedded, and Redis if
/// `redis-server` is installed. Like any other path, one that does not start is skipped loudly.
fn start_store_paths(harness: &mut Harness, header: &mut Header, upstream: SocketAddr) -> Vec<Path> {
    header.setup.push(format!(
        "{GW_EMBEDDED} / {GW_REDIS}: the gateway's config plus a `[store]` (embedded: SQLite in the temp dir; \
         redis) with `key_cache_ttl_ms = 60000`, called with a key made by `tollgate keys create` instead of the \
         static key; non-streaming only; the warm-up fills the key cache"
    ));
    let mut paths = Vec::new();
    match start_store_gateway(harness, GW_EMBEDDED, upstream, &Store::Embedded) {
        Ok(path) => paths.push(path),
        Err(err) => skip(header, "gw-embedded did not start", &err),
    }
    let Some(bin) = procs::find_redis_server() else {
        skip(header, "redis-server is not installed", "looked in $PATH and the usual sbin directories");
        return paths;
    };
    let redis = match harness.start_redis(&bin) {
        Ok(addr) => addr,
        Err(err) => {
            skip(header, "redis-server did not start", &err);
            return paths;
        }
    };
    match start_store_gateway(harness, GW_REDIS, upstream, &Store::Redis(redis)) {
        Ok(path) => {
            paths.push(Path { redis: Some(redis), ..path });
            header.setup.push(format!(
                "{GW_REDIS}: a private {} on loopback (no persistence), used by nothing else, so its \
                 `total_commands_processed` before and after each window counts the gateway's Redis commands",
                redis::version(&bin)
            ));
        }
        Err(err) => skip(header, "gw-redis did not start", &err),
    }
    paths
}

/// Creates a store-backed key with the gateway's CLI on the config the gateway will use, then
/// starts that gateway; the path authenticates with the new key.
fn start_store_gateway(
    harness: &mut Harness,
    name: &'static str,
    upstream: SocketAddr,
    store: &Store,
) -> Result<Path, String> {
    eprintln!("starting {name}");
    let config = harness.write_gateway_config(name, upstream, store)?;
    let key = procs::create_store_key(&config)?;
    let server = harness.start_gateway(name, &config)?;
    Ok(Path { streams: false, ..Path::through(name, server, AGENT_MODEL, &key) })
}

/// Says that a path is not measured, now on stderr (with details) and in the report.
fn skip(header: &mut Header, what: &str, detail: &str) {
    eprintln!("\n!!!!! {what} — skipping that path !!!!!\n{detail}\n");
    header.warnings.push(format!("{what}; path not measured ({})", detail.lines().next().unwrap_or_default()));
}

/// Knobs from the environment, with defaults that finish in about two minutes.
struct Settings {
    warmup: Duration,
    measure: Duration,
    concurrency: Vec<usize>,
    stream_concurrency: Vec<usize>,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            warmup: env_secs("BENCH_WARMUP_SECS", 1.0),
            measure: env_secs("BENCH_SECS", 5.0),
            concurrency: env_list("BENCH_CONCURRENCY", &[1, 16, 64]),
            stream_concurrency: env_list("BENCH_STREAM_CONCURRENCY", &[1, 16]),
        }
    }

    fn command(&self) -> String {
        format!(
            "BENCH_SECS={} BENCH_WARMUP_SECS={} BENCH_CONCURRENCY={} BENCH_STREAM_CONCURRENCY={} \
             cargo bench --bench load",
            self.measure.as_secs_f64(),
            self.warmup.as_secs_f64(),
            join(&self.concurrency),
            join(&self.stream_concurrency),
        )
    }

    /// How the numbers were produced, for the report header.
    fn setup(&self) -> Vec<String> {
        let mut setup = vec![
            format!(
                "closed loop, one HTTP/1.1 keep-alive connection per client, {} s warm-up (discarded) + {} s \
                 measured per row",
                self.warmup.as_secs_f64(),
                self.measure.as_secs_f64()
            ),
            "load generator, mock upstream and server under test share the machine; CPU/request and peak RSS \
             are the server process(es) only (nginx: master + workers)"
                .to_owned(),
        ];
        if let Some(load) = sys::load_average() {
            setup.push(format!("load average before the run (1/5/15 min): {load}"));
        }
        setup
    }
}

fn env_secs(name: &str, default: f64) -> Duration {
    let secs = std::env::var(name)
        .map_or(default, |v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?}: expected a number of seconds")));
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero() || name == "BENCH_WARMUP_SECS")
        .unwrap_or_else(|| panic!("{name}={secs}: expected a positive number of seconds"))
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    let Ok(value) = std::env::var(name) else {
        return default.to_vec();
    };
    value
        .split(',')
        .map(|item| match item.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{name}={value:?}: expected comma-separated positive integers"),
        })
        .collect()
}

fn join(values: &[usize]) -> String {
    values.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// One way to reach the mock upstream.
struct Path {
    name: &'static str,
    addr: SocketAddr,
    /// The model name this path expects in requests.
    model: &'static str,
    api_key: String,
    /// The process(es) in front of the mock, if any: their CPU and memory are reported.
    server: Option<Server>,
    /// Whether the streaming case is measured too (the store-backed paths only differ from
    /// `gateway` in authentication, which the non-streaming case shows best).
    streams: bool,
    /// The Redis server this path's gateway uses, whose commands are counted per window.
    redis: Option<SocketAddr>,
}

impl Path {
    fn direct(upstream: SocketAddr) -> Self {
        Self {
            name: DIRECT,
            addr: upstream,
            model: UPSTREAM_MODEL,
            api_key: UPSTREAM_KEY.to_owned(),
            server: None,
            streams: true,
            redis: None,
        }
    }

    fn through(name: &'static str, server: Server, model: &'static str, api_key: &str) -> Self {
        Self {
            name,
            addr: server.addr,
            model,
            api_key: api_key.to_owned(),
            server: Some(server),
            streams: true,
            redis: None,
        }
    }

    /// The same client request for every path; only the model name and key differ.
    fn target(&self, stream: bool) -> Target {
        let stream_field = if stream { r#","stream":true"# } else { "" };
        let body = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"Say hello to the benchmark"}}]{stream_field}}}"#,
            self.model
        );
        Target {
            addr: self.addr,
            host: HeaderValue::from_str(&self.addr.to_string()).expect("a socket address is a valid Host"),
            authorization: HeaderValue::from_str(&format!("Bearer {}", self.api_key))
                .expect("bench keys are valid header values"),
            body: Bytes::from(body),
            stream,
        }
    }
}

/// Server counters at one instant.
struct Snapshot {
    procs: ProcSample,
    log_bytes: u64,
    /// Commands the path's Redis server has processed so far (`None`: no Redis, or it did not
    /// answer).
    redis_commands: Option<u64>,
}

impl Snapshot {
    fn take(server: &Server, redis: Option<SocketAddr>) -> Self {
        let redis_commands = redis.and_then(|addr| {
            redis::commands_processed(addr).map_err(|err| eprintln!("  !! redis INFO stats: {err}")).ok()
        });
        Self {
            procs: ProcSample::take(server.procs),
            log_bytes: std::fs::metadata(&server.log).map_or(0, |m| m.len()),
            redis_commands,
        }
    }
}

/// Runs every (case, concurrency, path) combination. Paths are interleaved per row rather
/// than run one after another, so slow drift of the machine affects all paths alike.
fn run_matrix(runtime: &tokio::runtime::Runtime, settings: &Settings, paths: &[Path]) -> Vec<Record> {
    let ticks_per_sec = sys::clock_ticks_per_sec();
    let cases = [(false, &settings.concurrency), (true, &settings.stream_concurrency)];
    let mut records = Vec::new();
    for (stream, concurrencies) in cases {
        for &concurrency in concurrencies {
            for path in paths.iter().filter(|path| path.streams || !stream) {
                let spec = Spec { concurrency, warmup: settings.warmup, measure: settings.measure };
                eprintln!(
                    "running {:<11} {:<10} c={concurrency:<3} ...",
                    path.name,
                    if stream { "stream" } else { "non-stream" }
                );
                let record = runtime.block_on(measure(path, stream, spec, ticks_per_sec));
                records.push(record);
            }
        }
    }
    records
}

async fn measure(path: &Path, stream: bool, spec: Spec, ticks_per_sec: u64) -> Record {
    let target = Arc::new(path.target(stream));
    let sample = || path.server.as_ref().map(|server| Snapshot::take(server, path.redis));
    let (load, before, after) = loadgen::run(target, spec, sample).await;
    let usage = match (before, after) {
        (Some(before), Some(after)) if load.completed > 0 => {
            let requests = load.completed as f64;
            let cpu_ticks = after.procs.cpu_ticks.saturating_sub(before.procs.cpu_ticks);
            let log_bytes = after.log_bytes.saturating_sub(before.log_bytes);
            Some(Usage {
                cpu_us_per_req: cpu_ticks as f64 * 1e6 / ticks_per_sec as f64 / requests,
                peak_rss_mb: after.procs.peak_rss_kb as f64 / 1024.0,
                // nginx's access log is off; only the gateway's log volume is of interest.
                log_bytes_per_req: (path.name == GATEWAY).then(|| log_bytes as f64 / requests),
                redis_commands: redis_commands(before.redis_commands, after.redis_commands),
            })
        }
        _ => None,
    };
    if load.errors > 0 {
        eprintln!("  !! {} errors, e.g. {}", load.errors, load.error_samples.first().map_or("", String::as_str));
    }
    Record { path: path.name, stream, concurrency: spec.concurrency, load, usage }
}

/// Commands the gateway sent Redis between two readings: the difference, less the first
/// reading's own `INFO` (counted once it has answered).
fn redis_commands(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?).saturating_sub(redis::PROBE_COMMANDS))
}
