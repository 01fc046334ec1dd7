//! CORS for browser clients (`[cors]`): a preflight `OPTIONS` is answered
//! without a key, with the methods, the headers the OpenAI SDKs ask for and
//! a max age; an allowed origin's answers carry `Access-Control-Allow-Origin`
//! and the exposed headers, streams included; another origin gets none; with
//! CORS off (the default) `OPTIONS` stays a 405 and no CORS header is sent.

mod common;

use common::*;
use reqwest::Method;

const APP: &str = "https://app.example.com";

async fn env_with(cors: &str) -> (MockUpstream, Gateway) {
    let mock = MockUpstream::start().await;
    let toml = format!("{}\n{cors}\n", config_toml(&Settings::default(), &mock.base_url()));
    (mock, Gateway::start(&toml).await)
}

fn preflight(addr: std::net::SocketAddr, origin: &str) -> reqwest::RequestBuilder {
    client()
        .request(Method::OPTIONS, format!("http://{addr}/v1/chat/completions"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, x-stainless-os")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap_or(""))
}

#[tokio::test]
async fn a_preflight_is_answered_without_a_key_for_an_allowed_origin() {
    let (_mock, gw) = env_with(&format!("[cors]\nallowed_origins = [\"{APP}\"]\nmax_age_s = 120")).await;
    let response = within("preflight", preflight(gw.addr, APP).send()).await.unwrap();
    assert_eq!(response.status(), 200, "no key is needed for a preflight");
    assert_eq!(header(&response, "access-control-allow-origin"), APP);
    let methods = header(&response, "access-control-allow-methods");
    for m in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{m} in {methods}");
    }
    let headers = header(&response, "access-control-allow-headers").to_ascii_lowercase();
    for h in ["authorization", "content-type", "x-stainless-os"] {
        assert!(headers.contains(h), "{h} in {headers}");
    }
    assert_eq!(header(&response, "access-control-max-age"), "120");
    assert!(header(&response, "vary").to_ascii_lowercase().contains("origin"));
    assert!(response.headers().get("access-control-allow-credentials").is_none(), "never credentials mode");

    // Another origin: answered, but without permission (the browser blocks it).
    let response = within("preflight", preflight(gw.addr, "https://evil.example").send()).await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn an_allowed_origins_calls_carry_the_cors_headers_streams_included() {
    let (_mock, gw) = env_with(&format!("[cors]\nallowed_origins = [\"{APP}\", \"http://localhost:3000\"]")).await;
    let url = format!("http://{}/v1/chat/completions", gw.addr);
    let send = |origin: &str, body: serde_json::Value| {
        client().post(&url).bearer_auth(KEY).header("origin", origin).json(&body).send()
    };
    let response = within("chat", send(APP, chat_body(AGENT, "hi"))).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), APP);
    let exposed = header(&response, "access-control-expose-headers").to_ascii_lowercase();
    assert!(exposed.contains("x-request-id") && exposed.contains("x-ratelimit-remaining-requests"), "{exposed}");
    assert_eq!(json_of(response).await["model"], AGENT);

    let response = within("stream", send("http://localhost:3000", chat_stream_body(AGENT, "hi"))).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "http://localhost:3000");
    let text = within("the stream", response.text()).await.unwrap();
    assert!(text.contains("data: [DONE]"), "{text}");

    // An error answer carries the headers too, so the browser's script can read it.
    let response =
        within("bad key", client().post(&url).bearer_auth("wrong").header("origin", APP).send()).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), APP);

    let response = within("chat", send("https://evil.example", chat_body(AGENT, "hi"))).await.unwrap();
    assert_eq!(response.status(), 200, "CORS is the browser's rule, not an auth check");
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn any_origin_is_allowed_with_a_star() {
    let (_mock, gw) = env_with("[cors]\nallowed_origins = [\"*\"]").await;
    let response = within("preflight", preflight(gw.addr, "https://anywhere.example").send()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
}

#[tokio::test]
async fn with_cors_off_options_is_405_and_no_cors_header_is_sent() {
    let (_mock, gw) = env_with("").await;
    let response = within("preflight", preflight(gw.addr, APP).send()).await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().get("access-control-allow-origin").is_none());
    let response = within(
        "chat",
        client()
            .post(format!("http://{}/v1/chat/completions", gw.addr))
            .bearer_auth(KEY)
            .header("origin", APP)
            .json(&chat_body(AGENT, "hi"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("access-control-allow-origin").is_none());
}
