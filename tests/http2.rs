//! HTTP/2 clients (h2c, prior knowledge) get the same gateway: JSON and streams.

mod common;

use common::*;

#[tokio::test]
async fn h2c_clients_get_json_and_streams() {
    let env = TestEnv::start().await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();

    let response = within(
        "h2 chat",
        h2.post(env.url("/v1/chat/completions")).bearer_auth(KEY).json(&chat_body(AGENT, "hi")).send(),
    )
    .await
    .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(json_of(response).await["model"], AGENT);

    let stream = h2.post(env.url("/v1/chat/completions")).bearer_auth(KEY).json(&chat_stream_body(AGENT, "hi"));
    let response = within("h2 stream", stream.send()).await.unwrap();
    assert_eq!((response.version(), response.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    let events = SseReader::new(response).rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    assert!(json_events(&events).iter().all(|e| e["model"] == AGENT));
}
