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
//! instead of a static one (the only difference in their configs), its workspace on the default
//! plan (no limits, no allowance; the agent has no price) — the plain authenticated path:
//!
//! - `gw-embedded` — the key in the embedded store (SQLite),
//! - `gw-redis`    — the key in Redis, on a private `redis-server` (if installed),
//!
//! and the same with the workspace on a plan with rate limits and credits (limits and allowance
//! far out of reach, the agent priced), so every request is admitted (four rate limits and a
//! credit reservation) and settled:
//!
//! - `gw-metered-embedded` — embedded ledger (in memory, written behind),
//! - `gw-metered-redis`    — Redis ledger (one script per admission, settles asynchronous),
//!
//! and the plain store-key gateways again with a webhook registered for `request.completed`,
//! delivered to a receiver on loopback inside this process (`load/webhooks.rs`), one delivery per
//! request; after each of their turns the benchmark waits until the receiver has every event
//! owed so far, and at the end checks that every request's event arrived:
//!
//! - `gw-webhooks-embedded` — against `gw-embedded`,
//! - `gw-webhooks-redis`    — against `gw-redis` (on a `redis-server` of its own),
//!
//! and, for streams only, the gateway holding `BENCH_OPEN_STREAMS` (default 10,000) streams open
//! at once in front of a slow mock (one chunk per 100 ms), for what an open stream costs in memory
//! (`load/open_streams.rs`):
//!
//! - `gw-open-streams`
//!
//! and prints a Markdown report with throughput, latency percentiles, server CPU per request,
//! peak RSS, Redis round trips per request and PASS/MISS budgets for the gateway, the cached key
//! lookup, limits and credits, and webhooks (p99, and every event delivered).
//!
//! Environment: `BENCH_SECS` (measured seconds per run, default 5), `BENCH_WARMUP_SECS`
//! (default 1), `BENCH_CONCURRENCY` (default `1,16,64`), `BENCH_STREAM_CONCURRENCY`
//! (default `1,16`), `BENCH_ROUNDS` (turns each path takes per row, pooled; default 1),
//! `BENCH_PATHS` (comma-separated path names to measure, default all), `BENCH_KEEP_TMP` (keep
//! configs and logs), `BENCH_BASELINE_BIN` (another build of `tollgate`, measured as path
//! `baseline` with the gateway's config, for a before/after table in the same run),
//! `BENCH_OPEN_STREAMS` (streams of the open-streams row, default 10000).
//!
//! The binary doubles as the mock upstream: `load --mock-upstream` (see `load/mock.rs`).

#[path = "load/loadgen.rs"]
mod loadgen;
#[path = "load/mock.rs"]
mod mock;
#[path = "load/open_streams.rs"]
mod open_streams;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/redis.rs"]
mod redis;
#[path = "load/report.rs"]
mod report;
#[path = "load/sys.rs"]
mod sys;
#[path = "load/webhooks.rs"]
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;

use loadgen::{Spec, Target};
use mock::UPSTREAM_MODEL;
use procs::{Harness, Plan, Server, Store, AGENT_MODEL, BENCH_KEY, UPSTREAM_KEY};
use redis::{CommandStats, Traffic};
use report::{
    CensusRecord, DeliveryPace, Header, Record, RedisUsage, Usage, WebhookCheck, BASELINE, DIRECT, GATEWAY,
    GW_EMBEDDED, GW_METERED_EMBEDDED, GW_METERED_REDIS, GW_REDIS, GW_RESPONSES, GW_WEBHOOKS_EMBEDDED,
    GW_WEBHOOKS_REDIS, NGINX, PATHS,
};
use sys::{Machine, ProcSample, ProcSet};
use webhooks::Receiver;

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
    let paths = start_paths(&mut harness, &mut header, &settings);
    let open = open_streams::start(&mut harness, &mut header, &settings);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot build the load generator runtime");
    let mut records = run_matrix(&runtime, &settings, &paths);
    let checks = check_deliveries(&paths, &records);
    let censuses = run_census(&runtime, &paths);
    let open_facts = open.map(|open| {
        let (record, facts) = open_streams::run(&runtime, &settings, &open);
        records.push(record);
        facts
    });

    println!("{}", report::render(&header, &records, &censuses, &checks, open_facts));
    if harness.keeps_dir() {
        eprintln!("configs and logs kept in {}", harness.dir().display());
    }
}

