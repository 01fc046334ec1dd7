//! Running the recorded fixtures of `tests/fixtures/responses/` through the
//! translation, for the golden tests and the SDK checks alike.
//!
//! - `requests/<case>.json`: `{"body", "history"?, "referenced"?}`, a
//!   Responses request and the stored items it may use;
//! - `chat/<case>.json`: `{"request"?, "chat"}`, a whole chat completion
//!   (and the request whose echo the Response carries);
//! - `stream/<case>.sse`: a chat stream as an upstream sends it, with
//!   `<case>.request.json` beside it when the echo matters; a stream that
//!   does not end with `data: [DONE]` is one the upstream cut, and fails.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::Value;
use tollgate::api::responses::{
    parse_request, response_from_chat, translate_request, FailureCode, Item, Response, ResponseMeta, ResponsesStream,
    Translated,
};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/responses");
pub const CREATED_AT: u64 = 1_767_225_600;
pub const COMPLETED_AT: u64 = 1_767_225_609;
pub const CUT_MESSAGE: &str = "The upstream connection failed mid-response.";

/// The cases in `dir` whose file ends with `suffix`, by name, sorted.
pub fn cases(dir: &str, suffix: &str) -> Vec<(String, PathBuf)> {
    let dir = Path::new(FIXTURES).join(dir);
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.strip_suffix(suffix)?.to_owned();
            (!name.contains('.') && name != "errors").then_some((name, path))
        })
        .collect();
    found.sort();
    found
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn items(value: Option<&Value>) -> Vec<Item> {
    value.map(|v| serde_json::from_value(v.clone()).expect("stored items")).unwrap_or_default()
}

/// A request case translated.
pub fn translated(case: &Value) -> Translated {
    let body = serde_json::to_vec(&case["body"]).unwrap();
    let (history, referenced) = (items(case.get("history")), items(case.get("referenced")));
    parse_request(&body).and_then(|parsed| parsed.translate(&history, &referenced)).expect("the request translates")
}

/// The meta of a case's response: its echo from `request` (else a plain one).
pub fn meta(case: &str, request: Option<&Value>) -> ResponseMeta {
    let default = serde_json::json!({"model": "demo", "input": "hi"});
    let body = serde_json::to_vec(request.unwrap_or(&default)).unwrap();
    let t = translate_request(&body, &[]).expect("the case's request translates");
    ResponseMeta { id: format!("resp_{case}"), created_at: CREATED_AT, model: t.model, echo: t.echo }
}

/// A whole chat completion case's Response.
pub fn whole(case: &str, path: &Path) -> Response {
    let fixture = read_json(path);
    let chat = serde_json::to_vec(&fixture["chat"]).unwrap();
    response_from_chat(&chat, meta(case, fixture.get("request")), COMPLETED_AT).expect("the completion translates")
}

/// A stream case: the events it makes, and the Response it ends with.
pub fn streamed(case: &str, path: &Path) -> (Vec<Bytes>, Response) {
    let sse = std::fs::read_to_string(path).unwrap();
    let request = path.with_file_name(format!("{case}.request.json"));
    let request = request.exists().then(|| read_json(&request));
    let mut stream = ResponsesStream::new(meta(case, request.as_ref()));
    let mut out = Vec::new();
    stream.start(&mut out);
    let payloads = data_payloads(&sse);
    for payload in &payloads {
        stream.push_chunk(payload.as_bytes(), &mut out).expect("the chunk translates");
    }
    let response = match payloads.last() {
        Some(&"[DONE]") => stream.finish(COMPLETED_AT, None, &mut out),
        _ => stream.fail(FailureCode::ServerError, CUT_MESSAGE, None, &mut out),
    };
    // One buffer for the whole stream: split back into its events.
    let text = String::from_utf8(out).expect("events are UTF-8");
    let events = text.split_inclusive("\n\n").map(|e| Bytes::copy_from_slice(e.as_bytes())).collect();
    (events, response)
}

/// The `data:` payloads of an SSE text, in order.
pub fn data_payloads(sse: &str) -> Vec<&str> {
    sse.split("\n\n").filter_map(|event| event.lines().find_map(|line| line.strip_prefix("data: "))).collect()
}

/// Generated ids vary by run: `<generated>` in golden files.
pub fn mask_generated_ids(value: &mut Value) {
    match value {
        Value::String(s) => {
            let generated = ["msg_", "fc_", "fco_", "call_"].iter().any(|prefix| {
                s.strip_prefix(prefix)
                    .is_some_and(|rest| rest.len() >= 24 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
            });
            if generated {
                *s = "<generated>".into();
            }
        }
        Value::Array(list) => list.iter_mut().for_each(mask_generated_ids),
        Value::Object(map) => map.values_mut().for_each(mask_generated_ids),
        _ => {}
    }
}

/// Compares `actual` with the golden file at `path`; `UPDATE_GOLDEN=1`
/// rewrites the file instead (then review the diff).
pub fn check_golden(path: &Path, actual: &Value) {
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &pretty).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    let expected: Value = serde_json::from_str(&expected).unwrap();
    assert!(&expected == actual, "{} differs (UPDATE_GOLDEN=1 rewrites it); actual:\n{pretty}", path.display());
}
