use serde_json::{json, Value};

use super::meta;
use crate::api::responses::{
    response_from_chat, FailureCode, Item, Response, ResponseUsage, ResponsesError, ResponsesStream, Status,
};

const REQUEST: &str = r#"{"model":"agent","input":"hi","stream":true}"#;

fn chunk(delta: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]})).unwrap()
}

fn finish(reason: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})).unwrap()
}

fn call(index: Option<u32>, id: Option<&str>, name: Option<&str>, arguments: &str) -> Vec<u8> {
    let mut piece = json!({"function": {"arguments": arguments}});
    if let Some(index) = index {
        piece["index"] = json!(index);
    }
    if let Some(id) = id {
        piece["id"] = json!(id);
    }
    if let Some(name) = name {
        piece["function"]["name"] = json!(name);
    }
    chunk(json!({"tool_calls": [piece]}))
}

/// The events' data (`[DONE]` as a string) and the final Response.
fn run(chunks: &[Vec<u8>], fallback: Option<ResponseUsage>) -> (Vec<Value>, Response) {
    let mut stream = ResponsesStream::new(meta(REQUEST));
    let mut out = Vec::new();
    stream.start(&mut out);
    for c in chunks {
        stream.push_chunk(c, &mut out).unwrap();
    }
    let response = stream.finish(3_000, fallback, &mut out);
    (events(&out), response)
}

/// The events written to `out`, each `[event: <type>\n]data: <json>\n\n`.
fn events(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "only whole events are written: {text:?}");
    text.split_terminator("\n\n")
        .map(|event| {
            let data = event.split_once("data: ").unwrap().1;
            serde_json::from_str(data).unwrap_or_else(|_| json!(data))
        })
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap_or("[DONE]")).collect()
}

#[test]
fn a_text_stream_opens_streams_and_closes_its_message() {
    let chunks = [
        chunk(json!({"role": "assistant", "content": ""})),
        chunk(json!({"content": "Hel"})),
        b"[DONE]".to_vec(),
        chunk(json!({"content": "lo"})),
        finish("stop"),
    ];
    let (events, response) = run(&chunks, None);
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
            "[DONE]",
        ]
    );
    for (n, event) in events.iter().take(events.len() - 1).enumerate() {
        assert_eq!(event["sequence_number"], n);
    }
    assert_eq!(events[6]["text"], "Hello");
    assert_eq!((response.status, response.completed_at), (Status::Completed, Some(3_000)));
}

#[test]
fn usage_comes_from_the_usage_chunk_else_from_the_fallback() {
    let usage = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
    let estimate = Some(ResponseUsage::new(100, 100));
    let (_, response) = run(&[chunk(json!({"content": "x"})), finish("stop"), usage.to_vec()], estimate);
    let usage = response.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens, usage.total_tokens), (3, 2, 5));
    assert_eq!((usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens), (1, 1));
    let (_, response) = run(&[chunk(json!({"content": "x"})), finish("stop")], estimate);
    assert_eq!(response.usage, estimate);
    let (_, response) = run(&[chunk(json!({"content": "x"})), finish("stop")], None);
    assert_eq!(response.usage, None);
}

#[test]
fn a_call_is_announced_once_its_name_is_known() {
    let chunks = [
        call(Some(0), Some("call_1"), None, "{\"a\""),
        call(Some(0), None, Some("lookup"), ":1"),
        call(Some(0), None, Some("lookup"), "}"),
        finish("tool_calls"),
    ];
    let (events, response) = run(&chunks, None);
    let added = events.iter().find(|e| e["type"] == "response.output_item.added").unwrap();
    assert_eq!(added["item"]["name"], "lookup");
    assert_eq!(added["item"]["arguments"], "");
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, ["{\"a\":1", "}"], "the early piece goes out with the announcement");
    let Item::FunctionCall(c) = &response.output[0] else { panic!("a call") };
    assert_eq!((c.call_id.as_str(), c.name.as_str(), c.arguments.as_str()), ("call_1", "lookup", "{\"a\":1}"));
}