/// Starts the mock upstream and every server that goes in front of it. Without the mock
/// nothing can be measured; a gateway or nginx that is missing or does not start is
/// reported loudly and its path skipped, so the others still get measured.
fn start_paths(harness: &mut Harness, header: &mut Header, settings: &Settings) -> Vec<Path> {
    let upstream = harness.start_mock(None).expect("the mock upstream must start for any measurement");
    let mut paths = Vec::new();
    if settings.wants(DIRECT) {
        paths.push(Path::direct(upstream));
    }

    if settings.wants(GATEWAY) {
        eprintln!("starting gateway ({})", env!("CARGO_BIN_EXE_tollgate"));
        let static_gateway = harness
            .write_gateway_config(GATEWAY, upstream, &Store::Unused, Plan::Unmetered)
            .and_then(|config| harness.start_gateway(GATEWAY, &config));
        match static_gateway {
            Ok(server) => paths.push(Path::through(GATEWAY, server, AGENT_MODEL, BENCH_KEY)),
            Err(err) => skip(header, "gateway did not start", &err),
        }
    }
    if settings.wants(GW_RESPONSES) {
        header.setup.push(format!(
            "{GW_RESPONSES}: the gateway's config in its own process, called at `POST /v1/responses` with the same \
             prompt as `input` and `store: false` (the translation's cost, not the store's)"
        ));
        let responses = harness
            .write_gateway_config(GW_RESPONSES, upstream, &Store::Unused, Plan::Unmetered)
            .and_then(|config| harness.start_gateway(GW_RESPONSES, &config));
        match responses {
            Ok(server) => {
                let mut path = Path::through(GW_RESPONSES, server, AGENT_MODEL, BENCH_KEY);
                path.api = Api::Responses;
                paths.push(path);
            }
            Err(err) => skip(header, "gw-responses did not start", &err),
        }
    }
    if let Some(bin) = std::env::var_os("BENCH_BASELINE_BIN").filter(|_| settings.wants(BASELINE)) {
        let bin = std::path::PathBuf::from(bin);
        eprintln!("starting baseline ({})", bin.display());
        header.setup.push(format!("{BASELINE}: the gateway's config served by `{}`", bin.display()));
        let baseline = harness
            .write_gateway_config(BASELINE, upstream, &Store::Unused, Plan::Unmetered)
            .and_then(|config| harness.start_gateway_bin(BASELINE, &config, &bin));
        match baseline {
            Ok(server) => paths.push(Path::through(BASELINE, server, AGENT_MODEL, BENCH_KEY)),
            Err(err) => skip(header, "baseline did not start", &err),
        }
    }
    paths.extend(start_store_paths(harness, header, upstream, settings));
    paths.extend(start_webhook_paths(harness, header, upstream, settings));

    if !settings.wants(NGINX) {
        return paths;
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

/// Starts the gateways whose bench key lives in a store: embedded, and Redis if
/// `redis-server` is installed, each with the key's workspace on the default plan and on the
/// metered one. Like any other path, one that does not start is skipped loudly.
fn start_store_paths(
    harness: &mut Harness,
    header: &mut Header,
    upstream: SocketAddr,
    settings: &Settings,
) -> Vec<Path> {
    let embedded = [(GW_EMBEDDED, Plan::Unmetered), (GW_METERED_EMBEDDED, Plan::Metered)];
    let redis_paths = [(GW_REDIS, Plan::Unmetered), (GW_METERED_REDIS, Plan::Metered)];
    let wanted = |list: &[(&'static str, Plan)]| -> Vec<(&'static str, Plan)> {
        list.iter().copied().filter(|(name, _)| settings.wants(name)).collect()
    };
    let (embedded, redis_paths) = (wanted(&embedded), wanted(&redis_paths));
    if embedded.is_empty() && redis_paths.is_empty() {
        return Vec::new();
    }
    header.setup.push(format!(
        "{GW_EMBEDDED} / {GW_REDIS}: the gateway's config plus a `[store]` (embedded: SQLite in the temp dir; \
         redis) with `key_cache_ttl_ms = 60000`, called with a key made by `tollgate keys create` in a workspace \
         on the default plan (no limits, no allowance; agent without a price) instead of the static key; \
         non-streaming only; the warm-up fills the key cache"
    ));
    header.setup.push(format!(
        "{GW_METERED_EMBEDDED} / {GW_METERED_REDIS}: the same, with the workspace on {} — so each request \
         is admitted (four GCRA limits + credit reservation) and settled; `[credits]` defaults (flush every 1 s)",
        Plan::describe()
    ));
    let mut paths = Vec::new();
    for (name, plan) in embedded {
        match start_store_gateway(harness, name, upstream, &Store::Embedded, plan) {
            Ok(path) => paths.push(path),
            Err(err) => skip(header, &format!("{name} did not start"), &err),
        }
    }
    if redis_paths.is_empty() {
        return paths;
    }
    let Some(bin) = procs::find_redis_server() else {
        skip(header, "redis-server is not installed", "looked in $PATH and the usual sbin directories");
        return paths;
    };
    let (redis, redis_pid) = match harness.start_redis(&bin, "redis") {
        Ok(started) => started,
        Err(err) => {
            skip(header, "redis-server did not start", &err);
            return paths;
        }
    };
    for (name, plan) in redis_paths {
        match start_store_gateway(harness, name, upstream, &Store::Redis(redis), plan) {
            Ok(path) => paths.push(Path { redis: Some((redis, redis_pid)), ..path }),
            Err(err) => skip(header, &format!("{name} did not start"), &err),
        }
    }
    header.setup.push(format!(
        "{GW_REDIS} / {GW_METERED_REDIS}: one private {} on loopback (no persistence), used by nothing else \
         (each gateway under its own key prefix); `INFO commandstats` and the server's CPU before and after each \
         window count the gateway's script calls (`EVALSHA`) and every command executed, including those scripts \
         run inside Redis; after the measured rows, an untimed census ({CENSUS_WINDOW:?} at c={CENSUS_CONCURRENCY} \
         per path, `MONITOR` counting from a {CENSUS_QUIET:?} lull before the first request until the last settle \
         and event have landed) tells round trips from commands run inside scripts, each script by its sha, and, by \
         the keys each command touches, the gateway's background work (event log, webhook delivery worker, credit \
         watcher), counted apart from the request path and settles, and other gateways' commands, left out",
        redis::version(&bin)
    ));
    paths
}

/// Creates a store-backed key with the gateway's CLI on the config the gateway will use, then
/// starts that gateway; the path authenticates with the new key.
fn start_store_gateway(
    harness: &mut Harness,
    name: &'static str,
    upstream: SocketAddr,
    store: &Store,
    plan: Plan,
) -> Result<Path, String> {
    eprintln!("starting {name}");
    let config = harness.write_gateway_config(name, upstream, store, plan)?;
    let key = procs::create_store_key(&config, plan)?;
    let server = harness.start_gateway(name, &config)?;
    Ok(Path { streams: false, ..Path::through(name, server, AGENT_MODEL, &key) })
}

/// Starts the gateways with a webhook: `gw-embedded`'s and `gw-redis`'s configs plus a
/// `[webhooks]` section that allows a loopback target, each with its own receiver registered for
/// `request.completed`. The Redis one gets a `redis-server` of its own: its delivery worker polls
/// its store, which must not show up in the other Redis paths' command counts and census.
fn start_webhook_paths(
    harness: &mut Harness,
    header: &mut Header,
    upstream: SocketAddr,
    settings: &Settings,
) -> Vec<Path> {
    let mut paths = Vec::new();
    if settings.wants(GW_WEBHOOKS_EMBEDDED) {
        match start_webhook_gateway(harness, GW_WEBHOOKS_EMBEDDED, upstream, &Store::Embedded) {
            Ok(path) => paths.push(path),
            Err(err) => skip(header, &format!("{GW_WEBHOOKS_EMBEDDED} did not start"), &err),
        }
    }
    if settings.wants(GW_WEBHOOKS_REDIS) {
        match procs::find_redis_server() {
            None => skip(header, "redis-server is not installed", "looked in $PATH and the usual sbin directories"),
            Some(bin) => match harness.start_redis(&bin, "redis-webhooks") {
                Err(err) => skip(header, "redis-server (webhooks) did not start", &err),
                Ok((redis, redis_pid)) => {
                    match start_webhook_gateway(harness, GW_WEBHOOKS_REDIS, upstream, &Store::Redis(redis)) {
                        Ok(path) => paths.push(Path { redis: Some((redis, redis_pid)), ..path }),
                        Err(err) => skip(header, &format!("{GW_WEBHOOKS_REDIS} did not start"), &err),
                    }
                }
            },
        }
    }
    if !paths.is_empty() {
        header.setup.push(format!(
            "{GW_WEBHOOKS_EMBEDDED} / {GW_WEBHOOKS_REDIS}: {GW_EMBEDDED}'s / {GW_REDIS}'s config plus \
             `[webhooks] allow_private_targets = true` (all other webhook settings default), and a webhook \
             registered with `POST /v1/webhooks` (a `webhook`-scope key of the same workspace) for `{}` → a \
             receiver on loopback in the benchmark process (HTTP/1.1, answers 200 with an empty body, counts \
             distinct `webhook-id`s); after each turn of these paths the benchmark waits (≤ {TURN_DRAIN:?}) until \
             the receiver has every event owed so far, then at the end (≤ {FINAL_DRAIN:?}) checks every request \
             answered on the path, warm-up included, was delivered; {GW_WEBHOOKS_REDIS} uses a second private \
             redis-server, not shared with the other Redis paths",
            webhooks::EVENT_TYPE
        ));
    }
    paths
}

/// Like [`start_store_gateway`] on the unmetered plan, plus the webhook: the config allows a
/// loopback target, a `webhook`-scope key registers a fresh receiver once the gateway serves.
fn start_webhook_gateway(
    harness: &mut Harness,
    name: &'static str,
    upstream: SocketAddr,
    store: &Store,
) -> Result<Path, String> {
    eprintln!("starting {name}");
    let config = harness.write_gateway_config(name, upstream, store, Plan::Unmetered)?;
    webhooks::enable_in_config(&config)?;
    let key = procs::create_store_key(&config, Plan::Unmetered)?;
    let manager = procs::create_webhook_key(&config)?;
    let server = harness.start_gateway(name, &config)?;
    let receiver = Receiver::start()?;
    let id = webhooks::register(server.addr, &manager, &receiver)?;
    eprintln!("  webhook {id} → {} for {}", receiver.url(), webhooks::EVENT_TYPE);
    Ok(Path { streams: false, receiver: Some(receiver), ..Path::through(name, server, AGENT_MODEL, &key) })
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
    /// Turns each path takes per row (see [`run_matrix`]).
    rounds: usize,
    /// `None`: every path.
    paths: Option<Vec<&'static str>>,
    /// Streams the open-streams row holds open.
    open_streams: usize,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            warmup: env_secs("BENCH_WARMUP_SECS", 1.0),
            measure: env_secs("BENCH_SECS", 5.0),
            concurrency: env_list("BENCH_CONCURRENCY", &[1, 16, 64]),
            stream_concurrency: env_list("BENCH_STREAM_CONCURRENCY", &[1, 16]),
            rounds: env_count("BENCH_ROUNDS", 1),
            paths: env_paths("BENCH_PATHS"),
            open_streams: env_count("BENCH_OPEN_STREAMS", open_streams::DEFAULT_STREAMS),
        }
    }

    fn wants(&self, path: &str) -> bool {
        self.paths.as_ref().is_none_or(|paths| paths.contains(&path))
    }

    fn command(&self) -> String {
        let paths = self.paths.as_ref().map_or(String::new(), |paths| format!("BENCH_PATHS={} ", paths.join(",")));
        let rounds = if self.rounds > 1 { format!("BENCH_ROUNDS={} ", self.rounds) } else { String::new() };
        let open = match self.open_streams {
            open_streams::DEFAULT_STREAMS => String::new(),
            n => format!("BENCH_OPEN_STREAMS={n} "),
        };
        format!(
            "BENCH_SECS={} BENCH_WARMUP_SECS={} BENCH_CONCURRENCY={} BENCH_STREAM_CONCURRENCY={} {rounds}{open}{paths}\
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
        if self.rounds > 1 {
            setup.push(format!(
                "{} rounds: the paths of each row take turns {} times; each row pools its path's rounds \
                 (latencies from all of them, req/s over their total time)",
                self.rounds, self.rounds
            ));
        }
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

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => n,
        _ => panic!("{name}={v:?}: expected a positive integer"),
    })
}

/// A comma-separated subset of [`PATHS`]; unknown names are an error, so a typo can't silently
/// measure nothing.
fn env_paths(name: &str) -> Option<Vec<&'static str>> {
    let value = std::env::var(name).ok()?;
    let paths = value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            PATHS.iter().copied().find(|path| *path == item).unwrap_or_else(|| {
                panic!("{name}={value:?}: unknown path {item:?}; expected some of {}", PATHS.join(","))
            })
        })
        .collect();
    Some(paths)
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
    /// The Redis server this path's gateway uses (address, pid), whose commands and CPU are
    /// counted per window.
    redis: Option<(SocketAddr, u32)>,
    /// The receiver of this path's webhook, which is owed one event per answered request.
    receiver: Option<Receiver>,
    /// Which front door the load calls.
    api: Api,
}

