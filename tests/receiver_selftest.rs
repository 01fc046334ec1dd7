//! Tests of the webhook test receiver (`tests/support/receiver.rs`) itself, so a
//! webhook test that fails points at the gateway, not at its witness: the
//! signature checks against the Standard Webhooks test vector and the stock
//! `standardwebhooks` Python library, and the server's recording, scripting and
//! waiting, driven end to end with reqwest.

#[path = "support/receiver.rs"]
mod receiver;
#[path = "support/tools.rs"]
mod tools;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use receiver::{key_from_secret, sign_std, sign_tollgate, verify_std, verify_tollgate, Behaviour, Receiver};
use serde_json::{json, Value};

/// The Standard Webhooks spec's test vector.
const VECTOR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const VECTOR_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const VECTOR_TS: i64 = 1649367553;
const VECTOR_BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
const VECTOR_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

/// Two more secrets (24 random bytes each, as the gateway makes them).
const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_5WbX5kEWLlfzsGNjH64I8lOOqUB2e+JV";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn header_map(pairs: &[(&str, String)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

/// Delivery headers as the gateway sends them: Standard Webhooks signed with
/// each of `std_secrets` (a rotation lists several), `X-Tollgate-Signature` with `tollgate_secret`.
fn signed(std_secrets: &[&str], tollgate_secret: &str, id: &str, ts: i64, body: &str) -> Vec<(&'static str, String)> {
    let sigs: Vec<String> =
        std_secrets.iter().map(|s| sign_std(&key_from_secret(s), id, ts, body.as_bytes())).collect();
    vec![
        ("content-type", "application/json".into()),
        ("webhook-id", id.into()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", sigs.join(" ")),
        ("x-tollgate-signature", sign_tollgate(&key_from_secret(tollgate_secret), body.as_bytes())),
    ]
}

/// Every request is bounded, so a broken receiver fails the test instead of hanging it.
fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(receiver::WAIT).build().unwrap()
}

async fn post(http: &reqwest::Client, url: &str, headers: &[(&str, String)], body: &str) -> reqwest::Response {
    let mut request = http.post(url).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("the receiver answers")
}

fn event(kind: &str, n: u64) -> String {
    json!({"type": kind, "timestamp": "2026-01-01T00:00:00Z", "data": {"n": n}}).to_string()
}

