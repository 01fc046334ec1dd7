//! Talking to the benchmark's own `redis-server` over raw RESP, without a client crate: the
//! benchmark only needs to know that it is up (`PING`), which commands it has served
//! (`INFO commandstats`, around each measured window) and, in a separate untimed census, which
//! of those were round trips from the gateway and which ran inside its scripts, and which were
//! the gateway's background work (event log, webhook delivery worker, credit watcher, schedule runner) rather
//! than its request path or settles (`MONITOR`).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A local server answers in microseconds; anything slower means it is not (yet) serving.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Commands whose calls are round trips that run a script. Commands a script runs inside Redis
/// are counted under their own names, never under these.
const SCRIPT_COMMANDS: [&str; 4] = ["evalsha", "eval", "evalsha_ro", "eval_ro"];
/// The benchmark's own probes (and the census's marks); never sent by the gateway, so left out
/// of every count.
const PROBES: [&str; 3] = ["info", "monitor", "echo"];

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

/// The gateway's work that runs off the request path and is not a settle: what the census
/// counts apart from the round trips it judges. Told apart by the keys a command touches (see
/// [`classify`]), so a script is placed by its keys, not by its sha.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Background {
    /// The event bus's drain into the event log: per batch and workspace, the webhook-list
    /// script (`...:ws:{W}:webhooks`) and the append script (`...:ws:{W}:events`: one `XADD`
    /// per event and two `XTRIM`s inside it). It follows the requests.
    EventLog,
    /// The webhook delivery worker: every `webhooks.poll_interval_ms` the promote script over
    /// `...:{deliveries}:retry`/`:queue`, `XAUTOCLAIM` and `XREADGROUP`, now and then
    /// `XINFO CONSUMERS`/`XGROUP DELCONSUMER`; for a delivery, the webhook read (`GET`
    /// `...:webhookid:`, `HGETALL` `...:webhook:`), `XACK`/`XDEL`, the retry script, the
    /// attempts list (`LPUSH`/`LTRIM`). It polls whatever the load. The event log's enqueue
    /// script (the deliveries of a batch, on `...:{deliveries}:queue`) is counted here too.
    DeliveryWorker,
    /// The credit watcher: the balances script (one key, the credits hash `...:credits:{W}`),
    /// once a second for each workspace whose balance changed.
    CreditWatcher,
    /// The schedule runner: `ZRANGEBYSCORE` over `...:timeline:{sched}:*` for what is due,
    /// on its tick, whether or not anything is scheduled.
    Scheduler,
}

impl Background {
    pub fn label(self) -> &'static str {
        match self {
            Background::EventLog => "event log",
            Background::DeliveryWorker => "delivery worker",
            Background::CreditWatcher => "credit watcher",
            Background::Scheduler => "schedule runner",
        }
    }

    /// Whether it runs on a timer rather than after requests: a census waiting for the
    /// gateway to go quiet ignores it (the delivery worker is never quiet).
    fn periodic(self) -> bool {
        !matches!(self, Background::EventLog)
    }
}

/// Where one command the census saw came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The request path, the settles and the store's own calls: what the census judges.
    Judged,
    Background(Background),
    /// Another gateway sharing the server: its keys are under another prefix.
    Elsewhere,
}

/// Stream consumer-group commands: only the delivery worker sends them.
const WORKER_COMMANDS: [&str; 8] =
    ["xreadgroup", "xautoclaim", "xclaim", "xack", "xpending", "xinfo", "xgroup", "xdel"];
/// Commands without keys (connection set-up, script loading, the benchmark's probes).
const KEYLESS: [&str; 14] = [
    "auth", "client", "cluster", "command", "config", "echo", "hello", "info", "monitor", "multi", "ping", "readonly",
    "script", "select",
];

/// Which of a gateway's work a command is, from its name and its first key; `prefix` is the
/// gateway's key prefix (`[store] prefix`). A command with no key to go by is counted as judged
/// (an upper bound, as before the gateway had background work).
fn classify(prefix: &str, command: &str, keys: &[String], script: bool) -> Source {
    let worker = WORKER_COMMANDS.contains(&command);
    let Some(first) = keys.first() else {
        return if worker { Source::Background(Background::DeliveryWorker) } else { Source::Judged };
    };
    let Some(name) = first.strip_prefix(prefix).and_then(|rest| rest.strip_prefix(':')) else {
        return Source::Elsewhere;
    };
    let workspace_log = name.starts_with("ws:") && (name.ends_with(":events") || name.ends_with(":webhooks"));
    if worker || ["{deliveries}:", "webhook:", "webhookid:"].iter().any(|p| name.starts_with(p)) {
        Source::Background(Background::DeliveryWorker)
    } else if workspace_log {
        Source::Background(Background::EventLog)
    } else if name.starts_with("timeline:") {
        Source::Background(Background::Scheduler)
    } else if script && keys.len() == 1 && name.starts_with("credits:") {
        // admit, settle and reap pass the credits hash among 4–7 keys; only balances alone.
        Source::Background(Background::CreditWatcher)
    } else {
        Source::Judged
    }
}