/// The front door a path's requests go to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    /// `POST /v1/responses` with `store: false`: the translation's cost, not the store's.
    Responses,
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
            receiver: None,
            api: Api::Chat,
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
            receiver: None,
            api: Api::Chat,
        }
    }

    /// The same client request for every path; only the model name and key differ (and the
    /// Responses path asks it in its own dialect).
    fn target(&self, stream: bool) -> Target {
        let stream_field = if stream { r#","stream":true"# } else { "" };
        let (body, path) = match self.api {
            Api::Chat => (
                format!(
                    r#"{{"model":"{}","messages":[{{"role":"user","content":"Say hello to the benchmark"}}]{stream_field}}}"#,
                    self.model
                ),
                "/v1/chat/completions",
            ),
            Api::Responses => (
                format!(
                    r#"{{"model":"{}","input":"Say hello to the benchmark","store":false{stream_field}}}"#,
                    self.model
                ),
                "/v1/responses",
            ),
        };
        Target {
            addr: self.addr,
            host: HeaderValue::from_str(&self.addr.to_string()).expect("a socket address is a valid Host"),
            authorization: HeaderValue::from_str(&format!("Bearer {}", self.api_key))
                .expect("bench keys are valid header values"),
            body: Bytes::from(body),
            path,
            stream,
        }
    }
}

