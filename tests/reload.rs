//! Reloading the config of a running gateway: through the admin route (in
//! process, under load, with streams open) and by SIGHUP and `tollgate
//! reload` on a real `tollgate serve` process.

mod common;
#[path = "support/served.rs"]
mod served;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "tg_test_reload_admin";
const NEW_KEY: &str = "tg_test_reload_new_key";

/// A config on disk: `agents` is the agents' TOML, `keys` extra `[[keys]]`.
fn config(upstream: &str, agents: &str, keys: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 2000

[providers.up]
kind = "openai"
base_url = "{upstream}"

{agents}

[[keys]]
name = "k"
sha256 = "{k}"

[[keys]]
name = "admin"
sha256 = "{admin}"
scope = "admin"
{keys}
{extra}
"#,
        k = sha256_hex(KEY),
        admin = sha256_hex(ADMIN_KEY),
    )
}

const OLD_AGENTS: &str = r#"
[agents.old]
provider = "up"
upstream_model = "model-old"
[agents.kept]
provider = "up"
upstream_model = "model-kept"
"#;

const NEW_AGENTS: &str = r#"
[agents.new]
provider = "up"
upstream_model = "model-new"
[agents.kept]
provider = "up"
upstream_model = "model-kept-v2"
"#;

struct Reloadable {
    path: PathBuf,
    mock: MockUpstream,
    running: Running,
    client: reqwest::Client,
}

impl Reloadable {
    async fn start() -> Reloadable {
        let mock = MockUpstream::start().await;
        let dir = std::env::temp_dir().join(format!("tollgate-reload-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tollgate.toml");
        let store = scratch_store_toml();
        std::fs::write(&path, format!("{}{store}", config(&mock.base_url(), OLD_AGENTS, "", ""))).unwrap();
        let config = tollgate::config::Config::from_file(&path).unwrap();
        let running = Running::start(tollgate::gateway::Gateway::builder(config)).await;
        Reloadable { path, mock, running, client: client() }
    }

    /// Rewrites the file, keeping its `[store]`.
    fn write(&self, agents: &str, keys: &str, extra: &str) {
        let old = std::fs::read_to_string(&self.path).unwrap();
        let store = &old[old.find("\n[store]").unwrap()..];
        std::fs::write(&self.path, format!("{}{store}", config(&self.mock.base_url(), agents, keys, extra))).unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base())
    }

    async fn reload(&self) -> reqwest::Response {
        self.client.post(self.url("/v1/admin/reload")).bearer_auth(ADMIN_KEY).send().await.unwrap()
    }

    async fn chat_as(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url("/v1/chat/completions")).bearer_auth(key).json(body).send().await.unwrap()
    }
}

fn rand_suffix() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u64
}

