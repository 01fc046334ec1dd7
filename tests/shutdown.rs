//! Graceful shutdown: in-flight streams finish, new connections are told the
//! gateway is going away, and the grace period bounds the wait.

mod common;

use common::mock::scripted_stream;
use common::*;

/// True once nothing accepts connections on `addr` any more.
async fn refuses_connections(addr: std::net::SocketAddr) -> bool {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn an_in_flight_stream_finishes_after_shutdown_begins() {
    let mut env = TestEnv::start().await;
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let response = env.chat(&chat_stream_body(AGENT, "hi")).await;
    assert_eq!(response.status(), 200);
    let mut sse = SseReader::new(response);
    upstream.send_content(AGENT_UPSTREAM_MODEL, "first").await;
    assert_eq!(sse.next_json().await["choices"][0]["delta"]["content"], "first");

    let server = env.gw.shut_down();
    // While the stream drains, the listener stays open and says "going away":
    // readiness fails, liveness holds, a new request gets 503 + Connection: close.
    let readyz = ready_status(&env).await;
    assert_eq!(readyz, 503, "/readyz fails from the moment shutdown begins");
    let mut stream = raw_send(env.gw.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw_read_response(&mut stream).await.status, 200, "/healthz still answers while draining");
    let mut stream = raw_send(
        env.gw.addr,
        format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n").as_bytes(),
    )
    .await;
    let going_away = raw_read_response(&mut stream).await;
    assert_eq!(going_away.status, 503);
    assert_eq!(going_away.header("connection"), Some("close"));
    assert_eq!(going_away.header("retry-after"), Some("1"));
    assert_eq!(going_away.json()["error"]["code"], "shutting_down");
    assert!(!server.is_finished(), "the stream in flight keeps the gateway draining");

    upstream.send_content(AGENT_UPSTREAM_MODEL, "second").await;
    upstream.finish(AGENT_UPSTREAM_MODEL, None).await;
    let rest = sse.rest().await;
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "the stream ran to its end: {rest:?}");
    assert!(rest.iter().any(|e| e.contains("second")));
    within("drain", server).await.expect("server task").expect("clean shutdown");
    assert!(refuses_connections(env.gw.addr).await, "the listener closes once the drain is done");
}

#[tokio::test]
async fn shutdown_grace_bounds_the_wait_for_a_stream_that_never_ends() {
    let mut env = TestEnv::start().await; // shutdown_grace_ms = 1000 in the test config
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let response = env.chat(&chat_stream_body(AGENT, "hi")).await;
    let mut sse = SseReader::new(response);
    upstream.send_content(AGENT_UPSTREAM_MODEL, "first").await;
    sse.next_json().await;

    let started = std::time::Instant::now();
    let server = env.gw.shut_down();
    within("grace", server).await.expect("server task").expect("shutdown returns after the grace period");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "the stream got its grace period first");
    drop(upstream);
}

/// `/readyz` on a fresh connection.
async fn ready_status(env: &TestEnv) -> u16 {
    let mut stream = raw_send(env.gw.addr, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    raw_read_response(&mut stream).await.status
}

#[tokio::test]
async fn readyz_answers_200_while_serving() {
    let env = TestEnv::start().await;
    assert_eq!(ready_status(&env).await, 200);
    let response = env.client.get(env.url("/readyz")).send().await.unwrap();
    assert_eq!(json_of(response).await["status"], "ready");
}

#[tokio::test]
async fn an_h2_connection_gets_goaway_and_its_stream_in_flight_finishes() {
    use http_body_util::BodyExt;
    let mut env = TestEnv::start().await;
    let (reply, upstream) = scripted_stream();
    env.mock.push(reply);
    let stream = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake::<_, String>(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let url = env.url("/v1/chat/completions");
    let chat = |body: &serde_json::Value| {
        http::Request::post(url.as_str())
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .unwrap()
    };
    let response = within("h2 stream", sender.send_request(chat(&chat_stream_body(AGENT, "hi")))).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    upstream.send_content(AGENT_UPSTREAM_MODEL, "first").await;
    within("the first chunk", body.frame()).await.expect("a frame").expect("data");

    let server = env.gw.shut_down();
    // GOAWAY: the connection takes no new stream...
    let refused = within("a request after GOAWAY", async {
        loop {
            match sender.send_request(chat(&chat_body(AGENT, "late"))).await {
                Err(_) => return true,
                Ok(r) if r.status() == 503 => return true,
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(refused);
    // ...and the one in flight runs to its end.
    upstream.send_content(AGENT_UPSTREAM_MODEL, "second").await;
    upstream.finish(AGENT_UPSTREAM_MODEL, None).await;
    let rest = within("the rest of the stream", body.collect()).await.expect("the stream ends cleanly").to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("second") && rest.contains("[DONE]"), "{rest}");
    within("drain", server).await.expect("server task").expect("clean shutdown");
    within("the h2 connection to close", connection).await.expect("connection task").ok();
}