/// Server counters at one instant.
struct Snapshot {
    procs: ProcSample,
    log_bytes: u64,
    /// The path's Redis server: its command counters (`None`: no Redis, or it did not answer)
    /// and its CPU.
    redis: Option<(CommandStats, ProcSample)>,
    /// Distinct events the path's webhook receiver has got so far (webhooks paths only).
    delivered: Option<u64>,
}

impl Snapshot {
    fn take(server: &Server, redis: Option<(SocketAddr, u32)>, receiver: Option<&Receiver>) -> Self {
        let redis = redis.and_then(|(addr, pid)| {
            let stats =
                redis::command_stats(addr).map_err(|err| eprintln!("  !! redis INFO commandstats: {err}")).ok()?;
            Some((stats, ProcSample::take(ProcSet::Single(pid))))
        });
        Self {
            procs: ProcSample::take(server.procs),
            log_bytes: std::fs::metadata(&server.log).map_or(0, |m| m.len()),
            redis,
            delivered: receiver.map(|r| r.counts().distinct),
        }
    }
}

/// Runs every (case, concurrency, path) combination. Paths are interleaved per row rather
/// than run one after another, so slow drift of the machine affects all paths alike.
/// With `BENCH_ROUNDS` > 1 the paths of a row take turns that many times and each path's
/// rounds are merged into one record, so every path sees the same mix of the machine's moods.
fn run_matrix(runtime: &tokio::runtime::Runtime, settings: &Settings, paths: &[Path]) -> Vec<Record> {
    let ticks_per_sec = sys::clock_ticks_per_sec();
    let cases = [(false, &settings.concurrency), (true, &settings.stream_concurrency)];
    let mut records = Vec::new();
    for (stream, concurrencies) in cases {
        for &concurrency in concurrencies {
            let row: Vec<&Path> = paths.iter().filter(|path| path.streams || !stream).collect();
            let mut merged: Vec<Option<Record>> = row.iter().map(|_| None).collect();
            for round in 1..=settings.rounds {
                for (path, slot) in row.iter().zip(merged.iter_mut()) {
                    let spec = Spec::new(concurrency, settings.warmup, settings.measure);
                    eprintln!(
                        "running {:<19} {:<10} c={concurrency:<3} round {round}/{} ...",
                        path.name,
                        if stream { "stream" } else { "non-stream" },
                        settings.rounds
                    );
                    let mut record = runtime.block_on(measure(path, stream, spec, ticks_per_sec));
                    settle_deliveries(path, &mut record);
                    match slot {
                        Some(sum) => sum.merge(record),
                        None => *slot = Some(record),
                    }
                }
            }
            records.extend(merged.into_iter().flatten());
        }
    }
    records
}