/// What `MONITOR` saw of one gateway while the census counted: each command the server ran for
/// it, labelled either with the client that sent it (a round trip) or as run by a script, and
/// split into what the census judges (the request path and the settles) and background work.
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// Judged round trips by command (lower case); script calls as `evalsha <first 8 of the
    /// sha>`, so each script is told apart.
    pub round_trips: BTreeMap<String, u64>,
    /// Commands the judged scripts ran inside Redis.
    pub in_scripts: u64,
    /// Background commands by source, then by command as in `round_trips`. Each is one command
    /// a client sent; several pipelined ones share a round trip.
    pub background: BTreeMap<Background, BTreeMap<String, u64>>,
    /// Commands background scripts ran inside Redis.
    pub background_in_scripts: u64,
    /// Commands other gateways on the same server sent (keys under another prefix), left out.
    pub elsewhere: u64,
}

impl Census {
    /// Judged script round trips by sha prefix.
    pub fn scripts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.round_trips.iter().filter_map(|(name, &n)| Some((name.strip_prefix("evalsha ")?, n)))
    }

    /// Judged round trips that do not run a script (key or workspace reads, the reaper's
    /// listing).
    pub fn other(&self) -> u64 {
        self.round_trips.iter().filter(|(name, _)| !name.starts_with("evalsha")).map(|(_, &n)| n).sum()
    }

    /// Judged round trips.
    pub fn total(&self) -> u64 {
        self.round_trips.values().sum()
    }

    /// Background commands sent, of one source.
    pub fn background_of(&self, source: Background) -> u64 {
        self.background.get(&source).map_or(0, |commands| commands.values().sum())
    }

    /// Background commands sent, all sources.
    pub fn background_total(&self) -> u64 {
        self.background.values().flat_map(BTreeMap::values).sum()
    }
}

/// The text of the `ECHO` a census sends to find its place in the `MONITOR` stream; numbered.
const MARK: &str = "tollgate-bench-census-mark-";
/// How long `MONITOR` may take to show a mark.
const MARK_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two marks while waiting for the gateway to go quiet.
const QUIET_POLL: Duration = Duration::from_millis(100);

/// Counts `MONITOR` lines into a [`Census`] of one gateway, and when its judged or event-log
/// work was last seen.
struct Counter {
    prefix: String,
    census: Census,
    /// Where the latest script call came from: the commands `[0 lua]` that follow it are its
    /// own (Redis 7.0 shows a script call, then the commands it runs, with nothing between).
    script: Option<Source>,
    /// Server time (µs) of the latest command that follows requests: judged or event log.
    last_busy_us: u64,
}

impl Counter {
    /// Counts one line; returns the mark's number and server time (µs) if it is a mark.
    fn count(&mut self, line: &str) -> Option<(u64, u64)> {
        // `+1700000000.123456 [0 127.0.0.1:5000] "EVALSHA" "0123abcd..." "7" "key" ...`, or
        // `[0 lua]` for a command a script ran.
        let (stamp, rest) = line.trim_start_matches('+').split_once(' ')?;
        let at_us = stamp.parse::<f64>().map_or(0, |secs| (secs * 1e6) as u64);
        let (client, args) = rest.split_once("] ")?;
        if client.ends_with(" lua") {
            match self.script.unwrap_or(Source::Judged) {
                Source::Judged => self.census.in_scripts += 1,
                Source::Background(_) => self.census.background_in_scripts += 1,
                Source::Elsewhere => {}
            }
            return None;
        }
        let mut args = Args(args.chars());
        let command = args.next()?.to_ascii_lowercase();
        self.script = None;
        if command == "echo" {
            let mark = args.next().and_then(|text| text.strip_prefix(MARK)?.parse().ok());
            return mark.map(|n| (n, at_us));
        }
        if PROBES.contains(&command.as_str()) {
            return None;
        }
        let script = SCRIPT_COMMANDS.contains(&command.as_str());
        let (name, keys) = if script {
            let sha = args.next().unwrap_or_default();
            let name = match command.as_str() {
                "evalsha" | "evalsha_ro" => format!("evalsha {}", &sha[..sha.len().min(8)]),
                _ => command.clone(),
            };
            let n = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            (name, args.take(n).collect::<Vec<_>>())
        } else {
            let keys = keys(&command, &mut args);
            (command.clone(), keys)
        };
        let source = classify(&self.prefix, &command, &keys, script);
        if script {
            self.script = Some(source);
        }
        match source {
            Source::Judged => *self.census.round_trips.entry(name).or_default() += 1,
            Source::Background(b) => *self.census.background.entry(b).or_default().entry(name).or_default() += 1,
            Source::Elsewhere => self.census.elsewhere += 1,
        }
        if matches!(source, Source::Judged) || matches!(source, Source::Background(b) if !b.periodic()) {
            self.last_busy_us = self.last_busy_us.max(at_us);
        }
        None
    }
}

