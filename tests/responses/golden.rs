//! Snapshot tests: each fixture's translation against its readable golden
//! JSON beside it (`<case>.expected.json`; `UPDATE_GOLDEN=1` rewrites them).

use serde_json::{json, Value};
use tollgate::api::responses::parse_request;
use tollgate::request::{self, Endpoint};

use crate::cases::{self, check_golden, mask_generated_ids, read_json};

#[test]
fn requests_translate_to_the_recorded_chat_bodies() {
    let found = cases::cases("requests", ".json");
    assert!(found.len() >= 6, "the request fixtures are there");
    for (name, path) in found {
        let t = cases::translated(&read_json(&path));
        // The pipeline parses the body as any chat request: it must pass.
        let parsed = request::parse(&t.chat_body, Endpoint::Chat).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((&*parsed.model, parsed.stream, parsed.include_usage), (&*t.model, t.stream, t.stream), "{name}");
        let mut actual = json!({
            "chat": serde_json::from_slice::<Value>(&t.chat_body).unwrap(),
            "stream": t.stream,
            "store": t.store(),
            "previous_response_id": t.previous_response_id(),
            "input_items": t.input_items,
            "echo": t.echo,
        });
        mask_generated_ids(&mut actual);
        check_golden(&path.with_file_name(format!("{name}.expected.json")), &actual);
    }
}

#[test]
fn bad_requests_are_400s_naming_their_param() {
    let table = read_json(&std::path::Path::new(cases::FIXTURES).join("requests/errors.json"));
    for case in table.as_array().unwrap() {
        let why = case["why"].as_str().unwrap();
        let body = match case.get("raw") {
            Some(raw) => raw.as_str().unwrap().as_bytes().to_vec(),
            None => serde_json::to_vec(&case["body"]).unwrap(),
        };
        let err = parse_request(&body).and_then(|p| p.translate(&[], &[])).expect_err(why);
        assert_eq!(err.status(), 400, "{why}: {err}");
        assert_eq!(err.code(), case["code"].as_str().unwrap(), "{why}: {err}");
        assert_eq!(err.param(), case["param"].as_str(), "{why}: {err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn chat_answers_become_the_recorded_responses() {
    let found = cases::cases("chat", ".json");
    assert!(found.len() >= 7, "the chat fixtures are there");
    for (name, path) in found {
        let response = cases::whole(&name, &path);
        let actual: Value = serde_json::from_slice(&response.to_json()).unwrap();
        check_golden(&path.with_file_name(format!("{name}.expected.json")), &actual);
    }
}

#[test]
fn streams_become_the_recorded_events() {
    let found = cases::cases("stream", ".sse");
    assert!(found.len() >= 8, "the stream fixtures are there");
    for (name, path) in found {
        let (events, response) = cases::streamed(&name, &path);
        let mut actual = Vec::new();
        for (n, event) in events.iter().enumerate() {
            let text = std::str::from_utf8(event).unwrap();
            if n == events.len() - 1 {
                assert_eq!(text, "data: [DONE]\n\n", "{name}: the stream ends with [DONE]");
                continue;
            }
            // One complete event per element: `event:`, one `data:` line, a blank line.
            let (kind, data) = text
                .strip_prefix("event: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .and_then(|t| t.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("{name}: event {n} is not framed: {text:?}"));
            assert!(!data.contains('\n'), "{name}: event {n} has one data line");
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], kind, "{name}: the event name is its type");
            assert_eq!(data["sequence_number"], n, "{name}: sequence numbers count from 0");
            actual.push(json!({ "event": kind, "data": data }));
        }
        // The last event carries the Response the stream returns.
        let last = &actual.last().unwrap()["data"]["response"];
        assert_eq!(last, &serde_json::from_slice::<Value>(&response.to_json()).unwrap(), "{name}");
        check_golden(&path.with_file_name(format!("{name}.expected.json")), &Value::Array(actual));
    }
}
