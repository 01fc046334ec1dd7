//! Starting the processes under test, waiting until they really serve, and always stopping
//! them again — on success, on error and on panic — through the [`Harness`] guard.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::mock::UPSTREAM_MODEL;
use crate::redis;
use crate::sys::{self, ProcSet};

/// Client key the gateway is configured with (only its SHA-256 goes into the config).
pub const BENCH_KEY: &str = "tg_benchkey_0f3a9c2d7e5b41a8b6c9d0e1f2a3b4c5";
/// Agent name clients use; the gateway maps it to [`UPSTREAM_MODEL`].
pub const AGENT_MODEL: &str = "bench-agent";
/// Key the gateway presents upstream, and direct/nginx clients too (the mock ignores it).
pub const UPSTREAM_KEY: &str = "sk-bench-upstream";

/// Workspace and key name of the store-backed bench keys.
const STORE_WORKSPACE: &str = "bench";
/// The plan of the metered gateways' workspace.
const METERED_PLAN: &str = "bench-metered";
/// Limits no run can reach, so every request is checked against all four and none is refused:
/// each allows a burst of a minute's worth — 10⁸ requests, 10⁹ tokens (over 3 million requests
/// at the ~290 tokens each is counted) — more than a whole benchmark run sends to one gateway.
const METERED_RPM: u32 = 100_000_000;
const METERED_TPM: u32 = 1_000_000_000;
/// Whole credits a month: 10¹⁵ micro-credits (under the 2⁵³ a Lua script counts exactly), about
/// 10¹² requests at [`METERED_PRICE`].
const METERED_CREDITS: u64 = 1_000_000_000;
/// The bench agent's price on the metered gateways, micro-credits: per request, per 1K input
/// and per 1K output tokens.
const METERED_PRICE: &str = "{ request = 1000, input_per_1k = 100, output_per_1k = 300 }";
/// Longer than the whole benchmark's gap between two rows of a path, so a measured window
/// sees (almost) only cache hits; the warm-up fills the cache.
const KEY_CACHE_TTL_MS: u64 = 60_000;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A server the harness started and the benchmark sends load to.
pub struct Server {
    pub addr: SocketAddr,
    /// Processes whose CPU and memory are charged to this server.
    pub procs: ProcSet,
    /// Where its stdout/stderr go.
    pub log: PathBuf,
}

/// The `[store]` of a gateway config: with [`Plan`], what the gateways' configs differ in.
pub enum Store {
    /// The static-key gateway never asks its store about the bench key, but `serve` always
    /// opens one; it goes to the temp dir instead of the default `data/` in the working tree.
    Unused,
    /// SQLite in the temp dir.
    Embedded,
    /// The benchmark's own `redis-server`.
    Redis(SocketAddr),
}

impl Store {
    /// The `[store]` section of gateway `name`, appended to the shared gateway config. Each
    /// gateway gets its own file (embedded) or key prefix (Redis), so gateways sharing the
    /// benchmark's `redis-server` never see each other's workspaces, keys or balances.
    fn section(&self, dir: &Path, name: &str) -> String {
        let path = |file: &str| toml_string(&dir.join(file).display().to_string());
        match self {
            Store::Unused => format!("\n[store]\nbackend = \"embedded\"\npath = {}\n", path(&format!("{name}.db"))),
            Store::Embedded => format!(
                "\n[store]\nbackend = \"embedded\"\npath = {}\nkey_cache_ttl_ms = {KEY_CACHE_TTL_MS}\n",
                path(&format!("{name}.db"))
            ),
            Store::Redis(addr) => format!(
                "\n[store]\nbackend = \"redis\"\nurls = [\"redis://{addr}\"]\nprefix = \"{name}\"\n\
                 key_cache_ttl_ms = {KEY_CACHE_TTL_MS}\n"
            ),
        }
    }
}

/// The plan of the store-backed key's workspace, and whether the bench agent has a price.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The default plan (no limits, no allowance) and a free agent: the plain authenticated
    /// path. The meter still runs for the store key, with nothing to check or hold.
    Unmetered,
    /// [`METERED_PLAN`]: all four rate limits and a message-credit allowance, far beyond reach,
    /// and a priced agent, so every request is admitted (limits + reservation) and settled.
    Metered,
}

impl Plan {
    /// The agent's `price = ...` line, if it has one.
    fn price_line(self) -> String {
        match self {
            Plan::Unmetered => String::new(),
            Plan::Metered => format!("price = {METERED_PRICE}\n"),
        }
    }

