//! Talking to the benchmark's own `redis-server` over raw RESP, without a client crate: the
//! benchmark only needs to know that it is up (`PING`), which commands it has served
//! (`INFO commandstats`, around each measured window) and, in a separate untimed census, which
//! of those were round trips from the gateway and which ran inside its scripts (`MONITOR`).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A local server answers in microseconds; anything slower means it is not (yet) serving.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Commands whose calls are round trips that run a script. Commands a script runs inside Redis
/// are counted under their own names, never under these.
const SCRIPT_COMMANDS: [&str; 4] = ["evalsha", "eval", "evalsha_ro", "eval_ro"];
/// The benchmark's own probes; never sent by the gateway, so left out of every count.
const PROBES: [&str; 2] = ["info", "monitor"];

/// Whether the server answers `PING`.
pub fn ping(addr: SocketAddr) -> Result<(), String> {
    match request(addr, "PING")?.as_str() {
        "PONG" => Ok(()),
        other => Err(format!("PING answered {other:?}")),
    }
}

/// `INFO commandstats` at one instant: calls and server time (µs) per command name.
#[derive(Clone, Debug, Default)]
pub struct CommandStats(HashMap<String, (u64, u64)>);

impl CommandStats {
    fn calls(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |&(calls, _)| calls)
    }

    fn usec(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |&(_, usec)| usec)
    }

    fn total(&self) -> u64 {
        self.0.iter().filter(|(name, _)| !PROBES.contains(&name.as_str())).map(|(_, &(calls, _))| calls).sum()
    }
}

/// What the gateway asked of Redis between two [`CommandStats`] readings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// Every command executed, including those run inside scripts (the server's load).
    pub executed: u64,
    /// `EVALSHA`/`EVAL` calls: round trips that run a script (the ledger's admits and settles,
    /// the store's last-used and reaper scripts). Exact: no script runs these inside Redis.
    pub scripts: u64,
    /// Server time spent in script calls, µs (including the commands they ran).
    pub script_usec: u64,
}

impl Traffic {
    pub fn between(before: &CommandStats, after: &CommandStats) -> Self {
        let delta = |f: &dyn Fn(&CommandStats) -> u64| f(after).saturating_sub(f(before));
        Self {
            executed: delta(&CommandStats::total),
            scripts: delta(&|s| SCRIPT_COMMANDS.iter().map(|name| s.calls(name)).sum()),
            script_usec: delta(&|s| SCRIPT_COMMANDS.iter().map(|name| s.usec(name)).sum()),
        }
    }

    /// Both windows' traffic together.
    pub fn add(self, other: Traffic) -> Traffic {
        Traffic {
            executed: self.executed + other.executed,
            scripts: self.scripts + other.scripts,
            script_usec: self.script_usec + other.script_usec,
        }
    }
}

/// What `MONITOR` saw while it was attached: each command the server ran, labelled either with
/// the client that sent it (a round trip) or as run by a script.
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// Round trips by command (lower case); script calls as `evalsha <first 8 of the sha>`, so
    /// each script is told apart.
    pub round_trips: BTreeMap<String, u64>,
    /// Commands scripts ran inside Redis.
    pub in_scripts: u64,
}

impl Census {
    /// Script round trips by sha prefix.
    pub fn scripts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.round_trips.iter().filter_map(|(name, &n)| Some((name.strip_prefix("evalsha ")?, n)))
    }

    /// Round trips that do not run a script (key or workspace reads, the reaper's listing).
    pub fn other(&self) -> u64 {
        self.round_trips.iter().filter(|(name, _)| !name.starts_with("evalsha")).map(|(_, &n)| n).sum()
    }

    pub fn total(&self) -> u64 {
        self.round_trips.values().sum()
    }

    fn count(&mut self, line: &str, until_us: u64) -> bool {
        // `+1700000000.123456 [0 127.0.0.1:5000] "EVALSHA" "0123abcd..." "7" ...`, or
        // `[0 lua]` for a command a script ran.
        let Some((stamp, rest)) = line.trim_start_matches('+').split_once(' ') else {
            return false;
        };
        let at_us = stamp.parse::<f64>().map_or(0, |secs| (secs * 1e6) as u64);
        if until_us != 0 && at_us > until_us {
            return true;
        }
        let Some((client, args)) = rest.split_once("] ") else {
            return false;
        };
        let mut quoted = args.split('"').skip(1).step_by(2);
        let Some(command) = quoted.next().map(str::to_ascii_lowercase) else {
            return false;
        };
        if client.ends_with(" lua") {
            self.in_scripts += 1;
        } else if !PROBES.contains(&command.as_str()) {
            let name = match (command.as_str(), quoted.next()) {
                ("evalsha", Some(sha)) => format!("evalsha {}", &sha[..sha.len().min(8)]),
                _ => command,
            };
            *self.round_trips.entry(name).or_default() += 1;
        }
        false
    }
}

