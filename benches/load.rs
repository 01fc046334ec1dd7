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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;

use loadgen::{Spec, Target};
use mock::UPSTREAM_MODEL;
use procs::{Harness, Server, AGENT_MODEL, BENCH_KEY, UPSTREAM_KEY};
use report::{Header, Record, Usage, DIRECT, GATEWAY, NGINX};
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
    match harness.start_gateway(upstream) {
        Ok(server) => paths.push(Path::through(GATEWAY, server, AGENT_MODEL, BENCH_KEY)),
        Err(err) => skip(header, "gateway did not start", &err),
    }

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
    api_key: &'static str,
    /// The process(es) in front of the mock, if any: their CPU and memory are reported.
    server: Option<Server>,
}

impl Path {
    fn direct(upstream: SocketAddr) -> Self {
        Self { name: DIRECT, addr: upstream, model: UPSTREAM_MODEL, api_key: UPSTREAM_KEY, server: None }
    }

    fn through(name: &'static str, server: Server, model: &'static str, api_key: &'static str) -> Self {
        Self { name, addr: server.addr, model, api_key, server: Some(server) }
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
            })
        }
        _ => None,
    };
    if load.errors > 0 {
        eprintln!("  !! {} errors, e.g. {}", load.errors, load.error_samples.first().map_or("", String::as_str));
    }
    Record { path: path.name, stream, concurrency: spec.concurrency, load, usage }
}
