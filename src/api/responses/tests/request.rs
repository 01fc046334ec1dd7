use serde_json::json;

use super::chat;
use crate::api::responses::{parse_request, translate_request, Item, ResponsesError};

#[test]
fn a_string_input_is_one_user_message_after_the_instructions() {
    let body = chat(r#"{"model":"m","input":"hi","instructions":"Be brief."}"#);
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    );
    assert!(body.get("stream").is_none() && body.get("stream_options").is_none());
}

#[test]
fn streams_ask_the_upstream_for_usage() {
    let body = chat(r#"{"model":"m","input":"hi","stream":true}"#);
    assert_eq!((&body["stream"], &body["stream_options"]), (&json!(true), &json!({"include_usage": true})));
}

#[test]
fn developer_messages_go_upstream_as_system() {
    let body =
        chat(r#"{"model":"m","input":[{"role":"developer","content":"Rules."},{"role":"user","content":"hi"}]}"#);
    assert_eq!(body["messages"][0], json!({"role": "system", "content": "Rules."}));
    let t = translate_request(br#"{"model":"m","input":[{"role":"developer","content":"Rules."}]}"#, &[]).unwrap();
    let Item::Message(m) = &t.input_items[0] else { panic!("a message") };
    assert_eq!(serde_json::to_value(m.role).unwrap(), "developer", "the stored item keeps its role");
}

#[test]
fn calls_join_the_assistant_turn_they_follow_and_outputs_are_tool_messages() {
    let body = chat(
        r#"{"model":"m","input":[
            {"role":"assistant","content":"Checking."},
            {"type":"function_call","call_id":"a","name":"f","arguments":"{}"},
            {"type":"function_call","call_id":"b","name":"g","arguments":"{}"},
            {"type":"function_call_output","call_id":"a","output":"1"},
            {"type":"function_call_output","call_id":"b","output":"2"},
            {"type":"function_call","call_id":"c","name":"f","arguments":"{\"x\":1}"}
        ]}"#,
    );
    let messages = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["assistant", "tool", "tool", "assistant"]);
    assert_eq!(messages[0]["content"], "Checking.");
    assert_eq!(messages[0]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(messages[1], json!({"role": "tool", "content": "1", "tool_call_id": "a"}));
    assert_eq!(messages[3]["content"], json!(null), "a call after tool output starts a new turn");
    assert_eq!(messages[3]["tool_calls"][0]["id"], "c");
}

#[test]
fn history_comes_before_the_input_and_references_resolve() {
    let history: Vec<Item> = serde_json::from_value(json!([
        {"type": "message", "id": "msg_a", "role": "user", "status": "completed",
         "content": [{"type": "input_text", "text": "first"}]}
    ]))
    .unwrap();
    let body = br#"{"model":"m","previous_response_id":"resp_1",
        "input":[{"type":"item_reference","id":"msg_a"},{"role":"user","content":"second"}]}"#;
    let parsed = parse_request(body).unwrap();
    assert_eq!(parsed.previous_response_id(), Some("resp_1"));
    assert_eq!(parsed.item_references().collect::<Vec<_>>(), ["msg_a"]);
    let t = parsed.translate(&history, &[]).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&t.chat_body).unwrap();
    let texts: Vec<&str> =
        body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(texts, ["first", "first", "second"], "history, then the referenced item, then the new input");
    assert_eq!(t.input_items.len(), 2, "the referenced item is part of this input");
}

#[test]
fn allowed_tools_are_enforced_by_offering_only_them() {
    let body = chat(
        r#"{"model":"m","input":"hi","tools":[{"type":"function","name":"a"},{"type":"function","name":"b"}],
            "tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"b"}]}}"#,
    );
    assert_eq!(body["tools"], json!([{"type": "function", "function": {"name": "b"}}]));
    assert!(body.get("tool_choice").is_none(), "auto is the chat default");
}

#[test]
fn unknown_fields_and_reasoning_items_are_dropped() {
    let t = translate_request(
        br#"{"model":"m","include":["reasoning.encrypted_content"],"service_tier":"flex","future":{"x":1},
             "input":[{"type":"reasoning","id":"rs_1","summary":[]},{"role":"user","content":"hi"}]}"#,
        &[],
    )
    .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&t.chat_body).unwrap();
    assert_eq!(body, json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(t.input_items.len(), 1);
}

#[test]
fn sampling_options_are_forwarded_and_echoed_with_defaults() {
    let t = translate_request(
        br#"{"model":"m","input":"hi","max_output_tokens":50,"temperature":0,"parallel_tool_calls":false,
             "reasoning":{"effort":"high"},"metadata":{"k":"v"},"store":false}"#,
        &[],
    )
    .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&t.chat_body).unwrap();
    assert_eq!(
        (&body["max_tokens"], &body["temperature"], &body["parallel_tool_calls"], &body["reasoning_effort"]),
        (&json!(50), &json!(0.0), &json!(false), &json!("high"))
    );
    assert!(!t.store() && t.echo.metadata["k"] == "v" && !t.echo.parallel_tool_calls);
    assert_eq!(t.echo.temperature, 0.0);
    let defaults = translate_request(br#"{"model":"m","input":"hi"}"#, &[]).unwrap();
    assert!(defaults.store() && defaults.echo.parallel_tool_calls && defaults.echo.truncation == "disabled");
    let e = &defaults.echo;
    assert_eq!((e.temperature, e.top_p, e.presence_penalty, e.frequency_penalty), (1.0, 1.0, 0.0, 0.0));
    let body: serde_json::Value = serde_json::from_slice(&defaults.chat_body).unwrap();
    assert!(body.get("temperature").is_none() && body.get("top_p").is_none(), "defaults stay the upstream's");
}

#[test]
fn generated_ids_are_unique_and_given_ones_kept() {
    let t = translate_request(
        br#"{"model":"m","input":[{"role":"user","content":"a"},{"role":"user","content":"b"},
             {"type":"function_call","id":"fc_mine","call_id":"c","name":"f","arguments":"{}"}]}"#,
        &[],
    )
    .unwrap();
    let ids: Vec<&str> = t.input_items.iter().map(Item::id).collect();
    assert!(ids[0].starts_with("msg_") && ids[1].starts_with("msg_") && ids[0] != ids[1]);
    assert_eq!(ids[2], "fc_mine");
}

#[test]
fn only_instructions_still_make_a_request_but_nothing_at_all_does_not() {
    assert!(translate_request(br#"{"model":"m","instructions":"Say hi."}"#, &[]).is_ok());
    let err = translate_request(br#"{"model":"m","input":[]}"#, &[]).unwrap_err();
    assert_eq!((err.code(), err.param()), ("missing_required_parameter", Some("input")));
}

#[test]
fn errors_say_what_and_where_as_openai_does() {
    let err = translate_request(
        br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":1}]}]}"#,
        &[],
    )
    .unwrap_err();
    assert_eq!(err, ResponsesError::invalid_type("input[0].content[0].text", "a string"));
    assert_eq!(err.to_string(), "Invalid type for 'input[0].content[0].text': expected a string.");
    assert_eq!((err.status().as_u16(), err.error_type()), (400, "invalid_request_error"));
    let err =
        translate_request(br#"{"model":"m","input":"hi","tools":[{"type":"code_interpreter"}]}"#, &[]).unwrap_err();
    assert!(err.to_string().contains("a built-in tool the gateway cannot run"), "{err}");
}
