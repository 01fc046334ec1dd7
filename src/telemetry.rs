//! Logging: `tracing` to stdout through a non-blocking writer, so a slow
//! terminal or log shipper never stalls a request. `RUST_LOG` overrides the
//! configured level.
//!
//! The writer thread drains every queued line, then flushes once: it writes
//! through a `BufWriter` on stdout's file descriptor rather than `Stdout`
//! (which is line-buffered and would cost one `write` syscall per line), so
//! under load many access-log lines leave in one syscall.

use std::io::{BufWriter, Write};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Lines queued for the writer thread at most; beyond it, lines are dropped
/// (and counted by tracing-appender) rather than blocking a request.
const QUEUED_LINES: usize = 64 * 1024;

/// Installs the global subscriber. Keep the guard alive: dropping it flushes
/// and stops the writer thread.
pub fn init(config: &LogConfig) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) =
        NonBlockingBuilder::default().buffered_lines_limit(QUEUED_LINES).lossy(true).finish(stdout_writer());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false).with_ansi(ansi);
    if config.json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    guard
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