#[test]
fn interleaved_and_unindexed_calls_keep_their_own_arguments() {
    let chunks = [
        call(Some(0), Some("call_a"), Some("f"), "{\"x\":"),
        call(Some(1), Some("call_b"), Some("g"), "{\"y\":"),
        call(Some(0), None, None, "1}"),
        call(Some(1), None, None, "2}"),
        call(None, Some("call_c"), Some("h"), "{"),
        call(None, None, None, "}"),
        finish("tool_calls"),
    ];
    let (_, response) = run(&chunks, None);
    let calls: Vec<(&str, &str)> = response
        .output
        .iter()
        .map(|i| match i {
            Item::FunctionCall(c) => (c.call_id.as_str(), c.arguments.as_str()),
            _ => panic!("only calls"),
        })
        .collect();
    assert_eq!(calls, [("call_a", "{\"x\":1}"), ("call_b", "{\"y\":2}"), ("call_c", "{}")]);
}

#[test]
fn text_after_a_call_is_the_next_item() {
    let chunks = [call(Some(0), Some("call_1"), Some("f"), "{}"), chunk(json!({"content": "Done."})), finish("stop")];
    let (events, response) = run(&chunks, None);
    let message_added = events.iter().filter(|e| e["type"] == "response.output_item.added").nth(1).unwrap();
    assert_eq!((&message_added["output_index"], &message_added["item"]["type"]), (&json!(1), &json!("message")));
    assert!(matches!(response.output[1], Item::Message(_)));
}

#[test]
fn a_length_cut_leaves_the_last_item_incomplete() {
    let (events, response) = run(&[chunk(json!({"content": "Once"})), finish("length")], None);
    let done = events.iter().find(|e| e["type"] == "response.output_item.done").unwrap();
    assert_eq!(done["item"]["status"], "incomplete");
    assert_eq!(kinds(&events)[events.len() - 2], "response.incomplete");
    assert_eq!((response.status, response.completed_at), (Status::Incomplete, None));
}

#[test]
fn garbage_and_reported_errors_are_the_upstreams() {
    let mut stream = ResponsesStream::new(meta(REQUEST));
    let mut out = Vec::new();
    for bad in [&b"{\"choices\":"[..], br#"{"error":{"message":"quota"}}"#] {
        let err = stream.push_chunk(bad, &mut out).unwrap_err();
        assert!(matches!(err, ResponsesError::Upstream(_)), "{err}");
    }
    assert!(out.is_empty());
}

#[test]
fn a_failure_sends_the_error_then_what_arrived_as_failed() {
    let mut stream = ResponsesStream::new(meta(REQUEST));
    let mut out = Vec::new();
    stream.start(&mut out);
    stream.push_chunk(&chunk(json!({"content": "Half"})), &mut out).unwrap();
    stream.push_chunk(&call(Some(0), Some("call_1"), Some("f"), "{\"a"), &mut out).unwrap();
    let response = stream.fail(FailureCode::ServerError, "upstream died", None, &mut out);
    let events = events(&out);
    assert_eq!(kinds(&events)[events.len() - 3..], ["error", "response.failed", "[DONE]"]);
    let error = &events[events.len() - 3];
    assert_eq!((&error["code"], &error["message"]), (&json!("server_error"), &json!("upstream died")));
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(response.status, Status::Failed);
    let statuses: Vec<Value> =
        response.output.iter().map(|i| serde_json::to_value(i).unwrap()["status"].clone()).collect();
    assert_eq!(statuses, [json!("incomplete"), json!("incomplete")]);
}

/// The same answer, streamed or whole, is the same Response: a stored turn
/// does not depend on how the client asked.
#[test]
fn a_streamed_answer_is_the_whole_answer() {
    let usage = json!({"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13});
    let whole = json!({"choices": [{"message": {"content": "Sure.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"q\":1}"}}]},
        "finish_reason": "tool_calls"}], "usage": usage});
    let whole = response_from_chat(&serde_json::to_vec(&whole).unwrap(), meta(REQUEST), 3_000).unwrap();
    let chunks = [
        chunk(json!({"content": "Sure"})),
        chunk(json!({"content": "."})),
        call(Some(0), Some("call_1"), Some("f"), "{\"q\""),
        call(Some(0), None, None, ":1}"),
        finish("tool_calls"),
        serde_json::to_vec(&json!({"choices": [], "usage": usage})).unwrap(),
    ];
    let (_, streamed) = run(&chunks, None);
    assert_eq!(String::from_utf8(streamed.to_json()).unwrap(), String::from_utf8(whole.to_json()).unwrap());
}