#[test]
fn the_standard_webhooks_test_vector_signs_and_verifies() {
    let key = key_from_secret(VECTOR_SECRET);
    assert_eq!(sign_std(&key, VECTOR_ID, VECTOR_TS, VECTOR_BODY.as_bytes()), VECTOR_SIG);
    let headers = header_map(&[
        ("webhook-id", VECTOR_ID.into()),
        ("webhook-timestamp", VECTOR_TS.to_string()),
        ("webhook-signature", VECTOR_SIG.into()),
    ]);
    let keys = vec![key];
    let other = vec![key_from_secret(NEW_SECRET)];
    assert!(verify_std(&keys, &headers, VECTOR_BODY.as_bytes()));
    assert!(!verify_std(&keys, &headers, b"{}"), "another body");
    assert!(!verify_std(&other, &headers, VECTOR_BODY.as_bytes()), "another secret");
    // Entries of other versions and junk are skipped, any matching v1 entry counts.
    let listed = format!("v2,abc v1,bm90IGl0 {VECTOR_SIG}");
    let mut rotated = headers.clone();
    rotated.insert("webhook-signature", HeaderValue::from_str(&listed).unwrap());
    assert!(verify_std(&keys, &rotated, VECTOR_BODY.as_bytes()));
    assert!(verify_std(&[other[0].clone(), keys[0].clone()], &rotated, VECTOR_BODY.as_bytes()), "any secret");
    rotated.remove("webhook-id");
    assert!(!verify_std(&keys, &rotated, VECTOR_BODY.as_bytes()), "webhook-id is signed and required");
    // Unpadded base64 is the same key (the reference libraries pad before decoding).
    assert_eq!(key_from_secret("whsec_AQIDBA"), [1, 2, 3, 4]);
    assert_eq!(key_from_secret("whsec_AQIDBA=="), [1, 2, 3, 4]);

    let tg = header_map(&[("x-tollgate-signature", sign_tollgate(&keys[0], VECTOR_BODY.as_bytes()))]);
    assert!(tg["x-tollgate-signature"].to_str().unwrap().starts_with("sha256="));
    assert!(verify_tollgate(&keys, &tg, VECTOR_BODY.as_bytes()));
    assert!(!verify_tollgate(&keys, &tg, b"{}"), "another body");
    assert!(!verify_tollgate(&other, &tg, VECTOR_BODY.as_bytes()), "another secret");
    assert!(!verify_tollgate(&keys, &HeaderMap::new(), VECTOR_BODY.as_bytes()), "no header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_delivery_is_recorded_with_both_signatures_valid() {
    let receiver = Receiver::start(NEW_SECRET).await;
    let body = json!({"id": "evt_1", "type": "request.completed", "timestamp": "t", "data": {}}).to_string();
    let ts = now();
    let response =
        post(&client(), &receiver.url("/hooks/a"), &signed(&[NEW_SECRET], NEW_SECRET, "msg_1", ts, &body), &body).await;
    assert_eq!(response.status(), 200);

    let d = receiver.wait_for(1).await.remove(0);
    assert_eq!(d.path, "/hooks/a");
    assert_eq!(d.body, body.as_bytes());
    assert_eq!(d.webhook_id.as_deref(), Some("msg_1"));
    assert_eq!(d.timestamp, Some(ts));
    assert_eq!(d.event_type.as_deref(), Some("request.completed"));
    assert_eq!(d.event_id.as_deref(), Some("evt_1"));
    assert_eq!(d.json["data"], json!({}));
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert!(d.std_valid && d.tollgate_valid && d.valid() && d.succeeded(), "{d:#?}");
    assert_eq!(receiver.url("x"), format!("http://{}/x", receiver.addr()));
    receiver.assert_all_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_signatures_are_recorded_invalid_each_on_its_own() {
    let receiver = Receiver::start(NEW_SECRET).await;
    let http = client();
    let url = receiver.url("/h");
    let body = event("key.created", 1);
    // Standard Webhooks signature made with another secret; X-Tollgate right.
    post(&http, &url, &signed(&[OLD_SECRET], NEW_SECRET, "msg_a", now(), &body), &body).await;
    // The other way round.
    post(&http, &url, &signed(&[NEW_SECRET], OLD_SECRET, "msg_b", now(), &body), &body).await;
    // Signed for another body.
    let other = event("key.created", 2);
    post(&http, &url, &signed(&[NEW_SECRET], NEW_SECRET, "msg_c", now(), &other), &body).await;
    // No signature headers at all (and a body that is not JSON).
    post(&http, &url, &[], "not json").await;

    let seen = receiver.wait_for(4).await;
    let verdicts: Vec<(bool, bool)> = seen.iter().map(|d| (d.std_valid, d.tollgate_valid)).collect();
    assert_eq!(verdicts, [(false, true), (true, false), (false, false), (false, false)]);
    assert_eq!(seen[3].json, Value::Null);
    assert_eq!(seen[3].webhook_id, None);
    assert_eq!(seen[3].event_type, None);
    assert_eq!(receiver.success_count(), 4, "the receiver records bad signatures, it does not refuse them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_two_signature_header_verifies_against_either_secret() {
    let receiver = Receiver::start(OLD_SECRET).await;
    let http = client();
    let url = receiver.url("/rotating");
    let body = event("credits.low", 1);
    // During rotation: both signatures listed; X-Tollgate with the current (new) secret.
    let rotated = signed(&[OLD_SECRET, NEW_SECRET], NEW_SECRET, "msg_rot", now(), &body);
    post(&http, &url, &rotated, &body).await;
    receiver.set_secrets(&[NEW_SECRET]);
    post(&http, &url, &rotated, &body).await;
    receiver.set_secrets(&[OLD_SECRET, NEW_SECRET]);
    post(&http, &url, &rotated, &body).await;
    // Only the new secret signed, the receiver knows only the old one.
    receiver.set_secrets(&[OLD_SECRET]);
    post(&http, &url, &signed(&[NEW_SECRET], NEW_SECRET, "msg_new", now(), &body), &body).await;

    let verdicts: Vec<(bool, bool)> =
        receiver.wait_for(4).await.iter().map(|d| (d.std_valid, d.tollgate_valid)).collect();
    assert_eq!(verdicts, [(true, false), (true, true), (true, true), (false, false)]);
    assert_eq!(receiver.distinct_webhook_ids().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_statuses_are_consumed_one_per_request_then_the_default() {
    let receiver = Receiver::start(NEW_SECRET).await;
    receiver.fail_next(2, 503);
    receiver.script([Behaviour::retry_after(429, 7)]);
    receiver.respond_default(204);
    let http = client();
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for n in 0..5 {
        let body = event("tool.invoked", n / 2); // retries: pairs share an event and a webhook-id
        let headers = signed(&[NEW_SECRET], NEW_SECRET, &format!("msg_{}", n / 2), now(), &body);
        let response = post(&http, &receiver.url("/s"), &headers, &body).await;
        statuses.push(response.status().as_u16());
        retry_after.push(response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()));
    }
    assert_eq!(statuses, [503, 503, 429, 204, 204]);
    assert_eq!(retry_after[2].as_deref(), Some("7"));
    assert_eq!(retry_after[3], None);
    let answered: Vec<Option<u16>> = receiver.deliveries().iter().map(|d| d.answered).collect();
    assert_eq!(answered, [Some(503), Some(503), Some(429), Some(204), Some(204)]);
    assert_eq!(receiver.count(), 5);
    assert_eq!(receiver.success_count(), 2);
    assert_eq!(receiver.distinct_event_ids().into_iter().collect::<Vec<_>>(), ["msg_0", "msg_1", "msg_2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_holds_the_request_until_the_client_gives_up() {
    let receiver = Receiver::start(NEW_SECRET).await;
    receiver.hang_all();
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let body = event("ai_message", 1);
    let started = Instant::now();
    let error = impatient
        .post(receiver.url("/slow"))
        .body(body.clone())
        .send()
        .await
        .expect_err("a hanging receiver never answers");
    assert!(error.is_timeout(), "the client's own timeout ends it: {error}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let d = receiver.wait_for(1).await.remove(0);
    assert_eq!(d.answered, None);
    assert_eq!(receiver.success_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drops_the_connection_and_delay_answers_late() {
    let receiver = Receiver::start(NEW_SECRET).await;
    receiver.script([Behaviour::Close, Behaviour::Delay(Duration::from_millis(200), 202)]);
    let http = client();
    let error = http.post(receiver.url("/c")).body("{}").send().await.expect_err("no answer on a closed connection");
    assert!(!error.is_timeout(), "closed, not timed out: {error}");

    let started = Instant::now();
    let response = post(&http, &receiver.url("/c"), &[], "{}").await;
    assert_eq!(response.status(), 202);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(post(&http, &receiver.url("/c"), &[], "{}").await.status(), 200, "then the default");
    let answered: Vec<Option<u16>> = receiver.wait_for(3).await.iter().map(|d| d.answered).collect();
    assert_eq!(answered, [None, Some(202), Some(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_return_once_concurrent_deliveries_arrive() {
    let receiver = Receiver::start(NEW_SECRET).await;
    let url = receiver.url("/w");
    let senders: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|kind| {
            let url = url.clone();
            tokio::spawn(async move {
                let body = event(kind, 0);
                post(&client(), &url, &signed(&[NEW_SECRET], NEW_SECRET, kind, now(), &body), &body).await.status()
            })
        })
        .collect();
    let b = receiver.wait_for_event(|d| d.event_type.as_deref() == Some("b")).await;
    assert_eq!(b.webhook_id.as_deref(), Some("b"));
    assert!(receiver.wait_for(3).await.len() >= 3);
    for sender in senders {
        assert_eq!(sender.await.unwrap(), 200);
    }
    receiver.assert_all_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "webhook receiver: timed out")]
async fn a_wait_that_is_never_satisfied_fails_with_a_clear_message() {
    let receiver = Receiver::start(NEW_SECRET).await;
    receiver.set_wait_bound(Duration::from_millis(100));
    receiver.wait_for(1).await;
}

/// The Rust signer (and the receiver's raw recording) agree with the stock
/// library: what the receiver calls valid, `standardwebhooks` verifies too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_standardwebhooks_library_verifies_what_the_receiver_recorded() {
    let receiver = Receiver::start(NEW_SECRET).await;
    let http = client();
    let body = event("note_created", 7);
    post(&http, &receiver.url("/p"), &signed(&[NEW_SECRET], NEW_SECRET, "msg_py_1", now(), &body), &body).await;
    post(&http, &receiver.url("/p"), &signed(&[OLD_SECRET, NEW_SECRET], NEW_SECRET, "msg_py_2", now(), &body), &body)
        .await;
    post(&http, &receiver.url("/p"), &signed(&[OLD_SECRET], NEW_SECRET, "msg_py_3", now(), &body), &body).await;
    let seen = receiver.wait_for(3).await;
    assert_eq!(seen.iter().map(|d| d.std_valid).collect::<Vec<_>>(), [true, true, false]);

    let lines: Vec<(&str, &receiver::Delivery)> = seen.iter().map(|d| (NEW_SECRET, d)).collect();
    let Some((success, out)) = receiver::verify_with_python(&lines) else { return };
    assert!(!success, "one line fails, so the script exits 1: {out:?}");
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0], "ok msg_py_1");
    assert_eq!(out[1], "ok msg_py_2");
    assert!(out[2].starts_with("fail ") && out[2].contains("No matching signature"), "{out:?}");

    let (success, out) = receiver::verify_with_python(&lines[..2]).expect("available above");
    assert!(success, "all lines verify: {out:?}");
}
