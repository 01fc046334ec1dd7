//! End-to-end load benchmark: `cargo bench --bench load`.
//!
//! Measures what the gateway costs on top of an upstream, in one run, against two
//! references with the same load generator and the same mock upstream:
//!
//! - `direct`  — load generator → mock upstream (the floor),
//! - `gateway` — load generator → `tollgate serve` → mock upstream,
//! - `nginx`   — load generator → nginx reverse proxy → mock upstream (if nginx is installed),
//!
//! and prints a Markdown report with throughput, latency percentiles, server CPU per request,
//! peak RSS and a PASS/MISS budget for the gateway.
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
#[path = "load/report.rs"]
mod report;
#[path = "load/sys.rs"]
mod sys;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use loadgen::{Spec, Target};
use procs::{Harness, Server, AGENT_MODEL, BENCH_KEY};
use report::{Header, Record, Usage, DIRECT, GATEWAY, NGINX};
use sys::{Machine, ProcSample};

fn main() {
    // Cargo passes `--bench` (and maybe a filter); only our own flag matters.
    if std::env::args().any(|arg| arg == "--mock-upstream") {
        mock::serve();
        return;
    }
    let settings = Settings::from_env();
    let mut warnings = Vec::new();
    let mut setup = vec![settings.describe()];
    if let Some(load) = sys::load_average() {
        setup.push(format!("load average before the run (1/5/15 min): {load}"));
    }

    // Declared before anything that could panic so its Drop always stops the children.
    let mut harness = Harness::new().expect("cannot set up the benchmark temp dir");
    let upstream = harness.start_mock().expect("the mock upstream must start for any measurement");
    let mut paths = vec![Path {
        name: DIRECT,
        target_addr: upstream,
        model: mock::UPSTREAM_MODEL,
        authorization: "Bearer sk-bench-upstream".to_owned(),
        server: None,
    }];

    eprintln!("starting gateway ({})", env!("CARGO_BIN_EXE_tollgate"));
    match harness.start_gateway(upstream) {
        Ok(server) => paths.push(Path {
            name: GATEWAY,
            target_addr: server.addr,
            model: AGENT_MODEL,
            authorization: format!("Bearer {BENCH_KEY}"),
            server: Some(server),
        }),
        Err(err) => {
            eprintln!("\n!!!!! GATEWAY DID NOT START — skipping the gateway path !!!!!\n{err}\n");
            warnings.push(format!("gateway did not start, not measured: {}", err.lines().next().unwrap_or_default()));
        }
    }

    match procs::find_nginx() {
        None => {
            eprintln!("\n!!!!! nginx NOT FOUND — skipping the nginx reference path !!!!!\n");
            warnings.push("nginx not installed, reference path skipped".to_owned());
        }
        Some(bin) => match harness.start_nginx(&bin, upstream) {
            Ok(server) => {
                setup.push(format!(
                    "nginx reference: {}, `worker_processes auto`, upstream keepalive 128, \
                     proxy_buffering off, access_log off",
                    procs::nginx_version(&bin)
                ));
                paths.push(Path {
                    name: NGINX,
                    target_addr: server.addr,
                    model: mock::UPSTREAM_MODEL,
                    authorization: "Bearer sk-bench-upstream".to_owned(),
                    server: Some(server),
                });
            }
            Err(err) => {
                eprintln!("\n!!!!! nginx DID NOT START — skipping the nginx path !!!!!\n{err}\n");
                warnings.push("nginx did not start, reference path skipped".to_owned());
            }
        },
    }
    setup.push(
        "all processes (load generator, mock upstream, server under test) share the same \
         machine; CPU and RSS are the server process(es) only"
            .to_owned(),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot build the load generator runtime");
    let records = run_matrix(&runtime, &settings, &paths);

    let header = Header { machine: Machine::detect(), command: settings.command(), setup, warnings };
    println!("{}", report::render(&header, &records));
    if harness.keeps_dir() {
        eprintln!("configs and logs kept in {}", harness.dir().display());
    }
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

    fn describe(&self) -> String {
        format!(
            "closed loop, one HTTP/1.1 keep-alive connection per client, {} s warm-up \
             (discarded) + {} s measured per row",
            self.warmup.as_secs_f64(),
            self.measure.as_secs_f64()
        )
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
    target_addr: std::net::SocketAddr,
    /// The model name this path expects in requests.
    model: &'static str,
    authorization: String,
    /// The process(es) in front of the mock, if any: their CPU and memory are reported.
    server: Option<Server>,
}

impl Path {
    fn target(&self, stream: bool) -> Target {
        let stream_field = if stream { r#","stream":true"# } else { "" };
        let body = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"Say hello to the benchmark"}}]{stream_field}}}"#,
            self.model
        );
        Target { addr: self.target_addr, authorization: self.authorization.clone(), body: Bytes::from(body), stream }
    }
}

/// Server counters at one instant.
struct Snapshot {
    procs: ProcSample,
    log_bytes: u64,
}

impl Snapshot {
    fn take(server: &Server) -> Self {
        Self { procs: ProcSample::take(server.procs), log_bytes: std::fs::metadata(&server.log).map_or(0, |m| m.len()) }
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
            for path in paths {
                let spec = Spec { concurrency, warmup: settings.warmup, measure: settings.measure };
                eprintln!(
                    "running {:<7} {:<10} c={concurrency:<3} ...",
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
    let sample = || path.server.as_ref().map(Snapshot::take);
    let (load, before, after) =
        loadgen::run(target, spec, sample).await.unwrap_or_else(|err| panic!("{}: cannot run load: {err}", path.name));
    let usage = match (before, after, &path.server) {
        (Some(before), Some(after), Some(server)) if load.completed > 0 => {
            let requests = load.completed as f64;
            let cpu_ticks = after.procs.cpu_ticks.saturating_sub(before.procs.cpu_ticks);
            let log_bytes = after.log_bytes.saturating_sub(before.log_bytes);
            Some(Usage {
                cpu_us_per_req: cpu_ticks as f64 * 1e6 / ticks_per_sec as f64 / requests,
                peak_rss_mb: after.procs.peak_rss_kb as f64 / 1024.0,
                log_bytes_per_req: matches!(server.procs, sys::ProcSet::Single(_)).then(|| log_bytes as f64 / requests),
            })
        }
        _ => None,
    };
    if load.errors > 0 {
        eprintln!("  !! {} errors, e.g. {}", load.errors, load.error_samples.first().map_or("", String::as_str));
    }
    Record { path: path.name, stream, concurrency: spec.concurrency, load, usage }
}