/// Longest wait after a turn of a webhooks path for the deliveries its load left behind.
const TURN_DRAIN: Duration = Duration::from_secs(120);
/// Longest wait at the end of the run for the last deliveries.
const FINAL_DRAIN: Duration = Duration::from_secs(60);

/// After a turn of a webhooks path: counts the requests it answered as events owed, notes the
/// backlog the load left, and waits (bounded) until it has arrived, so the next path is measured
/// without this gateway delivering in the background.
fn settle_deliveries(path: &Path, record: &mut Record) {
    let Some(receiver) = &path.receiver else {
        return;
    };
    receiver.expect(record.load.answered);
    let backlog = receiver.backlog();
    let (drain, drained) = match receiver.wait_delivered(TURN_DRAIN) {
        Ok(waited) => (waited, true),
        Err(waited) => {
            eprintln!("  !! {}: {} events still not delivered after {waited:?}", path.name, receiver.backlog());
            (waited, false)
        }
    };
    let pace = record.delivery.get_or_insert_with(DeliveryPace::default);
    pace.backlog = backlog;
    pace.drain = drain;
    pace.drained = drained;
}

/// After the measured rows: waits (bounded) until each webhooks path's receiver has one event
/// for every request its gateway answered in the whole run, and reports what arrived.
fn check_deliveries(paths: &[Path], records: &[Record]) -> Vec<WebhookCheck> {
    paths
        .iter()
        .filter_map(|path| {
            let receiver = path.receiver.as_ref()?;
            eprintln!("waiting for the last webhook deliveries of {} ...", path.name);
            let waited = receiver.wait_delivered(FINAL_DRAIN).unwrap_or_else(|waited| waited);
            let errors = records.iter().filter(|r| r.path == path.name).map(|r| r.load.errors).sum();
            Some(WebhookCheck {
                path: path.name,
                expected: receiver.expected(),
                errors,
                received: receiver.counts(),
                waited,
            })
        })
        .collect()
}