    /// The `[plans.*]` section, if the plan is not the built-in default.
    fn section(self) -> String {
        match self {
            Plan::Unmetered => String::new(),
            Plan::Metered => format!(
                "\n[plans.{METERED_PLAN}]\nmessage_credits = {METERED_CREDITS}\nrpm = {METERED_RPM}\n\
                 tpm = {METERED_TPM}\nkey_rpm = {METERED_RPM}\nkey_tpm = {METERED_TPM}\n"
            ),
        }
    }

    /// For the report header.
    pub fn describe() -> String {
        format!(
            "plan `{METERED_PLAN}`: rpm = key_rpm = {METERED_RPM}, tpm = key_tpm = {METERED_TPM}, \
             message_credits = {METERED_CREDITS}; agent price = {METERED_PRICE} (micro-credits)"
        )
    }
}

/// A TOML basic string. Rust's `Debug` escapes `"` and `\` the way TOML does, and a temp
/// path has nothing else that would need escaping.
fn toml_string(text: &str) -> String {
    format!("{text:?}")
}

/// Creates the workspace (on `plan`) and a `chat` key in the store of `config` with the gateway's
/// own CLI, as an operator would, and returns the key's plaintext (the only line `keys create`
/// prints on stdout). Run before `serve` starts on the same config.
pub fn create_store_key(config: &Path, plan: Plan) -> Result<String, String> {
    match plan {
        // No `--plan`: the default, and how a workspace was made before there were plans.
        Plan::Unmetered => cli(config, &["workspaces", "create", STORE_WORKSPACE])?,
        Plan::Metered => cli(config, &["workspaces", "create", STORE_WORKSPACE, "--plan", METERED_PLAN])?,
    };
    issued_key(&cli(config, &["keys", "create", "--workspace", STORE_WORKSPACE, "--name", "bench"])?)
}

/// Creates a `webhook`-scope key in the bench workspace (made by [`create_store_key`] first): the
/// least a key needs to register the workspace's webhooks through the API.
pub fn create_webhook_key(config: &Path) -> Result<String, String> {
    let args = ["keys", "create", "--workspace", STORE_WORKSPACE, "--name", "bench-webhooks", "--scope", "webhook"];
    issued_key(&cli(config, &args)?)
}

/// The plaintext of a key from `keys create`'s stdout (its only line).
fn issued_key(stdout: &str) -> Result<String, String> {
    match stdout.lines().collect::<Vec<_>>().as_slice() {
        [key] if key.starts_with("tg_") => Ok((*key).to_owned()),
        _ => Err(format!("`tollgate keys create` printed {stdout:?} instead of one key")),
    }
}

