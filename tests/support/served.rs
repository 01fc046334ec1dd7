//! A real `tollgate serve` process for one test: started in a directory of its
//! own on a free port, its output captured to a log file, killed on drop.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{client, closed_port, within};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// How long a stopped gateway may take to exit.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// The binary with none of the environment that would change which config it
/// loads or where it keeps its data.
pub fn tollgate() -> Command {
    let mut command = Command::new(BIN);
    for var in ["TOLLGATE_CONFIG", "TOLLGATE_LISTEN", "TOLLGATE_LOG", "TOLLGATE_DATA", "RUST_LOG"] {
        command.env_remove(var);
    }
    command
}

/// Kills the child when dropped, also when the test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `tollgate serve` child, its base URL and its log.
pub struct Served {
    pub child: KillOnDrop,
    pub base: String,
    pub log_path: PathBuf,
}

impl Served {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded) for a successful exit; returns the log.
    pub async fn terminate(mut self) -> String {
        let pid = self.child.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + EXIT_WITHIN;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                let log = self.log();
                assert!(status.success(), "a SIGTERM'd gateway exits 0, got {status}; log:\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "no exit {EXIT_WITHIN:?} after SIGTERM; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(mut self) {
        self.child.0.kill().expect("SIGKILL");
        self.child.0.wait().expect("reaped");
    }
}

/// Starts `tollgate serve <args>` in `dir`, logging to `<log_name>.log`, and
/// waits until it answers /healthz.
pub async fn serve_in(dir: &Path, args: &[&str], log_name: &str) -> Served {
    let log_path = dir.join(format!("{log_name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    serve_to(dir, args, log_path, log.try_clone().unwrap(), log).await
}

/// Like [`serve_in`], with only stdout (the log) in `<log_name>.log` and
/// stderr (the CLI's own messages, e.g. a first start's admin key) apart in
/// `<log_name>.stderr`.
pub async fn serve_in_stdout_apart(dir: &Path, args: &[&str], log_name: &str) -> Served {
    let log_path = dir.join(format!("{log_name}.log"));
    let stdout = std::fs::File::create(&log_path).unwrap();
    let stderr = std::fs::File::create(dir.join(format!("{log_name}.stderr"))).unwrap();
    serve_to(dir, args, log_path, stdout, stderr).await
}

/// Like [`serve_in`], started by `sh` after `ulimit <each of ulimits>` (e.g.
/// `-Sn 512`): the gateway under an open-files limit of the test's choosing,
/// the test process's own untouched.
pub async fn serve_in_under_ulimit(dir: &Path, args: &[&str], log_name: &str, ulimits: &[&str]) -> Served {
    let log_path = dir.join(format!("{log_name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = Command::new("sh");
    // `exec` keeps the pid: the child is the gateway itself.
    let limits: String = ulimits.iter().map(|limit| format!("ulimit {limit} && ")).collect();
    command.args(["-c", &format!("{limits}exec \"$0\" \"$@\""), BIN]);
    for var in ["TOLLGATE_CONFIG", "TOLLGATE_LISTEN", "TOLLGATE_LOG", "TOLLGATE_DATA", "RUST_LOG"] {
        command.env_remove(var);
    }
    serve_command(dir, command, args, log_path, log.try_clone().unwrap(), log).await
}

async fn serve_to(
    dir: &Path,
    args: &[&str],
    log_path: PathBuf,
    stdout: std::fs::File,
    stderr: std::fs::File,
) -> Served {
    serve_command(dir, tollgate(), args, log_path, stdout, stderr).await
}

async fn serve_command(
    dir: &Path,
    mut command: Command,
    args: &[&str],
    log_path: PathBuf,
    stdout: std::fs::File,
    stderr: std::fs::File,
) -> Served {
    let port = closed_port().await;
    let child = command
        .arg("serve")
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("the tollgate binary starts");
    let mut served = Served { child: KillOnDrop(child), base: format!("http://127.0.0.1:{port}"), log_path };
    let http = client();
    within("tollgate serve to answer /healthz", async {
        loop {
            if let Ok(response) = http.get(format!("{}/healthz", served.base)).send().await {
                assert_eq!(response.status(), 200, "log:\n{}", served.log());
                return;
            }
            if let Some(status) = served.child.0.try_wait().unwrap() {
                panic!("tollgate serve exited with {status}; log:\n{}", served.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    served
}

/// The admin key `serve` printed on a store's first start.
pub fn bootstrap_key(log: &str) -> String {
    log.lines()
        .skip_while(|l| !l.contains("first start: created the admin key"))
        .nth(1)
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| panic!("no admin key printed on first start; log:\n{log}"))
}
