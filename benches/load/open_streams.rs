//! The open-streams row (issue 15, budget 5): many streams held open at once against a slow
//! model, to measure what an open stream costs the gateway in memory.
//!
//! Its own gateway process (the static-key config, `server.max_connections` raised to hold the
//! streams) in front of its own mock upstream that streams one chunk per [`TOKEN_INTERVAL`]
//! (`load --mock-upstream --token-interval-ms`), so each stream stays open for the 16 chunks'
//! pauses; the load generator's closed loop keeps `BENCH_OPEN_STREAMS` (default
//! [`DEFAULT_STREAMS`]) streams in flight. The gateway's peak RSS (`VmHWM`) over its life is
//! this row's alone, and is judged against the budget; its RSS at rest, before the load, tells
//! what the streams added.

use std::time::Duration;

use crate::procs::{self, Harness, Plan, Store, AGENT_MODEL, BENCH_KEY};
use crate::report::{Header, OpenStreamsFacts, Record, GW_OPEN_STREAMS};
use crate::sys::{self, ProcSample};
use crate::{loadgen::Spec, skip, Path, Settings};

/// Streams the row holds open unless `BENCH_OPEN_STREAMS` says otherwise.
pub const DEFAULT_STREAMS: usize = 10_000;
/// The slow model's pace: one token per 100 ms, like a real model under load.
const TOKEN_INTERVAL: Duration = Duration::from_millis(100);
/// The clients' first requests are spread over this (see [`Spec::ramp`]).
const RAMP: Duration = Duration::from_secs(3);
/// The warm-up at least: the ramp is over and every client's first stream (16 pauses, 1.6 s)
/// has ended and the next begun, so the window sees streams at every stage.
const WARMUP: Duration = Duration::from_secs(6);
/// A stream not complete within this is an error: on two shared cores, 10,000 streams of
/// 10 tokens a second are more events than the machine relays at full speed, so streams
/// run slower than the model's pace; what the row measures is that they all stay open.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors the gateway needs beside two per stream (the client's socket and the upstream
/// one); the load generator and the mock need one per stream and inherit the same limit.
const SPARE_FDS: u64 = 512;
/// Client connections the gateway may hold beyond the streams (health checks, slack).
const SPARE_CONNECTIONS: usize = 1_000;

/// The started path and what the report needs beside its record.
pub struct OpenStreams {
    path: Path,
    /// Streams the row holds open: as many as asked, or as fit under the open-files limit.
    streams: usize,
    facts: OpenStreamsFacts,
}

/// Starts the slow mock and the row's gateway, under an open-files limit raised to hold the
/// streams (children inherit it). When the limit cannot be raised that far, the row runs with
/// as many streams as fit and says so; a path that does not start is skipped loudly.
pub fn start(harness: &mut Harness, header: &mut Header, settings: &Settings) -> Option<OpenStreams> {
    if !settings.wants(GW_OPEN_STREAMS) {
        return None;
    }
    let wanted = settings.open_streams;
    let limit = sys::raise_open_files(2 * wanted as u64 + SPARE_FDS);
    let streams = wanted.min((limit.saturating_sub(SPARE_FDS) / 2) as usize);
    if streams < wanted {
        header.warnings.push(format!(
            "{GW_OPEN_STREAMS}: the open-files limit is {limit} (hard limit not raisable here), so {streams} streams \
             instead of {wanted}"
        ));
    }
    if streams == 0 {
        skip(header, "gw-open-streams cannot hold a stream", &format!("open-files limit {limit}"));
        return None;
    }
    eprintln!("starting {GW_OPEN_STREAMS} ({streams} streams, open-files limit {limit})");
    let started = (|| {
        let upstream = harness.start_mock(Some(TOKEN_INTERVAL))?;
        let config = harness.write_gateway_config(GW_OPEN_STREAMS, upstream, &Store::Unused, Plan::Unmetered)?;
        procs::set_server_option(&config, "max_connections", &(streams + SPARE_CONNECTIONS).to_string())?;
        harness.start_gateway(GW_OPEN_STREAMS, &config)
    })();
    let server = match started {
        Ok(server) => server,
        Err(err) => {
            skip(header, "gw-open-streams did not start", &err);
            return None;
        }
    };
    let at_rest_kb = ProcSample::take(server.procs).peak_rss_kb;
    header.setup.push(format!(
        "{GW_OPEN_STREAMS}: the gateway's config in its own process with `max_connections = {}`, in front of its \
         own mock that sends each of the 16 chunks {TOKEN_INTERVAL:?} after the one before; {streams} clients, each \
         streaming back to back, {WARMUP:?} warm-up at least; open-files limit {limit}; peak RSS is the whole \
         process's life, i.e. this row's",
        streams + SPARE_CONNECTIONS
    ));
    let path = Path::through(GW_OPEN_STREAMS, server, AGENT_MODEL, BENCH_KEY);
    let facts = OpenStreamsFacts { wanted, at_rest_mb: at_rest_kb as f64 / 1024.0 };
    Some(OpenStreams { path, streams, facts })
}

/// Runs the row: one round, whatever `BENCH_ROUNDS` says (its process's peak is per life).
pub fn run(runtime: &tokio::runtime::Runtime, settings: &Settings, open: &OpenStreams) -> (Record, OpenStreamsFacts) {
    let streams = open.streams;
    let spec = Spec {
        ramp: RAMP,
        timeout: STREAM_TIMEOUT,
        ..Spec::new(streams, settings.warmup.max(WARMUP), settings.measure)
    };
    eprintln!("running {GW_OPEN_STREAMS:<19} stream     c={streams} (slow model) ...");
    let record = runtime.block_on(crate::measure(&open.path, true, spec, sys::clock_ticks_per_sec()));
    (record, open.facts)
}
