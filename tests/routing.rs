//! Several targets per model or agent, through the real gateway and two mock
//! upstreams: balancing, fallbacks before the first byte (never after),
//! circuit breakers that open and close, `Retry-After` cool-downs, per-target
//! concurrency limits and timeouts, and what usage records say about it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tollgate::usage::Outcome;

/// Two providers, `a` and `b`, each on its own mock upstream.
struct Duo {
    a: MockUpstream,
    b: MockUpstream,
    gw: Gateway,
    client: reqwest::Client,
}

/// `balanced`: a and b, weight 1 each. `fallback`: a, then b as a weight-0
/// fallback (another provider and model). `single`: a alone.
async fn duo(extra: &str) -> Duo {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 1000

[providers.a]
kind = "openai"
base_url = "{a}"
max_retries = 2
retry_base_ms = 10

[providers.b]
kind = "openai"
base_url = "{b}"
max_retries = 2
retry_base_ms = 10

[routing]
breaker_failures = 3
breaker_open_ms = 300

[agents.balanced]
targets = [{{ provider = "a", upstream_model = "model-a" }}, {{ provider = "b", upstream_model = "model-b" }}]

[agents.fallback]
targets = [
  {{ provider = "a", upstream_model = "model-a" }},
  {{ provider = "b", upstream_model = "model-b", weight = 0 }},
]

[agents.single]
provider = "a"
upstream_model = "model-a"

[[keys]]
name = "k"
sha256 = "{hash}"
{extra}
"#,
        a = a.base_url(),
        b = b.base_url(),
        hash = sha256_hex(KEY),
    );
    Duo { a, b, gw: Gateway::start(&toml).await, client: client() }
}

impl Duo {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.addr)
    }

    async fn chat(&self, body: &Value) -> reqwest::Response {
        self.client.post(self.url("/v1/chat/completions")).bearer_auth(KEY).json(body).send().await.unwrap()
    }

    async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// The breaker gauge of `target` (`a/model-a`).
    async fn breaker(&self, target: &str) -> String {
        let text = self.metrics().await;
        let prefix = format!("tollgate_target_breaker_state{{target=\"{target}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        line[prefix.len()..].to_owned()
    }
}

