//! Unit tests of the translation's behaviours one at a time; the recorded
//! fixtures, their golden outputs and the SDK checks are in `tests/responses/`.

mod request;
mod response;
mod stream;

use serde_json::Value;

use super::{translate_request, ResponseMeta};

/// The meta of a response to `body`.
fn meta(body: &str) -> ResponseMeta {
    let t = translate_request(body.as_bytes(), &[]).expect("the request translates");
    ResponseMeta { id: "resp_t".into(), created_at: 1_000, model: t.model, echo: t.echo }
}

/// The chat body of a request, as JSON.
fn chat(body: &str) -> Value {
    serde_json::from_slice(&translate_request(body.as_bytes(), &[]).expect("the request translates").chat_body).unwrap()
}