/// Load and length of the Redis census. The census counts every command from before the first
/// request to after the last settle, so a modest load keeps the settle queue short.
const CENSUS_CONCURRENCY: usize = 4;
const CENSUS_WINDOW: Duration = Duration::from_secs(2);
/// The gateway is quiet once it has sent no command of the request path, no settle and no
/// event-log write for this long (its delivery worker and credit watcher poll on timers and
/// never stop, so they do not count)...
const CENSUS_QUIET: Duration = Duration::from_millis(500);
/// ...which the census waits for, at most this long, before the load and after it (the
/// gateway's queued settles and events).
const CENSUS_DRAIN: Duration = Duration::from_secs(10);

/// After the measured rows, one more untimed run per Redis-backed path with `MONITOR` attached,
/// which labels every command the server runs as a round trip (and from which script) or as run
/// inside a script — what `INFO commandstats` cannot tell apart — and, by the keys it touches,
/// as the path's own or another gateway's (left out), and as judged (request path, settles) or
/// background (event log, delivery worker, credit watcher; counted apart). It counts from when
/// the gateway is quiet before the first request until its last asynchronous settle and event
/// have landed, so the counts per request are exact (give or take the store's rare background
/// calls, and the timers' polls, which are counted as they come).
fn run_census(runtime: &tokio::runtime::Runtime, paths: &[Path]) -> Vec<CensusRecord> {
    paths
        .iter()
        // A webhooks path's requests are events owed to its receiver; it has no census.
        .filter(|path| path.receiver.is_none())
        .filter_map(|path| {
            let (addr, _) = path.redis?;
            eprintln!("census  {:<19} non-stream c={CENSUS_CONCURRENCY:<3} (MONITOR, untimed) ...", path.name);
            match census(runtime, path, addr) {
                Ok(record) => Some(record),
                Err(err) => {
                    eprintln!("  !! census of {}: {err}", path.name);
                    None
                }
            }
        })
        .collect()
}

