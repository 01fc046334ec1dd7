//! Logging: `tracing` to stdout through a non-blocking writer, so a slow
//! terminal or log shipper never stalls a request. `RUST_LOG` overrides the
//! configured level.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber. Keep the guard alive: dropping it flushes
/// and stops the writer thread.
pub fn init(config: &LogConfig) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false).with_ansi(ansi);
    if config.json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    guard
}
