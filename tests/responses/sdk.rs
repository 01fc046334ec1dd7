//! The two clients that must accept what the translation produces: the
//! `openai` Python SDK (`tests/sdk/responses_openai.py`) and the Vercel AI
//! SDK (`tests/sdk/responses_ai_sdk.mjs`).
//!
//! Each test translates every fixture now (not the golden files, which could
//! be stale), writes the Response JSON and event streams with a manifest of
//! what each one says (`cases.json`), and runs the script on them: it serves
//! them to the SDK from a local HTTP server, checks that the SDK's parsed
//! view (text, tool calls, finish, usage, errors) matches the manifest, and
//! validates every object and event against the SDK's own schemas. The
//! requests the SDKs sent meanwhile (first turns, and follow-ups that replay
//! the output, as `item_reference`s or items) are recorded, and must
//! translate here too.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tollgate::api::responses::{parse_request, Item, Part, Response};
use tollgate::request::{self, Endpoint};

use crate::cases;
use crate::tools;

const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");

#[test]
fn the_openai_python_sdk_accepts_responses_and_events() {
    if let Some(reason) = tools::python_lacks("openai") {
        return tools::skip("the openai Python SDK check of Responses", &reason);
    }
    let (dir, outputs) = write_outputs("python");
    run(Command::new(tools::python()).arg("responses_openai.py").arg(&dir));
    check_recorded_requests(&dir, &outputs);
}

#[test]
fn the_vercel_ai_sdk_accepts_responses_and_events() {
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !node || !Path::new(SDK_DIR).join("node_modules/@ai-sdk/openai").exists() {
        let reason = "node or tests/sdk/node_modules is missing (scripts/test runs `npm ci --prefix tests/sdk`)";
        return tools::skip("the Vercel AI SDK check of Responses", reason);
    }
    let (dir, outputs) = write_outputs("ai-sdk");
    run(Command::new("node").arg("responses_ai_sdk.mjs").arg(&dir));
    check_recorded_requests(&dir, &outputs);
}

fn run(command: &mut Command) {
    let output = command.current_dir(SDK_DIR).output().expect("the SDK runtime starts");
    assert!(
        output.status.success(),
        "SDK check failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every fixture's output and the manifest, in a fresh directory; returns
/// the directory and every output item (what follow-ups may reference).
fn write_outputs(sdk: &str) -> (PathBuf, Vec<Item>) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("responses-{sdk}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("requests")).unwrap();
    let mut manifest = Vec::new();
    let mut outputs = Vec::new();
    for (case, path) in cases::cases("chat", ".json") {
        let response = cases::whole(&case, &path);
        let file = format!("whole-{case}.json");
        std::fs::write(dir.join(&file), response.to_json()).unwrap();
        manifest.push(facts(format!("whole-{case}"), "json", file, &response));
        outputs.extend(response.output);
    }
    for (case, path) in cases::cases("stream", ".sse") {
        let (events, response) = cases::streamed(&case, &path);
        let file = format!("stream-{case}.sse");
        std::fs::write(dir.join(&file), events.concat()).unwrap();
        manifest.push(facts(format!("stream-{case}"), "sse", file, &response));
        outputs.extend(response.output);
    }
    std::fs::write(dir.join("cases.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    (dir, outputs)
}

/// What a response says, as the scripts compare it with the SDK's view.
fn facts(name: String, kind: &str, file: String, response: &Response) -> Value {
    let mut text = String::new();
    let mut refusal = String::new();
    let mut calls = Vec::new();
    for item in &response.output {
        match item {
            Item::Message(m) => {
                for part in &m.content {
                    match part {
                        Part::OutputText { text: t, .. } => text.push_str(t),
                        Part::Refusal { refusal: r } => refusal.push_str(r),
                        _ => {}
                    }
                }
            }
            Item::FunctionCall(c) => {
                calls.push(json!({"call_id": c.call_id, "name": c.name, "arguments": c.arguments}))
            }
            Item::FunctionCallOutput(_) => {}
        }
    }
    let r = serde_json::to_value(response).unwrap();
    json!({
        "name": name,
        "kind": kind,
        "file": file,
        "response_id": response.id,
        "status": r["status"],
        "incomplete_reason": r["incomplete_details"]["reason"],
        "text": text,
        "refusal": refusal,
        "tool_calls": calls,
        "usage": response.usage.map(|u| json!({"input_tokens": u.input_tokens, "output_tokens": u.output_tokens})),
        "error": r["error"],
    })
}

/// The requests the SDK sent must translate, their item references resolved
/// against the outputs it was served, into bodies the pipeline accepts.
fn check_recorded_requests(dir: &Path, outputs: &[Item]) {
    let mut checked = 0;
    let mut references = 0;
    for entry in std::fs::read_dir(dir.join("requests")).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read(&path).unwrap();
        let parsed = parse_request(&body).unwrap_or_else(|e| panic!("{}: {e} ({})", path.display(), e.code()));
        references += parsed.item_references().count();
        let translated = parsed.translate(&[], outputs).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        request::parse(&translated.chat_body, Endpoint::Chat).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 15, "the SDK sent a request per case and the follow-ups ({checked})");
    eprintln!("{checked} recorded requests translated, {references} item references resolved");
}
