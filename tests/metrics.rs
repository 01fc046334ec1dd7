//! `GET /metrics` through the real gateway, read by the Prometheus client's
//! own OpenMetrics parser (`tests/sdk/parse_metrics.py`): every family is
//! well formed, and the counters move as requests are made — HTTP requests
//! by route and status class, model requests by outcome, tokens, refusals by
//! code; the scrape token and `enabled = false` guard it.

mod common;
#[path = "support/tools.rs"]
mod tools;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/parse_metrics.py");

async fn env_with(extra: &str) -> TestEnv {
    let mock = MockUpstream::start().await;
    let toml = format!("{}\n{extra}\n", config_toml(&Settings::default(), &mock.base_url()));
    TestEnv { gw: Gateway::start(&toml).await, mock, client: client() }
}

async fn scrape_text(env: &TestEnv, token: Option<&str>) -> (u16, String, String) {
    let mut request = env.client.get(env.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = within("a scrape", request.send()).await.expect("the gateway answers");
    let status = response.status().as_u16();
    let kind = response.headers().get("content-type").map_or("", |v| v.to_str().unwrap_or("")).to_owned();
    (status, kind, within("the scrape's body", response.text()).await.unwrap())
}

/// The scrape as Prometheus's parser reads it.
fn parse(text: &str) -> Value {
    let mut child = Command::new(tools::python())
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

/// The value of `sample` in `family` whose labels include `labels`; 0 if none.
fn value(parsed: &Value, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(samples) = parsed[family]["samples"].as_array() else { return 0.0 };
    samples
        .iter()
        .filter(|s| s[0] == sample && labels.iter().all(|(k, v)| s[1][*k] == *v))
        .map(|s| s[2].as_f64().unwrap_or(0.0))
        .sum()
}

fn no_parser() -> Option<String> {
    tools::python_lacks("prometheus_client")
}

#[tokio::test]
async fn counters_move_as_requests_are_made_and_prometheus_parses_every_family() {
    if let Some(reason) = no_parser() {
        return tools::skip("metrics", &reason);
    }
    let env = env_with("").await;
    let (status, kind, text) = scrape_text(&env, None).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let before = parse(&text);
    for family in ["tollgate_build", "tollgate_open_connections", "tollgate_event_queue", "tollgate_events_emitted"] {
        assert!(before.get(family).is_some(), "{family} is exposed: {before}");
    }
    assert_eq!(before["tollgate_build"]["type"], "info");
    assert_eq!(value(&before, "tollgate_build", "tollgate_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    for i in 0..3 {
        assert_eq!(env.chat(&chat_body(AGENT, &format!("hello {i}"))).await.status(), 200);
    }
    let streamed = env.chat(&chat_stream_body(AGENT, "a stream")).await;
    assert_eq!(streamed.status(), 200);
    within("the stream", streamed.text()).await.unwrap();
    assert_eq!(env.post_as("wrong-key", "/v1/chat/completions", &chat_body(AGENT, "x")).await.status(), 401);
    assert_eq!(env.chat(&chat_body("no-such-model", "x")).await.status(), 404);

    let (_, _, text) = scrape_text(&env, None).await;
    let after = parse(&text);
    for (family, kind) in [
        ("tollgate_http_requests", "counter"),
        ("tollgate_http_response_seconds", "histogram"),
        ("tollgate_model_requests", "counter"),
        ("tollgate_model_request_seconds", "histogram"),
        ("tollgate_tokens", "counter"),
        ("tollgate_refusals", "counter"),
    ] {
        assert_eq!(after[family]["type"], kind, "{family}: {after}");
    }
    let delta = |family: &str, sample: &str, labels: &[(&str, &str)]| {
        value(&after, family, sample, labels) - value(&before, family, sample, labels)
    };
    let chat = [("route", "/chat/completions"), ("status", "2xx")];
    assert_eq!(delta("tollgate_http_requests", "tollgate_http_requests_total", &chat), 4.0, "{text}");
    let refused = [("route", "/chat/completions"), ("status", "4xx")];
    assert_eq!(delta("tollgate_http_requests", "tollgate_http_requests_total", &refused), 2.0, "{text}");
    let completed = [("model", AGENT), ("outcome", "completed"), ("status", "2xx")];
    assert_eq!(delta("tollgate_model_requests", "tollgate_model_requests_total", &completed), 4.0, "{text}");
    assert_eq!(
        delta("tollgate_model_request_seconds", "tollgate_model_request_seconds_count", &[("model", AGENT)]),
        4.0
    );
    let http_count = [("route", "/chat/completions")];
    assert_eq!(delta("tollgate_http_response_seconds", "tollgate_http_response_seconds_count", &http_count), 6.0);
    assert!(delta("tollgate_tokens", "tollgate_tokens_total", &[("model", AGENT), ("direction", "input")]) > 0.0);
    assert!(delta("tollgate_tokens", "tollgate_tokens_total", &[("model", AGENT), ("direction", "output")]) > 0.0);
    assert_eq!(delta("tollgate_refusals", "tollgate_refusals_total", &[("code", "invalid_api_key")]), 1.0, "{text}");
    assert_eq!(delta("tollgate_refusals", "tollgate_refusals_total", &[("code", "model_not_found")]), 1.0, "{text}");
    assert!(value(&after, "tollgate_open_connections", "tollgate_open_connections", &[]) >= 1.0, "the scrape's own");
    for (family, kind) in [
        ("tollgate_store_operation_seconds", "histogram"),
        ("tollgate_store_errors", "counter"),
        ("tollgate_webhook_backlog", "gauge"),
        ("tollgate_open_streams", "gauge"),
        ("tollgate_upstream_attempts", "counter"),
        ("tollgate_upstream_first_byte_seconds", "histogram"),
        ("tollgate_target_breaker_state", "gauge"),
    ] {
        assert_eq!(after[family]["type"], kind, "{family}: {after}");
    }
    let store_calls =
        |p: &Value| value(p, "tollgate_store_operation_seconds", "tollgate_store_operation_seconds_count", &[]);
    assert!(store_calls(&after) > 0.0, "the store was called (seeding, key lookups): {text}");
    assert_eq!(value(&after, "tollgate_store_errors", "tollgate_store_errors_total", &[]), 0.0);
    assert_eq!(value(&after, "tollgate_open_streams", "tollgate_open_streams", &[]), 0.0, "the stream ended");
    assert_eq!(value(&after, "tollgate_webhook_backlog", "tollgate_webhook_backlog", &[]), 0.0);
    let ok = [("target", "up/up-model-x"), ("result", "ok")];
    assert_eq!(delta("tollgate_upstream_attempts", "tollgate_upstream_attempts_total", &ok), 4.0, "{text}");
}

#[tokio::test]
async fn an_open_stream_is_counted_until_it_ends() {
    if let Some(reason) = no_parser() {
        return tools::skip("metrics", &reason);
    }
    let env = env_with("").await;
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let mut sse = SseReader::new(env.chat(&chat_stream_body(AGENT, "hi")).await);
    upstream.send_content(AGENT_UPSTREAM_MODEL, "one").await;
    sse.next_json().await;
    let open = |p: &Value| value(p, "tollgate_open_streams", "tollgate_open_streams", &[]);
    assert_eq!(open(&parse(&scrape_text(&env, None).await.2)), 1.0);
    upstream.finish(AGENT_UPSTREAM_MODEL, Some((2, 1))).await;
    sse.rest().await;
    env.gw.usage.wait_for(1).await;
    assert_eq!(open(&parse(&scrape_text(&env, None).await.2)), 0.0);
}

#[tokio::test]
async fn a_scrape_token_guards_metrics_and_enabled_false_turns_them_off() {
    let token_hash = hex::encode(tollgate::auth::hash_key(b"scrape-me"));
    let env = env_with(&format!("[metrics]\ntoken_sha256 = \"{token_hash}\"")).await;
    assert_eq!(scrape_text(&env, None).await.0, 401);
    assert_eq!(scrape_text(&env, Some("wrong")).await.0, 401);
    let (status, _, text) = scrape_text(&env, Some("scrape-me")).await;
    assert_eq!(status, 200);
    assert!(text.contains("tollgate_build_info"), "{text}");
    assert!(!text.contains("scrape-me"), "the token is never echoed");

    let off = env_with("[metrics]\nenabled = false").await;
    assert_eq!(scrape_text(&off, None).await.0, 404);
}
