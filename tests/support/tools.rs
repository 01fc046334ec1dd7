//! What the tests need from the machine beyond Rust, and what a test does when
//! the machine lacks it. Include with `#[path = "support/tools.rs"] mod tools;`
//! (`support/receiver.rs` and `support/events_env.rs` use it as `crate::tools`).
//!
//! `scripts/test` installs everything (redis-server, a `.venv/` with the Python
//! packages, the SDK test's npm packages) and then runs the suite. A test whose
//! tool is still missing calls [`skip`] and returns: outside CI it says so on
//! stderr and records the skip for `scripts/test`'s summary, which counts it as
//! skipped, never as passed; under `CI=true` the test fails instead.

#![allow(dead_code)] // each test binary uses a different part

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// The Python that runs the scripts in `tests/sdk/`: `$TOLLGATE_PYTHON`
/// (`scripts/test` sets it to `.venv/bin/python`), else the project's
/// `.venv/bin/python` when there is one, else `python3`.
pub fn python() -> String {
    if let Ok(python) = std::env::var("TOLLGATE_PYTHON") {
        if !python.is_empty() {
            return python;
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".to_owned()
}

/// `None` when [`python()`] imports `module`, else why it cannot (for [`skip`]).
pub fn python_lacks(module: &str) -> Option<String> {
    let python = python();
    match Command::new(&python).args(["-c", &format!("import {module}")]).output() {
        Ok(output) if output.status.success() => None,
        Ok(_) => Some(format!("`{python}` cannot import {module} (scripts/test installs it into .venv/)")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("`{python}` is not found (scripts/test installs {module} into .venv/ with python3)"))
        }
        Err(e) => Some(format!("`{python}` does not start: {e}")),
    }
}

/// The reason a Redis test gives when `redis-server` is not installed.
pub const NO_REDIS: &str = "redis-server is not installed (scripts/test installs it with apt-get)";

/// Records that the running test cannot run here, for `reason`; the caller
/// then returns. Fails the test under `CI=true`, where everything must run.
/// Otherwise prints a loud line on the process's stderr (not `eprintln!`,
/// which the harness hides for passing tests) and, when `$TOLLGATE_SKIP_LOG`
/// names a file, appends `<crate>::<test name><TAB><reason>` to it, so the
/// summary can match it to the test's result. The name is the harness's (the
/// test thread's name); `test` describes the test when called elsewhere.
/// A skip that cannot be recorded fails the test.
pub fn skip(test: &str, reason: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but {test} cannot run: {reason}");
    // libtest runs each test on a thread named after it; a skip from another
    // thread (a spawned task) falls back to the caller's description.
    let thread = std::thread::current();
    let name = match thread.name() {
        Some(name) if name != "main" && !name.starts_with("tokio-") => name,
        _ => test,
    };
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let name = format!("{}::{}", env!("CARGO_CRATE_NAME"), clean(name));
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {name}: {reason} ***\n");
    let Some(log) = std::env::var_os("TOLLGATE_SKIP_LOG") else { return };
    let line = format!("{name}\t{}\n", clean(reason));
    // One write per line, in append mode: tests skipping at once don't interleave.
    // A skip that cannot be recorded would be counted as a pass: fail instead.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot record the skip of {test} in {}: {e}", Path::new(&log).display()));
}