fn census(runtime: &tokio::runtime::Runtime, path: &Path, addr: SocketAddr) -> Result<CensusRecord, String> {
    // The Redis store's key prefix is the path's name (`procs::Store::section`).
    let mut monitor = redis::Monitor::start(addr, path.name)?;
    monitor.start_counting(CENSUS_QUIET, CENSUS_DRAIN)?;
    // No warm-up: every request, including those still in flight at the end, is counted.
    let spec = Spec::new(CENSUS_CONCURRENCY, Duration::ZERO, CENSUS_WINDOW);
    let (load, (), ()) = runtime.block_on(loadgen::run(Arc::new(path.target(false)), spec, || ()));
    let drained = monitor.wait_until_quiet(CENSUS_QUIET, CENSUS_DRAIN);
    let census = monitor.stop()?;
    drained?;
    if load.errors > 0 {
        return Err(format!("{} errors, e.g. {}", load.errors, load.error_samples.join("; ")));
    }
    Ok(CensusRecord { path: path.name, concurrency: CENSUS_CONCURRENCY, requests: load.completed + load.late, census })
}

async fn measure(path: &Path, stream: bool, spec: Spec, ticks_per_sec: u64) -> Record {
    let target = Arc::new(path.target(stream));
    let sample = || path.server.as_ref().map(|server| Snapshot::take(server, path.redis, path.receiver.as_ref()));
    let (load, before, after) = loadgen::run(target, spec, sample).await;
    let delivery = match (&before, &after) {
        (Some(before), Some(after)) => before
            .delivered
            .zip(after.delivered)
            .map(|(before, after)| DeliveryPace { in_window: after.saturating_sub(before), ..DeliveryPace::default() }),
        _ => None,
    };
    let usage = match (before, after) {
        (Some(before), Some(after)) if load.completed > 0 => {
            let requests = load.completed as f64;
            let cpu_us_per_req = |before: &ProcSample, after: &ProcSample| {
                after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 * 1e6 / ticks_per_sec as f64 / requests
            };
            let log_bytes = after.log_bytes.saturating_sub(before.log_bytes);
            let redis = match (&before.redis, &after.redis) {
                (Some((stats_before, cpu_before)), Some((stats_after, cpu_after))) => Some(RedisUsage {
                    traffic: Traffic::between(stats_before, stats_after),
                    cpu_us_per_req: cpu_us_per_req(cpu_before, cpu_after),
                }),
                _ => None,
            };
            Some(Usage {
                cpu_us_per_req: cpu_us_per_req(&before.procs, &after.procs),
                peak_rss_mb: after.procs.peak_rss_kb as f64 / 1024.0,
                // nginx's access log is off; only the gateway's log volume is of interest.
                log_bytes_per_req: (path.name == GATEWAY).then(|| log_bytes as f64 / requests),
                redis,
            })
        }
        _ => None,
    };
    if load.errors > 0 {
        eprintln!("  !! {} errors, e.g. {}", load.errors, load.error_samples.first().map_or("", String::as_str));
    }
    Record { path: path.name, stream, concurrency: spec.concurrency, load, usage, delivery }
}
