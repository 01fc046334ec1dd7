//! The `tollgate` binary: check-config, hash-key, and serve with no config file.

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/served.rs"]
mod served;
#[path = "support/tools.rs"]
mod tools;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{client, sha256_hex, within};
use serde_json::json;
use served::{bootstrap_key, serve_in, tollgate};

const SHIPPED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tollgate.toml");
const DEMO_KEY: &str = "tg_demo_key_change_me";

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("the tollgate binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

#[test]
fn check_config_accepts_the_shipped_config_and_prints_a_summary() {
    let output = run(tollgate().args(["check-config", "--config", SHIPPED_CONFIG]));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {}", output.status, text(&output.stderr));
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(stdout.contains("provider mock: built-in mock"), "{stdout}");
    assert!(stdout.contains("agent demo -> mock/"), "{stdout}");
    assert!(stdout.contains("static keys: 1"), "{stdout}");
}

#[test]
fn check_config_on_a_broken_config_exits_1_naming_the_file_the_field_and_the_reason() {
    let dir = temp_dir("broken");
    let path = dir.join("broken.toml");
    std::fs::write(
        &path,
        "[providers.mock]\nkind = \"mock\"\n\n[agents.demo]\nprovider = \"nope\"\nupstream_model = \"m\"\n",
    )
    .unwrap();
    let output = run(tollgate().arg("check-config").arg("--config").arg(&path));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(&path.display().to_string()), "names the file: {stderr}");
    assert!(stderr.contains("agents.demo.provider"), "names the field: {stderr}");
    assert!(stderr.contains("unknown provider"), "gives the reason: {stderr}");
}

#[test]
fn check_config_names_the_path_of_an_unknown_field() {
    let dir = temp_dir("unknown-field");
    let path = dir.join("typo.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_byts = 10\n").unwrap();
    let output = run(tollgate().arg("check-config").arg("--config").arg(&path));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("server"), "{stderr}");
    assert!(stderr.contains("unknown field `max_body_byts`"), "{stderr}");
}

#[test]
fn check_config_on_a_missing_file_exits_1_naming_it() {
    let path = temp_dir("missing").join("nowhere.toml");
    let output = run(tollgate().arg("check-config").arg("--config").arg(&path));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("nowhere.toml"), "{stderr}");
}

#[test]
fn hash_key_prints_the_sha256_hex_of_its_argument() {
    let output = run(tollgate().args(["hash-key", DEMO_KEY]));
    assert!(output.status.success());
    let hash = text(&output.stdout);
    assert_eq!(hash.trim(), sha256_hex(DEMO_KEY));
    assert_eq!(hash.trim(), "393ba3406fd4a16dc581783b0067e6c5b6a75bc8b18612d88d1ebee657898103", "the shipped demo key");
}

