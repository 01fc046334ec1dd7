//! Talking to the benchmark's own `redis-server` over raw RESP, without a client crate: the
//! benchmark only needs to know that it is up (`PING`) and how many commands it has served
//! (`INFO stats`), which is how it checks that a cached key costs the gateway no Redis round
//! trip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A local server answers in microseconds; anything slower means it is not (yet) serving.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Commands the server counts for one [`commands_processed`] probe: its own `INFO`, which
/// Redis counts after replying, so it shows up in the next reading, not in its own.
pub const PROBE_COMMANDS: u64 = 1;

/// Whether the server answers `PING`.
pub fn ping(addr: SocketAddr) -> Result<(), String> {
    match request(addr, "PING")?.as_str() {
        "PONG" => Ok(()),
        other => Err(format!("PING answered {other:?}")),
    }
}

/// `total_commands_processed` from `INFO stats`: every command the server has executed since
/// it started, including earlier probes (see [`PROBE_COMMANDS`]).
pub fn commands_processed(addr: SocketAddr) -> Result<u64, String> {
    let info = request(addr, "INFO stats")?;
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .ok_or_else(|| "INFO stats has no total_commands_processed".to_owned())?
        .trim()
        .parse()
        .map_err(|e| format!("total_commands_processed: {e}"))
}

/// Sends one inline command on a fresh connection and returns a simple-string or bulk-string
/// reply. A fresh connection per call keeps this free of state; it is only used twice per
/// measured window, outside the gateway's hot path.
fn request(addr: SocketAddr, command: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    write!(stream, "{command}\r\n").map_err(|e| format!("sending {command}: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).map_err(|e| format!("reading the reply to {command}: {e}"))?;
    let head = head.trim_end();
    if let Some(simple) = head.strip_prefix('+') {
        return Ok(simple.to_owned());
    }
    let Some(len) = head.strip_prefix('$') else {
        return Err(format!("{command} answered {head:?}"));
    };
    let len: usize = len.parse().map_err(|_| format!("{command}: bad bulk length {head:?}"))?;
    // The bulk string is followed by CRLF.
    let mut body = vec![0; len + 2];
    reader.read_exact(&mut body).map_err(|e| format!("reading the reply to {command}: {e}"))?;
    body.truncate(len);
    String::from_utf8(body).map_err(|e| format!("{command}: reply is not UTF-8: {e}"))
}

/// `redis-server --version` prints e.g. `Redis server v=7.0.15 sha=... bits=64 build=...`.
pub fn version(redis_server: &Path) -> String {
    Command::new(redis_server)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            Some(text.split_whitespace().find_map(|word| word.strip_prefix("v="))?.to_owned())
        })
        .map_or_else(|| "redis-server (unknown version)".to_owned(), |v| format!("redis-server {v}"))
}
