//! Unit tests of the translation's behaviours one at a time; the recorded
//! fixtures, their golden outputs and the SDK checks are in `tests/responses/`.

mod request;

use serde_json::Value;

use super::translate_request;

/// The chat body of a request, as JSON.
fn chat(body: &str) -> Value {
    serde_json::from_slice(&translate_request(body.as_bytes(), &[]).expect("the request translates").chat_body).unwrap()
}