fn body_model(r: &mock::Recorded) -> String {
    r.json()["model"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn healthy_targets_both_take_traffic_and_each_gets_its_own_model() {
    let d = duo("").await;
    for _ in 0..40 {
        let response = d.chat(&chat_body("balanced", "hi")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(json_of(response).await["model"], "balanced");
    }
    let (a, b) = (d.a.requests(), d.b.requests());
    assert_eq!(a.len() + b.len(), 40, "one attempt per call while both are healthy");
    assert!(!a.is_empty() && !b.is_empty(), "a {} / b {}", a.len(), b.len());
    assert!(a.iter().all(|r| body_model(r) == "model-a"));
    assert!(b.iter().all(|r| body_model(r) == "model-b"));
    let records = d.gw.usage.wait_for(40).await;
    assert!(records.iter().all(|r| r.attempts == 1), "{:?}", records.iter().map(|r| r.attempts).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_5xx_falls_back_at_once_to_another_provider_and_model() {
    let d = duo("").await;
    d.a.push(Reply::status(500, r#"{"error":{"message":"boom"}}"#));
    let response = d.chat(&chat_body("fallback", "hi")).await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["model"], "fallback", "the client sees its own model id");
    assert_eq!(d.a.attempts(), 1, "a target that has a fallback is left at once, not retried");
    assert_eq!(body_model(&d.b.only_request()), "model-b", "the fallback gets its own upstream model");
    let record = d.gw.usage.first().await;
    assert_eq!((&*record.provider, &*record.upstream_model, record.attempts), ("b", "model-b", 2));
    assert_eq!(record.outcome, Outcome::Completed);
}

#[tokio::test]
async fn a_first_byte_timeout_of_the_target_falls_back() {
    let d = duo(r#"
[agents.slow-first]
targets = [
  { provider = "a", upstream_model = "model-a", first_byte_timeout_ms = 200 },
  { provider = "b", upstream_model = "model-b", weight = 0 },
]
"#)
    .await;
    d.a.push(Reply::Hang);
    let response = d.chat(&chat_body("slow-first", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(d.b.attempts(), 1);
    assert_eq!(d.gw.usage.first().await.attempts, 2);
}

#[tokio::test]
async fn the_last_target_left_gets_its_providers_retries() {
    let d = duo("").await;
    d.a.push(Reply::status(503, "{}"));
    d.b.push(Reply::status(503, "{}"));
    let response = d.chat(&chat_body("fallback", "hi")).await;
    assert_eq!(response.status(), 200, "b's second try answers");
    assert_eq!((d.a.attempts(), d.b.attempts()), (1, 2));
}

#[tokio::test]
async fn a_request_the_upstream_rejects_is_not_sent_to_the_fallback() {
    let d = duo("").await;
    d.a.push(Reply::status(400, r#"{"error":{"message":"bad tool schema","type":"invalid_request_error"}}"#));
    let response = d.chat(&chat_body("fallback", "hi")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(d.b.attempts(), 0);
}

#[tokio::test]
async fn failover_never_happens_after_the_first_byte() {
    let d = duo("").await;
    let (reply, upstream) = scripted_stream();
    d.a.push(reply);
    let mut sse = SseReader::new(d.chat(&chat_stream_body("fallback", "hi")).await);
    upstream.send_content("model-a", "partial").await;
    assert_eq!(sse.next_json().await["choices"][0]["delta"]["content"], "partial");
    upstream.die().await;
    let rest = sse.rest().await;
    let last: Value = serde_json::from_str(rest.last().expect("an error event")).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error", "{rest:?}");
    assert!(
        !rest.iter().any(|e| e.contains("Hello") || e == "[DONE]"),
        "a cut stream is an error event, not a second answer spliced in: {rest:?}"
    );
    assert_eq!(d.b.attempts(), 0, "nothing was sent to the fallback");
    let record = d.gw.usage.first().await;
    assert_eq!((record.outcome, record.attempts, &*record.provider), (Outcome::UpstreamFailed, 1, "a"));
}

#[tokio::test]
async fn a_target_that_dies_under_load_costs_no_client_error_and_its_breaker_opens_then_closes() {
    let d = duo("").await;
    let load = |n: usize| {
        let d = &d;
        async move {
            let calls = (0..n).map(|_| async move { d.chat(&chat_body("balanced", "hi")).await.status().as_u16() });
            futures_util::future::join_all(calls).await
        }
    };
    assert!(load(16).await.iter().all(|s| *s == 200));
    assert_eq!(d.breaker("a/model-a").await, "0");

    // a goes down: every call still answers, through b.
    d.a.fail_all(Some(503));
    let before = d.a.attempts();
    for _ in 0..5 {
        let statuses = load(16).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert_eq!(d.breaker("a/model-a").await, "1", "a's breaker is open");
    let failed_on_a = d.a.attempts() - before;
    assert!(failed_on_a < 40, "an open target is skipped: a saw {failed_on_a} of 80 calls");
    let fell_back = d.gw.usage.records().iter().filter(|r| r.attempts == 2 && &*r.provider == "b").count();
    assert!(fell_back >= 3, "the calls a failed were answered by b: {fell_back}");

    // a comes back: after the open time one probe closes the breaker.
    d.a.fail_all(None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    within("a's breaker to close", async {
        loop {
            assert!(load(4).await.iter().all(|s| *s == 200));
            if d.breaker("a/model-a").await == "0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let back = d.a.attempts();
    load(16).await;
    assert!(d.a.attempts() > back, "a takes calls again");
}

#[tokio::test]
async fn a_429_with_retry_after_cools_the_target_down_for_that_long() {
    let d = duo("").await;
    d.a.push(Reply::status(429, "{}").with_header("retry-after-ms", "1500"));
    assert_eq!(d.chat(&chat_body("fallback", "hi")).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(d.chat(&chat_body("fallback", "hi")).await.status(), 200);
    }
    assert_eq!(d.a.attempts(), 1, "a cooling target is skipped");
    assert_eq!(d.b.attempts(), 4);
    assert_eq!(d.breaker("a/model-a").await, "0", "a 429 is not a breaker failure");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(d.chat(&chat_body("fallback", "hi")).await.status(), 200);
    assert_eq!(d.a.attempts(), 2, "after the cool-down a is tried first again");
}

#[tokio::test]
async fn when_every_target_cools_down_the_call_fails_at_once_with_retry_after() {
    let d = duo("").await;
    d.a.push(Reply::status(429, "{}").with_header("retry-after", "30"));
    let first = d.chat(&chat_body("single", "hi")).await;
    assert_eq!(first.status(), 503, "Retry-After beyond max_retry_after: not waited for");
    let second = d.chat(&chat_body("single", "hi")).await;
    assert_eq!(second.status(), 503);
    let after: u64 = second.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((25..=30).contains(&after), "{after}");
    let body = json_of(second).await;
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
    assert_eq!(d.a.attempts(), 1, "the cooling target was not called again");
}

#[tokio::test]
async fn when_every_breaker_is_open_the_targets_are_still_tried_in_order() {
    let d = duo("").await;
    d.a.fail_all(Some(502));
    d.b.fail_all(Some(502));
    for _ in 0..4 {
        assert_eq!(d.chat(&chat_body("fallback", "hi")).await.status(), 502);
    }
    assert_eq!((d.breaker("a/model-a").await, d.breaker("b/model-b").await), ("1".into(), "1".into()));
    d.a.fail_all(None);
    let response = d.chat(&chat_body("fallback", "hi")).await;
    assert_eq!(response.status(), 200, "a breaker's guess does not turn into an outage");
}

#[tokio::test]
async fn a_full_target_is_skipped_until_its_stream_ends() {
    let d = duo(r#"
[agents.limited]
targets = [
  { provider = "a", upstream_model = "model-a", max_concurrent = 1 },
  { provider = "b", upstream_model = "model-b", weight = 0 },
]
"#)
    .await;
    let (reply, upstream) = scripted_stream();
    d.a.push(reply);
    let mut sse = SseReader::new(d.chat(&chat_stream_body("limited", "hi")).await);
    upstream.send_content("model-a", "one").await;
    sse.next_json().await;
    assert_eq!(d.chat(&chat_body("limited", "hi")).await.status(), 200);
    assert_eq!((d.a.attempts(), d.b.attempts()), (1, 1), "a holds its one call: the second went to b");
    upstream.finish("model-a", Some((3, 1))).await;
    sse.rest().await;
    d.gw.usage.wait_for(2).await;
    assert_eq!(d.chat(&chat_body("limited", "hi")).await.status(), 200);
    assert_eq!(d.a.attempts(), 2, "the stream ended: a takes calls again");
}

#[tokio::test]
async fn metrics_count_attempts_by_target_and_result() {
    let d = duo("").await;
    d.a.push(Reply::status(500, "{}"));
    assert_eq!(d.chat(&chat_body("fallback", "hi")).await.status(), 200);
    let text = d.metrics().await;
    for line in [
        "tollgate_upstream_attempts_total{target=\"a/model-a\",result=\"status\"} 1",
        "tollgate_upstream_attempts_total{target=\"b/model-b\",result=\"ok\"} 1",
        "tollgate_upstream_first_byte_seconds_count{target=\"b/model-b\"} 1",
        "tollgate_target_in_flight{target=\"a/model-a\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}
