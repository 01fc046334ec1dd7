//! The official `openai` Python SDK against the real gateway (default config,
//! built-in mock). Mandatory in CI (`CI=true`, where `.ci/run` installs the
//! SDK); elsewhere it skips loudly when Python or the SDK is missing.

use std::process::Command;
use std::sync::Arc;

use tollgate::app::App;
use tollgate::config::Config;

fn sdk_available() -> bool {
    Command::new("python3").args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_works_against_the_demo_agent() {
    if !sdk_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python3 cannot import openai (.ci/run installs it with pip)"
        );
        eprintln!("\n*** SKIPPED openai_python_sdk_works_against_the_demo_agent: `pip install openai` to run it ***\n");
        return;
    }
    let config = Config::embedded_default().expect("default config is valid");
    let app = Arc::new(App::new(&config).expect("app builds"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tollgate::server::serve(listener, app, async {
        let _ = stopped.await;
    }));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk.py");
    let base_url = format!("http://{addr}/v1/api");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).arg(base_url).arg("tg_demo_key_change_me").output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let _ = stop.send(());
    server.await.expect("server task").expect("server ends cleanly");
    assert!(
        output.status.success(),
        "SDK script failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
