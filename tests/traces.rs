//! OpenTelemetry traces from a real `tollgate serve` process to an OTLP/HTTP
//! collector run by the test (JSON encoding, so the spans are read here
//! without a protobuf decoder): the client's `traceparent` is the parent,
//! each upstream attempt sends its own, the model call carries the GenAI
//! attributes, and no prompt or key is ever an attribute.

mod common;
#[path = "support/served.rs"]
mod served;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::mock::{COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "a prompt that must never be an attribute";

/// An OTLP/HTTP receiver: every body posted to it, as JSON.
struct Collector {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn collector() -> Collector {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                            kept.lock().unwrap().push(json);
                        }
                        let mut ok = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                        ok.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(ok)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Collector { url, bodies }
}

/// Every span the collector received, flattened.
fn spans(bodies: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for body in bodies {
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                out.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    let value = &span["attributes"].as_array()?.iter().find(|a| a["key"] == key)?["value"];
    value.get("stringValue").or_else(|| value.get("intValue")).or_else(|| value.get("boolValue"))
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

#[tokio::test]
async fn a_model_request_is_one_trace_under_the_clients_traceparent() {
    let mock = MockUpstream::start().await;
    let collector = collector().await;
    let dir = std::env::temp_dir().join(format!("tollgate-traces-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        r#"
[providers.up]
kind = "openai"
base_url = "{upstream}"

[agents.{AGENT}]
provider = "up"
upstream_model = "{AGENT_UPSTREAM_MODEL}"

[[keys]]
name = "k"
sha256 = "{hash}"

[store]
path = "{db}"

[tracing]
otlp_endpoint = "{collector}"
protocol = "http/json"
service_name = "tollgate-test"
"#,
        upstream = mock.base_url(),
        hash = sha256_hex(KEY),
        db = dir.join("t.db").display(),
        collector = collector.url,
    );
    std::fs::write(dir.join("tollgate.toml"), toml).unwrap();
    let gateway = served::serve_in(&dir, &["--config", "tollgate.toml"], "gateway").await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let http = client();
    let chat = |stream: bool| {
        let body = if stream { chat_stream_body(AGENT, PROMPT) } else { chat_body(AGENT, PROMPT) };
        http.post(format!("{}/v1/chat/completions", gateway.base))
            .bearer_auth(KEY)
            .header("traceparent", &traceparent)
            .json(&body)
            .send()
    };
    assert_eq!(chat(false).await.unwrap().status(), 200);
    let streamed = chat(true).await.unwrap();
    assert!(streamed.text().await.unwrap().contains("[DONE]"));

    // Each upstream attempt carries the trace on, from a span of its own.
    for request in mock.requests() {
        let sent = request.header("traceparent").expect("the upstream request carries a traceparent");
        assert!(sent.starts_with(&format!("00-{TRACE_ID}-")), "{sent}");
        assert!(!sent.contains(CLIENT_SPAN), "the upstream's parent is the attempt's span, not the client's: {sent}");
    }

    let log = gateway.terminate().await; // flushes the batched spans
    let bodies = collector.bodies.lock().unwrap().clone();
    let all = spans(&bodies);
    assert!(!all.is_empty(), "no spans arrived; log:\n{log}");
    let text = serde_json::to_string(&bodies).unwrap();
    assert!(!text.contains(PROMPT), "a prompt reached a span");
    assert!(!text.contains(KEY), "a key reached a span");
    assert!(text.contains("tollgate-test"), "the service name is the resource's");

    assert!(named(&all, "GET /healthz").is_empty(), "health checks are not traced");
    let requests = named(&all, "POST /chat/completions");
    assert_eq!(requests.len(), 2, "{all:#?}");
    for request in &requests {
        assert_eq!(request["traceId"].as_str().unwrap().to_lowercase(), TRACE_ID);
        assert_eq!(request["parentSpanId"].as_str().unwrap().to_lowercase(), CLIENT_SPAN);
        assert_eq!(attribute(request, "http.response.status_code").unwrap(), &Value::from("200"));
    }
    let calls = named(&all, &format!("chat {AGENT}"));
    assert_eq!(calls.len(), 2, "{all:#?}");
    for call in &calls {
        assert_eq!(attribute(call, "gen_ai.operation.name").unwrap(), "chat");
        assert_eq!(attribute(call, "gen_ai.request.model").unwrap(), AGENT);
        assert_eq!(attribute(call, "gen_ai.response.model").unwrap(), AGENT_UPSTREAM_MODEL);
        assert_eq!(attribute(call, "gen_ai.provider.name").unwrap(), "up");
        assert_eq!(attribute(call, "gen_ai.usage.input_tokens").unwrap(), &Value::from(PROMPT_TOKENS.to_string()));
        assert_eq!(attribute(call, "gen_ai.usage.output_tokens").unwrap(), &Value::from(COMPLETION_TOKENS.to_string()));
        assert!(requests.iter().any(|r| r["spanId"] == call["parentSpanId"]), "the call is a child of its request");
    }
    let upstream = named(&all, &format!("upstream up/{AGENT_UPSTREAM_MODEL}"));
    assert_eq!(upstream.len(), 2, "{all:#?}");
    assert!(upstream.iter().all(|u| calls.iter().any(|c| c["spanId"] == u["parentSpanId"])));
    assert_eq!(named(&all, "admit").len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
