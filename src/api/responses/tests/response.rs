use serde_json::{json, Value};

use super::meta;
use crate::api::responses::{
    failed_response, response_from_chat, FailureCode, Item, ItemStatus, ResponsesError, Status,
};

fn whole(chat: Value) -> Result<crate::api::responses::Response, ResponsesError> {
    response_from_chat(&serde_json::to_vec(&chat).unwrap(), meta(r#"{"model":"agent","input":"hi"}"#), 2_000)
}

#[test]
fn text_and_calls_become_output_items_with_derived_ids() {
    let response = whole(json!({"choices": [{"message": {"content": "On it.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"type": "function", "function": {"name": "g", "arguments": "{\"a\":1}"}}
    ]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 5, "completion_tokens": 7}}))
    .unwrap();
    assert_eq!((response.status, response.completed_at), (Status::Completed, Some(2_000)));
    let ids: Vec<&str> = response.output.iter().map(Item::id).collect();
    assert_eq!(ids, ["msg_t_0", "fc_t_1", "fc_t_2"]);
    let Item::FunctionCall(second) = &response.output[2] else { panic!("a call") };
    assert!(second.call_id.starts_with("call_"), "a call without an id gets one");
    let usage = response.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens, usage.total_tokens), (5, 7, 12));
    let json: Value = serde_json::from_slice(&response.to_json()).unwrap();
    assert_eq!((&json["object"], &json["model"], &json["error"]), (&json!("response"), &json!("agent"), &json!(null)));
    assert!(json.get("output_text").is_none(), "output_text is the SDKs' to compute");
}

#[test]
fn a_cut_answer_is_incomplete_and_so_is_its_last_item() {
    for (finish, reason) in [("length", "max_output_tokens"), ("content_filter", "content_filter")] {
        let response =
            whole(json!({"choices": [{"message": {"content": "Once upon"}, "finish_reason": finish}]})).unwrap();
        let json: Value = serde_json::from_slice(&response.to_json()).unwrap();
        assert_eq!((&json["status"], &json["incomplete_details"]), (&json!("incomplete"), &json!({"reason": reason})));
        assert_eq!(json["completed_at"], json!(null), "{finish}: not completed");
        let Item::Message(m) = &response.output[0] else { panic!("a message") };
        assert_eq!(m.status, ItemStatus::Incomplete);
    }
}

#[test]
fn no_text_no_message_and_no_usage_is_null() {
    let response = whole(json!({"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]})).unwrap();
    assert!(response.output.is_empty() && response.usage.is_none());
}

#[test]
fn an_unreadable_answer_is_the_upstreams_fault() {
    for chat in [&b"<html>"[..], br#"{"choices":[]}"#, br#"{"error":{"message":"overloaded"}}"#] {
        let err = response_from_chat(chat, meta(r#"{"model":"m","input":"hi"}"#), 0).unwrap_err();
        assert!(matches!(err, ResponsesError::Upstream(_)), "{err}");
        assert_eq!((err.status().as_u16(), err.code(), err.param()), (502, "upstream_invalid_response", None));
    }
}

#[test]
fn a_failed_response_has_an_error_the_sdks_accept() {
    let response = failed_response(meta(r#"{"model":"m","input":"hi"}"#), FailureCode::RateLimitExceeded, "busy");
    let json: Value = serde_json::from_slice(&response.to_json()).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(
        json["error"],
        json!({"code": "rate_limit_exceeded", "message": "busy", "type": "too_many_requests", "param": null})
    );
}

/// The `required` list of the Open Responses `ResponseResource` schema:
/// strict clients (its compliance suite among them) reject an object
/// without any of them, `null` or not.
#[test]
fn carries_every_field_open_responses_requires() {
    const REQUIRED: [&str; 32] = [
        "id",
        "object",
        "created_at",
        "completed_at",
        "status",
        "incomplete_details",
        "model",
        "previous_response_id",
        "instructions",
        "output",
        "error",
        "tools",
        "tool_choice",
        "truncation",
        "parallel_tool_calls",
        "text",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "top_logprobs",
        "temperature",
        "reasoning",
        "user",
        "usage",
        "max_output_tokens",
        "max_tool_calls",
        "store",
        "background",
        "service_tier",
        "metadata",
        "safety_identifier",
        "prompt_cache_key",
    ];
    let response = whole(json!({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]})).unwrap();
    let json: Value = serde_json::from_slice(&response.to_json()).unwrap();
    for field in REQUIRED {
        assert!(json.get(field).is_some(), "{field}");
    }
    for number in ["temperature", "top_p", "presence_penalty", "frequency_penalty", "top_logprobs"] {
        assert!(json[number].is_number(), "{number} is a number, not null");
    }
}