#[tokio::test]
async fn a_reload_under_load_fails_no_request_and_in_flight_streams_finish() {
    let g = Reloadable::start().await;
    // A stream open on the old config, held across the reload.
    let (reply, upstream) = scripted_stream();
    g.mock.push(reply);
    let mut sse = SseReader::new(g.chat_as(KEY, &chat_stream_body("old", "hi")).await);
    upstream.send_content("model-old", "before").await;
    assert_eq!(sse.next_json().await["choices"][0]["delta"]["content"], "before");

    // Load on the agent both configs have, through the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, stop, failures, done) =
            (g.client.clone(), g.url("/v1/chat/completions"), stop.clone(), failures.clone(), done.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client.post(&url).bearer_auth(KEY).json(&chat_body("kept", "hi")).send().await;
                match r {
                    Ok(r) if r.status() == 200 => done.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    within("load to start", async {
        while done.load(Ordering::Relaxed) < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    g.write(NEW_AGENTS, "", "");
    let answer = g.reload().await;
    assert_eq!(answer.status(), 200);
    let answer = json_of(answer).await;
    assert_eq!(answer["reloaded"], true, "{answer}");
    assert_eq!(answer["restart_needed"], json!([]), "{answer}");
    let at_reload = done.load(Ordering::Relaxed);
    within("load after the reload", async {
        while done.load(Ordering::Relaxed) < at_reload + 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed across the reload");

    // The open stream finishes on the old config.
    upstream.send_content("model-old", " after").await;
    upstream.finish("model-old", Some((3, 2))).await;
    let rest = sse.rest().await;
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");

    // New requests see the new config: a new agent answers, a removed one is 404.
    assert_eq!(g.chat_as(KEY, &chat_body("new", "hi")).await.status(), 200);
    assert_error(g.chat_as(KEY, &chat_body("old", "hi")).await, 404, "invalid_request_error", "model_not_found").await;
    g.chat_as(KEY, &chat_body("kept", "hi")).await;
    let last = g.mock.requests().pop().unwrap();
    assert_eq!(last.json()["model"], "model-kept-v2", "the kept agent's new upstream model");
}

#[tokio::test]
async fn an_invalid_config_is_refused_and_the_old_one_stays() {
    let g = Reloadable::start().await;
    std::fs::write(&g.path, "[agents.x]\nprovider = \"nowhere\"\nupstream_model = \"m\"\n").unwrap();
    let answer = g.reload().await;
    assert_eq!(answer.status(), 422);
    let body = json_of(answer).await;
    assert_eq!(body["error"]["code"], "config_invalid", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("agents.x.provider"), "{body}");
    assert_eq!(g.chat_as(KEY, &chat_body("old", "hi")).await.status(), 200, "the old config is in force");
}

#[tokio::test]
async fn a_reload_swaps_static_keys_and_names_what_needs_a_restart() {
    let g = Reloadable::start().await;
    assert_eq!(g.chat_as(NEW_KEY, &chat_body("old", "hi")).await.status(), 401);
    let new_key = format!("[[keys]]\nname = \"new\"\nsha256 = \"{}\"\n", sha256_hex(NEW_KEY));
    g.write(OLD_AGENTS, &new_key, "[responses]\nmax_history_items = 7\n");
    let answer = json_of(g.reload().await).await;
    assert_eq!(answer["restart_needed"], json!(["responses"]), "{answer}");
    assert_eq!(g.chat_as(NEW_KEY, &chat_body("old", "hi")).await.status(), 200, "an added key works at once");
    g.write(OLD_AGENTS, "", "");
    g.reload().await;
    assert_eq!(g.chat_as(NEW_KEY, &chat_body("old", "hi")).await.status(), 401, "a removed key is refused");
}

#[tokio::test]
async fn only_an_admin_key_may_reload() {
    let g = Reloadable::start().await;
    let r = g.client.post(g.url("/v1/admin/reload")).bearer_auth(KEY).send().await.unwrap();
    assert_error(r, 403, "permission_error", "insufficient_scope").await;
    let r = g.client.post(g.url("/v1/admin/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

// --- a real process ---

async fn status_of(url: &str, model: &str) -> u16 {
    let r = client().post(format!("{url}/v1/chat/completions")).bearer_auth(KEY).json(&chat_body(model, "hi"));
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn sighup_and_tollgate_reload_reload_a_running_process() {
    let g = Reloadable::start().await; // its mock upstream and a scratch file
    let dir = g.path.parent().unwrap().join("process");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tollgate.toml");
    let store = format!("\n[store]\nbackend = \"embedded\"\npath = \"{}\"\n", dir.join("t.db").display());
    std::fs::write(&path, format!("{}{store}", config(&g.mock.base_url(), OLD_AGENTS, "", ""))).unwrap();
    let path_arg = path.display().to_string();
    let served = served::serve_in(&dir, &["--config", &path_arg], "gateway").await;
    let url = served.base.clone();
    assert_eq!(status_of(&url, "old").await, 200);

    // SIGHUP
    std::fs::write(&path, format!("{}{store}", config(&g.mock.base_url(), NEW_AGENTS, "", ""))).unwrap();
    let pid = served.child.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    within("SIGHUP to reload", async {
        while status_of(&url, "new").await != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(status_of(&url, "old").await, 404);

    // `tollgate reload`, with an invalid file first: refused, exit 1, old config kept.
    std::fs::write(&path, "[agents.x]\nprovider = \"nowhere\"\n").unwrap();
    let cli = |path: &std::path::Path| {
        served::tollgate()
            .args(["reload", "--url", &url, "--config"])
            .arg(path)
            .env("TOLLGATE_ADMIN_KEY", ADMIN_KEY)
            .output()
            .unwrap()
    };
    let refused = cli(&path);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("config_invalid"), "{refused:?}");
    assert_eq!(status_of(&url, "new").await, 200);
    // ... then a valid one, which also turns the log level down to warn.
    let quiet = "[log]\nlevel = \"warn\"\n";
    std::fs::write(&path, format!("{}{store}", config(&g.mock.base_url(), OLD_AGENTS, "", quiet))).unwrap();
    let done = cli(&path);
    assert!(done.status.success(), "{done:?}");
    let answer: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(answer["reloaded"], true);
    assert_eq!(status_of(&url, "old").await, 200);
    assert_eq!(status_of(&url, "kept").await, 200);
    let log = served.terminate().await;
    assert!(log.contains("config reload refused"), "the refusal is logged:\n{log}");
    assert!(log.contains("config reloaded"), "{log}");
    assert!(log.contains("model=new"), "info lines before the level went down:\n{log}");
    assert!(!log.contains("model=kept"), "no info line after the reload to warn:\n{log}");
}