/// Runs `tollgate <args> --config config` to completion; its stdout, or the reason it failed.
fn cli(config: &Path, args: &[&str]) -> Result<String, String> {
    let shown = args.join(" ");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `tollgate {shown}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`tollgate {shown} --config {}` failed ({}): {}",
            config.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("`tollgate {shown}` printed non-UTF-8: {e}"))
}

struct Managed {
    name: &'static str,
    child: Child,
}

/// Owns the temp dir and every child process. Dropping it stops the children (newest first,
/// so proxies go before the upstream they talk to) and removes the temp dir unless
/// `BENCH_KEEP_TMP` is set.
pub struct Harness {
    dir: PathBuf,
    keep_dir: bool,
    children: Vec<Managed>,
}

impl Harness {
    pub fn new() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("tollgate-load-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir, keep_dir: std::env::var_os("BENCH_KEEP_TMP").is_some(), children: Vec::new() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn keeps_dir(&self) -> bool {
        self.keep_dir
    }

    /// Re-executes this bench binary as the mock upstream and reads the port it bound; with a
    /// `token_interval`, as the slow model (see `mock.rs`). Its stdin stays an open pipe: the
    /// mock exits when it closes, i.e. when we die.
    pub fn start_mock(&mut self, token_interval: Option<Duration>) -> Result<SocketAddr, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut command = Command::new(exe);
        command.arg("--mock-upstream");
        if let Some(interval) = token_interval {
            command.arg(crate::mock::TOKEN_INTERVAL_FLAG).arg(interval.as_millis().to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start mock upstream: {e}"))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        self.children.push(Managed { name: "mock upstream", child });
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("reading mock upstream port: {e}"))?;
        let port: u16 = line.trim().parse().map_err(|_| format!("mock upstream printed {line:?} instead of a port"))?;
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Writes `<name>.toml` to the temp dir: the benchmark's gateway config with `store` as its
    /// `[store]` and `plan`'s price and plan. Written before the gateway starts, so the key CLI
    /// can use the same file.
    pub fn write_gateway_config(
        &self,
        name: &str,
        upstream: SocketAddr,
        store: &Store,
        plan: Plan,
    ) -> Result<PathBuf, String> {
        let config = self.dir.join(format!("{name}.toml"));
        let text = gateway_config(upstream, plan) + &plan.section() + &store.section(&self.dir, name);
        fs::write(&config, text).map_err(|e| format!("writing {}: {e}", config.display()))?;
        Ok(config)
    }

    /// Starts `tollgate serve --config config` against the mock, logging to `<name>.log`.
    pub fn start_gateway(&mut self, name: &'static str, config: &Path) -> Result<Server, String> {
        self.start_gateway_bin(name, config, Path::new(env!("CARGO_BIN_EXE_tollgate")))
    }

    /// [`start_gateway`](Self::start_gateway) with another build of the binary.
    pub fn start_gateway_bin(&mut self, name: &'static str, config: &Path, bin: &Path) -> Result<Server, String> {
        let addr = free_port()?;
        let log = self.dir.join(format!("{name}.log"));
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(addr.to_string())
            // The configured level (info) is part of what is measured; don't let the
            // caller's environment change it.
            .env_remove("RUST_LOG");
        let pid = self.spawn_logged(name, command, &log)?;
        self.wait_ready(name, addr, "/healthz", &log)?;
        Ok(Server { addr, procs: ProcSet::Single(pid), log })
    }

    /// Starts a private `redis-server` on a free loopback port, without persistence, for the
    /// Redis-backed gateways. Never the machine's own Redis: the benchmark counts every command
    /// the server processes, so nothing else may talk to it. It logs to `<name>.log`.
    pub fn start_redis(&mut self, redis_server: &Path, name: &'static str) -> Result<(SocketAddr, u32), String> {
        let addr = free_port()?;
        let log = self.dir.join(format!("{name}.log"));
        let mut command = Command::new(redis_server);
        command
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            // Where it would put a dump if asked to; never the caller's working directory.
            .arg("--dir")
            .arg(&self.dir);
        let pid = self.spawn_logged(name, command, &log)?;
        self.wait_for(name, &log, || redis::ping(addr).map_err(|e| format!("not serving on {addr}: {e}")))?;
        Ok((addr, pid))
    }

    /// Starts nginx in the foreground with everything (pid, logs, temp paths) in the temp dir.
    pub fn start_nginx(&mut self, nginx: &Path, upstream: SocketAddr) -> Result<Server, String> {
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let path = self.dir.join("nginx-temp").join(sub);
            fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        }
        let addr = free_port()?;
        let config = self.dir.join("nginx.conf");
        fs::write(&config, nginx_config(&self.dir, addr, upstream))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = self.dir.join("nginx-error.log");
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(&self.dir)
            // -e: also send start-up errors (before the config is read) to our file.
            .arg("-e")
            .arg(&log)
            .arg("-c")
            .arg(&config);
        let pid = self.spawn_logged("nginx", command, &self.dir.join("nginx-stdio.log"))?;
        self.wait_ready("nginx", addr, "/nginx-health", &log)?;
        Ok(Server { addr, procs: ProcSet::Tree(pid), log })
    }

    /// Spawns with stdout+stderr appended to `log`: a real file, so the server pays the real
    /// cost of logging, and nothing can block on a pipe nobody reads.
    fn spawn_logged(&mut self, name: &'static str, mut command: Command, log: &Path) -> Result<u32, String> {
        let open = || {
            File::options().create(true).append(true).open(log).map_err(|e| format!("opening {}: {e}", log.display()))
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let pid = child.id();
        self.children.push(Managed { name, child });
        Ok(pid)
    }

    /// Polls the newest child until `GET path` answers 200.
    fn wait_ready(&mut self, name: &str, addr: SocketAddr, path: &str, log: &Path) -> Result<(), String> {
        self.wait_for(name, log, || match http_get_status(addr, path) {
            Ok(200) => Ok(()),
            Ok(status) => Err(format!("GET {path} answers {status}")),
            Err(err) => Err(format!("not serving on {addr}: {err}")),
        })
    }

    /// Polls the newest child with `probe` until it succeeds. On failure that child is stopped
    /// and forgotten, and the error carries the tail of its log.
    fn wait_for(
        &mut self,
        name: &str,
        log: &Path,
        mut probe: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let failure = loop {
            let managed = self.children.last_mut().expect("a child was just spawned");
            if let Ok(Some(status)) = managed.child.try_wait() {
                break format!("{name} exited during start-up ({status})");
            }
            match probe() {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() >= deadline => break format!("{name} after {READY_TIMEOUT:?}: {err}"),
                Err(_) => sleep(Duration::from_millis(50)),
            }
        };
        if let Some(mut managed) = self.children.pop() {
            stop(&mut managed);
        }
        Err(format!("{failure}\n--- last lines of {} ---\n{}", log.display(), log_tail(log, 20)))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        while let Some(mut managed) = self.children.pop() {
            stop(&mut managed);
        }
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// SIGTERM first, so the gateway and nginx shut down as they would in production (nginx's
/// master also takes its workers down); SIGKILL after a grace period, including any children
/// a killed master would otherwise leave behind.
fn stop(managed: &mut Managed) {
    let child = &mut managed.child;
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = child.id();
    let orphans = sys::children_of(pid);
    if signal(pid, "TERM") {
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            sleep(Duration::from_millis(20));
        }
    }
    eprintln!("{} (pid {pid}) ignored SIGTERM; killing it", managed.name);
    let _ = child.kill();
    let _ = child.wait();
    for orphan in orphans {
        signal(orphan, "KILL");
    }
}

/// std can only SIGKILL its own children; `kill(1)` avoids a libc dependency for the rest.
fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A port that was free a moment ago. Racy in theory, fine on a benchmark machine.
fn free_port() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind :0: {e}"))?;
    listener.local_addr().map_err(|e| format!("local_addr: {e}"))
}

/// One blocking `GET` on a fresh connection; returns the status code.
fn http_get_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    let status = std::str::from_utf8(&head[9..12]).unwrap_or("");
    status.parse().map_err(|_| format!("not an HTTP response: {:?}", String::from_utf8_lossy(&head)))
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn gateway_config(upstream: SocketAddr, plan: Plan) -> String {
    let key_hash = hex::encode(Sha256::digest(BENCH_KEY.as_bytes()));
    let price = plan.price_line();
    format!(
        r#"# Written by `cargo bench --bench load`.
[server]
listen = "127.0.0.1:0"  # overridden by --listen

[log]
level = "info"  # keep info: the benchmark measures what ops run

[providers.bench]
kind = "openai"
base_url = "http://{upstream}/v1"
api_key = "{UPSTREAM_KEY}"

[agents.{AGENT_MODEL}]
provider = "bench"
upstream_model = "{UPSTREAM_MODEL}"
instructions = "You are a benchmark agent. Answer briefly."
{price}[agents.{AGENT_MODEL}.defaults]
temperature = 0.2
[agents.{AGENT_MODEL}.caps]
max_tokens = 256

[[keys]]
name = "bench"
sha256 = "{key_hash}"
"#
    )
}

/// Sets `key = value` in the `[server]` section of a config written by
/// [`Harness::write_gateway_config`] (a TOML table cannot be given twice, so it goes in, not after).
pub fn set_server_option(config: &Path, key: &str, value: &str) -> Result<(), String> {
    let text = fs::read_to_string(config).map_err(|e| format!("reading {}: {e}", config.display()))?;
    let text = text.replacen("[server]\n", &format!("[server]\n{key} = {value}\n"), 1);
    fs::write(config, text).map_err(|e| format!("writing {}: {e}", config.display()))
}

fn nginx_config(prefix: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    include_str!("nginx.conf")
        .replace("{{PREFIX}}", &prefix.display().to_string())
        .replace("{{LISTEN}}", &listen.to_string())
        .replace("{{UPSTREAM}}", &upstream.to_string())
}

/// The nginx binary, if installed.
pub fn find_nginx() -> Option<PathBuf> {
    find_binary("nginx")
}

/// The redis-server binary, if installed.
pub fn find_redis_server() -> Option<PathBuf> {
    find_binary("redis-server")
}

/// `$PATH` first, then the usual sbin locations (which are often not on a non-root `$PATH`).
fn find_binary(name: &str) -> Option<PathBuf> {
    let from_path =
        std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>()).unwrap_or_default();
    from_path
        .into_iter()
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `nginx -v` prints e.g. `nginx version: nginx/1.22.1` on stderr.
pub fn nginx_version(nginx: &Path) -> String {
    Command::new(nginx)
        .arg("-v")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            Some(text.trim().rsplit(' ').next()?.to_owned())
        })
        .unwrap_or_else(|| "nginx (unknown version)".to_owned())
}
