//! A real `redis-server` for one test, on a free port, killed on drop.
//!
//! Each test starts its own server so tests run in parallel and never touch a
//! Redis that is already running on the machine. When `redis-server` is not
//! installed, [`RedisServer::start`] returns `None` and the caller skips
//! (`support/tools.rs`) — except under CI (`CI=true`), where `scripts/test`
//! installs it and a missing server is a failure.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer PING (or a cluster to come up).
const READY: Duration = Duration::from_secs(30);

/// What kind of server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Append-only file in the server's directory (`appendfsync always`), so
    /// the data survives [`RedisServer::restart`], even after a kill -9.
    pub persistent: bool,
    /// A one-node Redis Cluster owning every slot: enforces the Cluster rules
    /// (a command touching keys of two slots fails with CROSSSLOT).
    pub cluster: bool,
}

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// The server's working directory, removed on drop.
    dir: PathBuf,
    options: Options,
}

impl RedisServer {
    /// An in-memory standalone server.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(Options::default())
    }

    /// Starts a server; `None` when `redis-server` is not installed (outside CI).
    pub fn start_with(options: Options) -> Option<RedisServer> {
        if let Err(e) = Command::new("redis-server").arg("--version").output() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server is not installed ({e}); scripts/test installs it (apt-get install redis-server)");
            }
            return None;
        }
        let dir = temp_dir();
        let mut last_error = String::new();
        // Another process may take the free port between our probe and the
        // server's bind; a few attempts make that harmless.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer { child: None, port, dir: dir.clone(), options };
            match server.spawn() {
                Ok(()) => {
                    if options.cluster {
                        server.form_cluster();
                    }
                    return Some(server);
                }
                Err(e) => {
                    last_error = e;
                    server.dir = PathBuf::new(); // keep the directory for the next attempt
                }
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server stops answering but keeps its connections (a hung
    /// Redis, not a dead one); commands sent meanwhile run at [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().expect("kill runs");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }

    /// Sends one command and returns its reply as text (errors start with `-`).
    pub fn command(&self, args: &[&str]) -> String {
        command(self.port, args).unwrap_or_else(|e| panic!("redis-server on port {}: {e}", self.port))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let dir = self.dir.to_str().expect("a UTF-8 temp dir");
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", "", "--dir", dir];
        if self.options.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            args.extend(["--appendonly", "no"]);
        }
        if self.options.cluster {
            args.extend(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
            args.extend(["--cluster-announce-ip", "127.0.0.1"]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if command(self.port, &["PING"]).is_ok_and(|r| r == "+PONG") {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("no PONG from port {port} within {READY:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Gives this one node every slot and waits for `cluster_state:ok`.
    fn form_cluster(&self) {
        let slots: Vec<String> = (0..16384).map(|s| s.to_string()).collect();
        let mut args = vec!["CLUSTER", "ADDSLOTS"];
        args.extend(slots.iter().map(String::as_str));
        let reply = self.command(&args);
        assert_eq!(reply, "+OK", "CLUSTER ADDSLOTS");
        let deadline = Instant::now() + READY;
        while !self.command(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "the one-node cluster did not become ok within {READY:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("the bound address").port()
}

fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-redis-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    dir
}

/// One command over a fresh connection, in RESP; simple and bulk replies only.
fn command(port: u16, args: &[&str]) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end().to_owned();
    let Some(len) = line.strip_prefix('$') else {
        return Ok(line);
    };
    let Ok(len) = len.parse::<usize>() else {
        return Ok(line); // $-1: nil
    };
    let mut body = vec![0; len + 2];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    body.truncate(len);
    String::from_utf8(body).map_err(|e| e.to_string())
}