#[test]
fn hash_key_reads_the_key_from_stdin() {
    let mut child = tollgate()
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the tollgate binary runs");
    child.stdin.take().unwrap().write_all(format!("{DEMO_KEY}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(text(&output.stdout).trim(), sha256_hex(DEMO_KEY));
}

#[tokio::test]
async fn serve_with_no_config_file_answers_healthz_and_the_demo_agent() {
    let dir = temp_dir("serve");
    // No config/tollgate.toml in `dir`: the embedded default applies.
    let served = serve_in(&dir, &[], "tollgate").await;
    let log = || served.log();
    let http = client();
    let base = served.base.clone();
    assert!(dir.join("data/tollgate.db").exists(), "the embedded store file is created on start");

    let body = json!({"model": "demo", "messages": [{"role": "user", "content": "ping from the cli test"}]});
    let request = http.post(format!("{base}/v1/chat/completions")).bearer_auth(DEMO_KEY).json(&body);
    let response = within("a chat completion", request.send()).await.unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", log());
    let answer: serde_json::Value = within("the answer", response.json()).await.unwrap();
    assert_eq!(answer["model"], "demo");
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(content.contains("ping from the cli test"), "the built-in mock echoes the message: {answer}");
}

#[tokio::test]
async fn operator_commands_issue_a_key_the_gateway_accepts_until_it_is_revoked() {
    let dir = temp_dir("keys");
    // The shipped config with a short key cache, so the revocation shows quickly.
    let shipped = std::fs::read_to_string(SHIPPED_CONFIG).unwrap();
    let config = dir.join("tollgate.toml");
    std::fs::write(&config, shipped.replace("key_cache_ttl_ms = 5000", "key_cache_ttl_ms = 200")).unwrap();
    let config = config.to_str().unwrap();
    let cli = |args: &[&str]| run(tollgate().args(args).args(["--config", config]).current_dir(&dir));

    let created = cli(&["workspaces", "create", "acme", "--name", "Acme Inc"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert_eq!(cli(&["workspaces", "create", "acme"]).status.code(), Some(1), "ids are unique");
    let unknown = cli(&["keys", "create", "--workspace", "nope", "--name", "x"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no workspace"), "{}", text(&unknown.stderr));
    assert_ne!(
        cli(&["keys", "create", "--workspace", "acme", "--name", "x", "--scope", "root"]).status.code(),
        Some(0)
    );

    let issued = cli(&["keys", "create", "--workspace", "acme", "--name", "ci", "--models", "demo"]);
    assert!(issued.status.success(), "{}", text(&issued.stderr));
    let key = text(&issued.stdout).trim().to_owned();
    assert!(key.starts_with("tg_") && key.len() == 67, "stdout is the key alone: {key:?}");
    assert!(text(&issued.stderr).contains("shown once"));

    let listed = cli(&["keys", "list", "--workspace", "acme"]);
    let listing = text(&listed.stdout);
    assert!(listing.contains(&key[..11]), "the display prefix is listed: {listing}");
    assert!(!listing.contains(&key[11..]) && !listing.contains(&sha256_hex(&key)), "never the key or its hash");
    let id = listing.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_owned();

    let served = serve_in(&dir, &["--config", config], "tollgate").await;
    let http = client();
    let models = || http.get(format!("{}/v1/models", served.base)).bearer_auth(&key).send();
    let response = within("models", models()).await.unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", served.log());
    let ids: Vec<String> = within("body", response.json::<serde_json::Value>()).await.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["demo".to_string()], "the key's allow-list applies");

    let revoked = cli(&["keys", "revoke", &id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert_eq!(cli(&["keys", "revoke", &id]).status.code(), Some(1), "a key is revoked once");
    within("the revocation to reach the running gateway", async {
        while within("models", models()).await.unwrap().status() != 401 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn first_start_prints_an_admin_key_once_and_it_manages_keys() {
    let dir = temp_dir("bootstrap");
    let first = serve_in(&dir, &[], "tollgate").await;
    let log = first.log();
    let key = bootstrap_key(&log);
    assert!(key.starts_with("tg_") && key.len() == 67, "{key:?}");
    assert_eq!(log.matches(&key).count(), 1, "the key is printed once and logged nowhere else");

    let http = client();
    let response = within("keys", http.get(format!("{}/v1/keys", first.base)).bearer_auth(&key).send()).await.unwrap();
    assert_eq!(response.status(), 200, "the bootstrap key is an admin key");
    drop(first);

    let second = serve_in(&dir, &[], "tollgate").await;
    assert!(!second.log().contains("first start"), "only the first start creates a key");
}

/// Creates keys through the API, kills the gateway with SIGKILL, starts it
/// again on the same store, and checks every key still works.
async fn keys_survive_kill_9(name: &str, store_toml: &str) {
    let dir = temp_dir(name);
    let shipped = std::fs::read_to_string(SHIPPED_CONFIG).unwrap();
    let start = shipped.find("[store]").unwrap();
    let end = start + shipped[start..].find("\n\n").unwrap();
    let config = dir.join("tollgate.toml");
    std::fs::write(&config, format!("{}{}{}", &shipped[..start], store_toml, &shipped[end..])).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let http = client();

    let first = serve_in(&dir, &["--config", &config], "tollgate").await;
    let admin = bootstrap_key(&first.log());
    let post = |base: String, key: String, path: &'static str, body: serde_json::Value| {
        let http = http.clone();
        async move {
            let response = within(path, http.post(format!("{base}{path}")).bearer_auth(key).json(&body).send()).await;
            let response = response.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (status, _) = post(first.base.clone(), admin.clone(), "/v1/workspaces", json!({"id": "acme"})).await;
    assert_eq!(status, 201);
    let mut keys = Vec::new();
    for i in 0..3 {
        let body = json!({"name": format!("k{i}"), "workspace": "acme"});
        let (status, created) = post(first.base.clone(), admin.clone(), "/v1/keys", body).await;
        assert_eq!(status, 201, "{created}");
        keys.push(created["key"].as_str().unwrap().to_owned());
    }
    let log = first.log();
    for key in &keys {
        assert!(!log.contains(key.as_str()) && !log.contains(&sha256_hex(key)), "keys never reach the log:\n{log}");
    }
    drop(first); // SIGKILL: no graceful shutdown, no flush

    let second = serve_in(&dir, &["--config", &config], "tollgate").await;
    assert!(!second.log().contains("first start"), "the store kept the admin key: no new one");
    for key in keys.iter().chain([&admin]) {
        let response =
            within("models", http.get(format!("{}/v1/models", second.base)).bearer_auth(key).send()).await.unwrap();
        assert_eq!(response.status(), 200, "a key created before kill -9 works after the restart");
    }
}

#[tokio::test]
async fn keys_survive_kill_9_on_the_embedded_store() {
    keys_survive_kill_9("kill9-embedded", "[store]\nbackend = \"embedded\"\npath = \"data/t.db\"").await;
}

#[tokio::test]
async fn keys_survive_kill_9_on_redis() {
    let Some(server) = redis_server::RedisServer::start() else {
        return tools::skip("keys_survive_kill_9_on_redis", tools::NO_REDIS);
    };
    let store = format!("[store]\nbackend = \"redis\"\nurls = [\"{}\"]\nprefix = \"kill9\"", server.url());
    keys_survive_kill_9("kill9-redis", &store).await;
}
