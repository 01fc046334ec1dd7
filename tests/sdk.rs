//! The official SDKs against the real gateway (default config, built-in mock):
//! the `openai` Python SDK and the Vercel AI SDK (`ai` + `@ai-sdk/openai`).
//! Mandatory in CI (`CI=true`); elsewhere a test skips loudly when its runtime
//! or SDK is missing. `scripts/test` installs both (`.venv/`, `tests/sdk/node_modules`).

#[path = "support/tools.rs"]
mod tools;

use std::path::Path;
use std::process::{Command, Output};

use tollgate::config::Config;
use tollgate::gateway::Gateway;

const DEMO_KEY: &str = "tg_demo_key_change_me";
const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");

/// Runs `program args... BASE_URL KEY` against a gateway on the default config.
async fn run_against_gateway(program: String, args: Vec<String>) -> Output {
    let mut config = Config::embedded_default().expect("default config is valid");
    // The default config's store, in a directory of this run's own.
    let dir = std::env::temp_dir().join(format!("tollgate-sdk-{}-{}", std::process::id(), rand::random::<u32>()));
    config.store.backend = tollgate::config::StoreBackend::Embedded { path: dir.join("t.db") };
    let gateway = Gateway::open(config).await.expect("the gateway opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.serve(listener, async {
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
    if let Some(reason) = tools::python_lacks("openai") {
        return tools::skip("the openai Python SDK test", &reason);
    }
    let output = run_against_gateway(tools::python(), vec!["openai_sdk.py".into()]).await;
    assert_success(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vercel_ai_sdk_works_against_the_demo_agent() {
    let available = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
        && Path::new(SDK_DIR).join("node_modules/@ai-sdk/openai").exists();
    if !available {
        let reason =
            "node or tests/sdk/node_modules is missing (scripts/test runs `npm ci --prefix tests/sdk`; needs node)";
        return tools::skip("the Vercel AI SDK test", reason);
    }
    let output = run_against_gateway("node".into(), vec!["vercel_ai_sdk.mjs".into()]).await;
    assert_success(&output);
}

/// Seed 002's `/chat` through the AI SDK's own transports and stream readers:
/// `useChat`'s UI message stream, the text stream, the seed's data events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_sdk_chat_transports_read_the_stateful_chat() {
    let available = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
        && Path::new(SDK_DIR).join("node_modules/ai").exists();
    if !available {
        let reason =
            "node or tests/sdk/node_modules is missing (scripts/test runs `npm ci --prefix tests/sdk`; needs node)";
        return tools::skip("the AI SDK chat transport test", reason);
    }
    let output = run_against_gateway("node".into(), vec!["chat_ai_sdk.mjs".into()]).await;
    assert_success(&output);
}

/// The admin key of the rate-limit test's gateway (a static config key).
const RATELIMIT_ADMIN_KEY: &str = "tg_sdk_ratelimit_admin";

/// A gateway with an embedded store and the meter on (as `serve` runs it):
/// the plan `broke` grants no message credits, the agent `priced` costs
/// something per request. Serves until `stop` fires.
async fn metered_gateway(
    dir: &Path,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (String, tokio::task::JoinHandle<()>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create temp dir");
    let toml = format!(
        r#"
[store]
backend = "embedded"
path = "{db}"

[plans.broke]
message_credits = 0

[providers.mock]
kind = "mock"

[agents.priced]
provider = "mock"
upstream_model = "mock-1"
price = {{ request = 1000 }}

[agents.echo]
provider = "mock"
upstream_model = "mock-1"

[[keys]]
name = "sdk admin"
sha256 = "{admin}"
scope = "admin"
"#,
        db = dir.join("t.db").display(),
        admin = hex::encode(tollgate::auth::hash_key(RATELIMIT_ADMIN_KEY.as_bytes())),
    );
    let config = Config::from_toml(&toml, "sdk-ratelimit.toml").expect("test config is valid");
    let gateway = Gateway::open(config).await.expect("the gateway opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let stopped = async {
            let _ = stop.await;
        };
        gateway.serve(listener, stopped).await.expect("server ends cleanly");
    });
    (format!("http://{addr}/v1"), server)
}

/// Runs a Python script of `tests/sdk/` against [`metered_gateway`] with its
/// admin key; fails the test when the script fails.
async fn run_on_metered_gateway(name: &str, script: &'static str) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sdk-{name}-{}", std::process::id()));
    let (base_url, server) = metered_gateway(&dir, stopped).await;
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tools::python()).arg(script).arg(base_url).arg(RATELIMIT_ADMIN_KEY).current_dir(SDK_DIR).output()
    })
    .await
    .expect("join")
    .expect("python starts");
    let _ = stop.send(());
    server.await.expect("server task");
    assert_success(&output);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Seed 000's sessions through the `openai` SDK's own stream reader and curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_reads_a_session_stream_and_curl_does_too() {
    if let Some(reason) = tools::python_lacks("openai") {
        return tools::skip("the openai Python SDK sessions test", &reason);
    }
    run_on_metered_gateway("sessions", "openai_sessions.py").await;
}

/// Rate limits and exhausted credits as the `openai` SDK sees them: a 429 over
/// a key's rpm is a `RateLimitError` with `retry-after-ms`; an exhausted
/// balance is a `RateLimitError` with code `insufficient_quota` that the SDK
/// does not retry (one HTTP request with `max_retries=3`: `x-should-retry: false`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_raises_rate_limit_errors_and_does_not_retry_insufficient_quota() {
    if let Some(reason) = tools::python_lacks("openai") {
        return tools::skip("the openai Python SDK rate-limit test", &reason);
    }
    run_on_metered_gateway("ratelimit", "openai_ratelimit.py").await;
}
