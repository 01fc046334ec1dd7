//! Logging: `tracing` to stdout through a non-blocking writer, so a slow
//! terminal or log shipper never stalls a request. `RUST_LOG` overrides the
//! configured level.
//!
//! Measured with `cargo bench --bench load`, a line per request handed to the
//! writer thread one by one cost a fifth of the gateway's throughput, mostly in
//! waking that thread. So:
//! - worker threads batch their info/debug lines in a thread-local buffer and
//!   hand it over in chunks of [`BATCH_BYTES`], or every [`FLUSH_EVERY`] (the
//!   worker calls [`flush_this_thread`]); warnings and errors go at once;
//! - the writer thread drains every queued chunk, then flushes once, through a
//!   `BufWriter` on stdout's file descriptor (`Stdout` is line-buffered and
//!   would cost one `write` syscall per line).
//!
//! A crash loses at most the last [`FLUSH_EVERY`] of a worker's info lines.
//!
//! The text format writes fields through [`fields::SafeFields`], so no
//! client-chosen value can forge a line, a field or a terminal escape; the
//! JSON format escapes by construction.

pub mod fields;
pub mod traces;

use std::cell::RefCell;
use std::io::{BufWriter, Write};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// A worker hands its batch to the writer thread when it reaches this size.
pub const BATCH_BYTES: usize = 16 * 1024;
/// ... or at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The writer thread's queue, shared by all threads.
static SINK: OnceLock<NonBlocking> = OnceLock::new();

thread_local! {
    /// `Some` on threads that batch (workers that call `flush_this_thread`).
    static BATCH: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

use crate::config::LogConfig;

/// Chunks (batches, or single lines from non-worker threads) queued for the
/// writer thread at most: 4 MiB of batches. Beyond it they are dropped (and
/// counted by tracing-appender) rather than blocking a request or growing.
const QUEUED_LINES: usize = 256;

/// What keeps logging and traces going: hold it until exit. Dropping it
/// sends the traces still batched, then flushes and stops the log writer.
pub struct Telemetry {
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    _writer: WorkerGuard,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            traces::shutdown(&provider);
        }
    }
}

/// Installs the global subscriber: the log (its level reloadable) and, when
/// `[tracing]` names a collector, the OpenTelemetry layer beside it.
pub fn init(config: &LogConfig, tracing_config: &crate::config::TracingConfig) -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) =
        NonBlockingBuilder::default().buffered_lines_limit(QUEUED_LINES).lossy(true).finish(stdout_writer());
    let _ = SINK.set(writer);
    // A per-layer filter: the log's level never hides a span from the traces.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = SET_FILTER.set(Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())));
    let log = tracing_subscriber::fmt::layer().with_writer(Batched).with_target(false).with_ansi(ansi);
    let log = if config.json {
        log.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        log.fmt_fields(fields::SafeFields).with_filter(filter).boxed()
    };
    let traces = tracing_config.otlp.as_ref().and_then(|otlp| match traces::provider(otlp) {
        Ok(provider) => Some(provider),
        Err(e) => {
            eprintln!("tollgate: traces are off: {e}");
            None
        }
    });
    let otel = traces.as_ref().map(traces::layer);
    tracing_subscriber::registry().with(log).with(otel).init();
    Telemetry { traces, _writer: guard }
}

type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Swaps the installed subscriber's filter (a config reload's `log.level`).
static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// Sets the log level (an `EnvFilter` directive, e.g. `info,tollgate=debug`)
/// of the running process. `RUST_LOG`, when set, wins, as it does at start;
/// without an installed subscriber (a test) only the directive is checked.
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(());
    }
    match SET_FILTER.get() {
        Some(set) => set(filter),
        None => Ok(()),
    }
}

/// Block-buffered stdout; falls back to `Stdout` where the fd cannot be cloned.
fn stdout_writer() -> Box<dyn Write + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() {
            return Box::new(BufWriter::with_capacity(64 * 1024, std::fs::File::from(fd)));
        }
    }
    Box::new(BufWriter::new(std::io::stdout()))
}

/// Makes this thread batch its info/debug lines; it must then call
/// [`flush_this_thread`] every [`FLUSH_EVERY`] and before it ends.
pub fn batch_this_thread() {
    BATCH.with(|b| *b.borrow_mut() = Some(Vec::with_capacity(BATCH_BYTES)));
}

/// Hands this thread's batched lines to the writer thread.
pub fn flush_this_thread() {
    let chunk = BATCH.with(|b| b.borrow_mut().as_mut().map(std::mem::take));
    if let Some(chunk) = chunk.filter(|c| !c.is_empty()) {
        send(&chunk);
    }
}

fn send(bytes: &[u8]) {
    if let Some(sink) = SINK.get() {
        let _ = sink.clone().write_all(bytes);
    }
}

/// The subscriber's writer: batches on batching threads, passes through elsewhere.
struct Batched;

/// One formatted event; tracing-subscriber writes each event in one `write`.
struct Line {
    urgent: bool,
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line { urgent: *meta.level() <= Level::WARN }
    }
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = BATCH.with(|b| match b.borrow_mut().as_mut() {
            Some(batch) if !self.urgent => {
                batch.extend_from_slice(bytes);
                (batch.len() >= BATCH_BYTES).then(|| std::mem::take(batch))
            }
            _ => Some(bytes.to_vec()),
        });
        if let Some(chunk) = full {
            send(&chunk);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error and its sources on one line, for logs and delivery records.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
