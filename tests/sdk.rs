//! The official SDKs against the real gateway (default config, built-in mock):
//! the `openai` Python SDK and the Vercel AI SDK (`ai` + `@ai-sdk/openai`).
//! Mandatory in CI (`CI=true`, where `.ci/run` installs both); elsewhere a test
//! skips loudly when its runtime or SDK is missing.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use tollgate::app::App;
use tollgate::config::Config;

const DEMO_KEY: &str = "tg_demo_key_change_me";
const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");

/// Skips (loudly) unless `available`; in CI a missing SDK is a failure.
fn require(available: bool, test: &str, how: &str) -> bool {
    if !available {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but {test} cannot run: {how}");
        eprintln!("\n*** SKIPPED {test}: {how} ***\n");
    }
    available
}

/// Runs `program args... BASE_URL KEY` against a gateway on the default config.
async fn run_against_gateway(program: &'static str, args: Vec<String>) -> Output {
    let config = Config::embedded_default().expect("default config is valid");
    let app = Arc::new(App::new(&config).expect("app builds"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tollgate::server::serve(listener, app, async {
        let _ = stopped.await;
    }));
    let base_url = format!("http://{addr}/v1/api");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(program).args(args).arg(base_url).arg(DEMO_KEY).current_dir(SDK_DIR).output()
    })
    .await
    .expect("join")
    .expect("the SDK runtime starts");
    let _ = stop.send(());
    server.await.expect("server task").expect("server ends cleanly");
    output
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "SDK script failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_works_against_the_demo_agent() {
    let available = Command::new("python3").args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success());
    if !require(available, "the openai Python SDK test", "`pip install openai` to run it") {
        return;
    }
    let output = run_against_gateway("python3", vec!["openai_sdk.py".into()]).await;
    assert_success(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vercel_ai_sdk_works_against_the_demo_agent() {
    let available = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
        && Path::new(SDK_DIR).join("node_modules/@ai-sdk/openai").exists();
    if !require(available, "the Vercel AI SDK test", "run `npm ci --prefix tests/sdk` (needs node) to run it") {
        return;
    }
    let output = run_against_gateway("node", vec!["vercel_ai_sdk.mjs".into()]).await;
    assert_success(&output);
}