/// The keys of a command other than a script call, or the first of them (enough to tell whose
/// it is): after the subcommand for `XINFO`/`XGROUP`, after `STREAMS` for `XREADGROUP`/`XREAD`,
/// else the first argument.
fn keys(command: &str, args: &mut Args<'_>) -> Vec<String> {
    let key = match command {
        _ if KEYLESS.contains(&command) => None,
        "xinfo" | "xgroup" | "object" => args.nth(1),
        "xreadgroup" | "xread" => args.find(|a| a.eq_ignore_ascii_case("streams")).and_then(|_| args.next()),
        _ => args.next(),
    };
    key.into_iter().collect()
}

/// The quoted arguments of a `MONITOR` line, unescaped (`\"`, `\\`, `\n`, `\xNN`, ...), read
/// one at a time so the values after the keys (event bodies) are never scanned.
struct Args<'a>(std::str::Chars<'a>);

impl Iterator for Args<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.0.by_ref().find(|&c| c == '"')?;
        let mut arg = String::new();
        loop {
            match self.0.next()? {
                '"' => return Some(arg),
                '\\' => match self.0.next()? {
                    'n' => arg.push('\n'),
                    'r' => arg.push('\r'),
                    't' => arg.push('\t'),
                    'a' => arg.push('\x07'),
                    'b' => arg.push('\x08'),
                    'x' => {
                        let hex: String = self.0.by_ref().take(2).collect();
                        arg.push(u8::from_str_radix(&hex, 16).map_or('?', char::from));
                    }
                    other => arg.push(other),
                },
                c => arg.push(c),
            }
        }
    }
}

/// What the census does when the reader reaches a mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnMark {
    /// Count from here: everything before is dropped.
    Restart,
    /// Stop counting: the census is complete.
    Stop,
}

/// The reader thread's state, shared with [`Monitor`].
struct Reading {
    counter: Counter,
    /// The latest mark read: its number and server time (µs).
    mark: (u64, u64),
    on_mark: Option<(u64, OnMark)>,
    /// The census, once the reader has reached the stop mark.
    result: Option<Census>,
    error: Option<String>,
    /// Set when the [`Monitor`] is dropped: the reader closes the connection.
    closed: bool,
}