/// A `MONITOR` connection read on its own thread, from [`Monitor::start`] to [`Monitor::stop`].
/// `MONITOR` slows the server down, so it is only ever attached outside measured windows.
/// The benchmark's own probes (`INFO`) are left out of the census.
pub struct Monitor {
    until_us: Arc<AtomicU64>,
    reader: JoinHandle<Result<Census, String>>,
}

impl Monitor {
    /// Returns once the server has confirmed the monitor: every command after that is seen.
    pub fn start(addr: SocketAddr) -> Result<Monitor, String> {
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
        stream.write_all(b"MONITOR\r\n").map_err(|e| format!("sending MONITOR: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok).map_err(|e| format!("reading the reply to MONITOR: {e}"))?;
        if ok.trim_end() != "+OK" {
            return Err(format!("MONITOR answered {:?}", ok.trim_end()));
        }
        let until_us = Arc::new(AtomicU64::new(0));
        let until = Arc::clone(&until_us);
        let reader = std::thread::spawn(move || {
            let mut census = Census::default();
            let mut line = String::new();
            loop {
                match reader.read_line(&mut line) {
                    Ok(0) => return Err("the server closed the MONITOR connection".to_owned()),
                    Ok(_) => {
                        if census.count(&line, until.load(Ordering::Acquire)) {
                            return Ok(census);
                        }
                        line.clear();
                    }
                    // Quiet for 100 ms (a partial line stays in `line`): done if stopped, else
                    // keep waiting.
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        if until.load(Ordering::Acquire) != 0 {
                            return Ok(census);
                        }
                    }
                    Err(e) => return Err(format!("reading MONITOR: {e}")),
                }
            }
        });
        Ok(Monitor { until_us, reader })
    }

    /// Counts what the server ran up to now (by its own timestamps, so lines still in flight are
    /// counted too) and closes the connection.
    pub fn stop(self) -> Result<Census, String> {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64);
        self.until_us.store(now_us, Ordering::Release);
        self.reader.join().map_err(|_| "the MONITOR reader panicked".to_owned())?
    }
}

/// Waits until the server has run nothing but our probes for a while (the gateway's queued
/// settles are done), at most `limit`.
pub fn wait_until_idle(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + limit;
    let mut last = command_stats(addr)?.total();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = command_stats(addr)?.total();
        if now == last {
            return Ok(());
        }
        last = now;
    }
    Err(format!("still busy after {limit:?}"))
}

/// `INFO commandstats`: per command, `cmdstat_<name>:calls=<n>,usec=<µs>,...` (the probe's own
/// `INFO` is counted under `info`, which [`Traffic`] ignores).
pub fn command_stats(addr: SocketAddr) -> Result<CommandStats, String> {
    let info = request(addr, "INFO commandstats")?;
    let mut stats = HashMap::new();
    for line in info.lines() {
        let Some((name, fields)) = line.strip_prefix("cmdstat_").and_then(|rest| rest.split_once(':')) else {
            continue;
        };
        let field = |key: &str| {
            fields.split(',').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.trim().parse::<u64>().ok())
        };
        let calls = field("calls").ok_or_else(|| format!("INFO commandstats: no calls in {line:?}"))?;
        stats.insert(name.to_ascii_lowercase(), (calls, field("usec").unwrap_or(0)));
    }
    Ok(CommandStats(stats))
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
