//! `[server]` and `[log]`: the listener, its bounds and timeouts, and the log
//! level and format. Separate because nothing else in the config refers to
//! them: they shape the process, not what it serves.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::{RawLog, RawServer};
use super::{ConfigError, Validator};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted; larger bodies get 413 before being read.
    pub max_body_bytes: usize,
    /// A new connection must have sent its first request's headers within
    /// this time (first byte, h2 preface and settings included; slowloris guard).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long
    /// (HTTP/1 keep-alive, h2 kept open by pings).
    pub idle_timeout: Duration,
    /// A client must send its whole body within this time.
    pub body_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests and streams.
    pub shutdown_grace: Duration,
    /// Largest non-stream upstream response the gateway buffers to rewrite.
    pub max_upstream_body_bytes: usize,
    /// Open client connections of the whole process at most (all workers
    /// share it); at the bound the stalest idle connection makes room, and a
    /// newcomer waits up to `header_read_timeout` for a slot (see `server::connections`).
    pub max_connections: usize,
    /// Worker threads, each with its own runtime and listener (see `runtime`).
    pub workers: usize,
    /// TLS on the listener (`server.tls_cert` + `server.tls_key`); `None`: plain HTTP.
    pub tls: Option<super::tls::TlsConfig>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub json: bool,
}

impl Validator<'_> {
    pub(super) fn server(&self, s: RawServer) -> Result<ServerConfig, ConfigError> {
        let listen = s.listen.as_deref().unwrap_or("127.0.0.1:8080");
        Ok(ServerConfig {
            listen: listen.parse().map_err(|e| self.err("server.listen", format!("{listen:?}: {e}")))?,
            max_body_bytes: self.positive("server.max_body_bytes", s.max_body_bytes, 4 << 20)? as usize,
            header_read_timeout: self.millis("server.header_read_timeout_ms", s.header_read_timeout_ms, 10_000)?,
            idle_timeout: self.millis("server.idle_timeout_ms", s.idle_timeout_ms, 60_000)?,
            body_read_timeout: self.millis("server.body_read_timeout_ms", s.body_read_timeout_ms, 30_000)?,
            shutdown_grace: self.millis("server.shutdown_grace_ms", s.shutdown_grace_ms, 30_000)?,
            max_upstream_body_bytes: self.positive(
                "server.max_upstream_body_bytes",
                s.max_upstream_body_bytes,
                64 << 20,
            )? as usize,
            max_connections: self.positive("server.max_connections", s.max_connections, 10_000)? as usize,
            workers: self.positive(
                "server.workers",
                s.workers,
                std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            )? as usize,
            tls: self.tls(s.tls_cert, s.tls_key)?,
        })
    }

    pub(super) fn log(&self, l: RawLog) -> Result<LogConfig, ConfigError> {
        let log = LogConfig {
            level: l.level.unwrap_or_else(|| "info".into()),
            json: match l.format.as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => return Err(self.err("log.format", format!("{other:?} is not \"text\" or \"json\""))),
            },
        };
        tracing_subscriber::EnvFilter::try_new(&log.level)
            .map_err(|e| self.err("log.level", format!("{:?}: {e}", log.level)))?;
        Ok(log)
    }
}