type Shared = Arc<(Mutex<Reading>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, Reading> {
    shared.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A `MONITOR` connection read on its own thread, counting one gateway's commands (by its key
/// prefix) into a [`Census`]. `MONITOR` slows the server down, so it is only ever attached
/// outside measured windows. The census finds its place in the stream with marks: an `ECHO` of
/// a numbered text, sent on a connection of its own; once the reader has shown mark n, it has
/// counted every command the server ran before it, whatever the reader's lag.
pub struct Monitor {
    addr: SocketAddr,
    shared: Shared,
    reader: Option<JoinHandle<()>>,
    marks: u64,
}

impl Monitor {
    /// Returns once the server has confirmed the monitor: every command after that is seen.
    /// `prefix` is the gateway's key prefix: commands on other prefixes are left out.
    pub fn start(addr: SocketAddr, prefix: &str) -> Result<Monitor, String> {
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
        stream.write_all(b"MONITOR\r\n").map_err(|e| format!("sending MONITOR: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok).map_err(|e| format!("reading the reply to MONITOR: {e}"))?;
        if ok.trim_end() != "+OK" {
            return Err(format!("MONITOR answered {:?}", ok.trim_end()));
        }
        let counter = Counter {
            prefix: prefix.to_owned(),
            census: Census::default(),
            script: None,
            // Quiet means quiet since the monitor was attached, at least.
            last_busy_us: now_us(),
        };
        let reading = Reading { counter, mark: (0, 0), on_mark: None, result: None, error: None, closed: false };
        let shared: Shared = Arc::new((Mutex::new(reading), Condvar::new()));
        let state = Arc::clone(&shared);
        let reader = std::thread::spawn(move || read(reader, &state));
        Ok(Monitor { addr, shared, reader: Some(reader), marks: 0 })
    }

    /// Waits until the gateway has been quiet for `quiet` (at most `limit`), then counts from
    /// there: what ran before is dropped.
    pub fn start_counting(&mut self, quiet: Duration, limit: Duration) -> Result<(), String> {
        self.wait_quiet(quiet, limit, Some(OnMark::Restart))
    }

    /// Waits until the gateway has been quiet for `quiet`, at most `limit`: no command of the
    /// request path, no settle and no event-log write (the requests' queued work has landed).
    /// The delivery worker's polls and the credit watcher run on timers and never stop: they
    /// do not count as busy.
    pub fn wait_until_quiet(&mut self, quiet: Duration, limit: Duration) -> Result<(), String> {
        self.wait_quiet(quiet, limit, None)
    }

    /// Stops counting (at a mark, so every command the server ran until now is counted) and
    /// closes the connection.
    pub fn stop(mut self) -> Result<Census, String> {
        self.mark(Some(OnMark::Stop))?;
        let census = lock(&self.shared).result.take().ok_or("the MONITOR reader stopped without a census")?;
        if let Some(reader) = self.reader.take() {
            reader.join().map_err(|_| "the MONITOR reader panicked".to_owned())?;
        }
        Ok(census)
    }

    fn wait_quiet(&mut self, quiet: Duration, limit: Duration, then: Option<OnMark>) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let quiet_for = self.mark(then)?;
            if quiet_for >= quiet {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "still busy after {limit:?} (request path, settles or event log within {quiet:?}; background \
                     polls ignored)"
                ));
            }
            std::thread::sleep(QUIET_POLL);
        }
    }

    /// Sends the next mark and waits until the reader has shown it (having done `then` there);
    /// returns how long the gateway had been quiet at the mark, by the server's clock.
    fn mark(&mut self, then: Option<OnMark>) -> Result<Duration, String> {
        self.marks += 1;
        let n = self.marks;
        if let Some(then) = then {
            lock(&self.shared).on_mark = Some((n, then));
        }
        request(self.addr, &format!("ECHO {MARK}{n}"))?;
        let deadline = Instant::now() + MARK_TIMEOUT;
        let mut reading = lock(&self.shared);
        loop {
            if let Some(err) = &reading.error {
                return Err(err.clone());
            }
            let (seen, at_us) = reading.mark;
            if seen >= n {
                return Ok(Duration::from_micros(at_us.saturating_sub(reading.counter.last_busy_us)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("MONITOR did not show mark {n} within {MARK_TIMEOUT:?}"));
            }
            reading = self.shared.1.wait_timeout(reading, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
    }
}

/// The reader thread: counts every line until the stop mark, an error, or the [`Monitor`] is
/// dropped.
fn read(mut reader: BufReader<TcpStream>, shared: &Shared) {
    let fail = |error: String| {
        lock(shared).error = Some(error);
        shared.1.notify_all();
    };
    let mut line = String::new();
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => return fail("the server closed the MONITOR connection".to_owned()),
            Ok(_) => {
                let mut reading = lock(shared);
                if let Some((n, at_us)) = reading.counter.count(&line) {
                    reading.mark = (n, at_us);
                    match reading.on_mark {
                        Some((at, OnMark::Restart)) if at == n => reading.counter.census = Census::default(),
                        Some((at, OnMark::Stop)) if at == n => {
                            reading.result = Some(std::mem::take(&mut reading.counter.census));
                            shared.1.notify_all();
                            return;
                        }
                        _ => {}
                    }
                    shared.1.notify_all();
                }
                if reading.closed {
                    return;
                }
                line.clear();
            }
            // Quiet for 100 ms (a partial line stays in `line`).
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if lock(shared).closed {
                    return;
                }
            }
            Err(e) => return fail(format!("reading MONITOR: {e}")),
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
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
/// measured window and for the census's marks, outside the gateway's hot path.
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
