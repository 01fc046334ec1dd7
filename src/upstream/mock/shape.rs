//! What the built-in mock answers besides an echo: a tool call when the
//! request offers function tools, and JSON that fits a requested schema — so
//! SDK tool loops and structured outputs can be tried against the demo agent
//! with no provider key.
//!
//! The rules, deterministic:
//! - `tools` with at least one function, `tool_choice` not `"none"`, and the
//!   last message from the user (not a tool result): one call to the function
//!   `tool_choice` names, else the first one, with arguments made from its
//!   `parameters` schema ([`example`]), `finish_reason: "tool_calls"`;
//! - the last message is a tool result: the answer echoes that result;
//! - `response_format` `json_schema`: the answer is [`example`] of the schema,
//!   `json_object`: `{"answer": <the echo>}`.

use serde_json::{json, Map, Value};

/// A tool call the mock makes.
pub struct ToolCall {
    pub name: String,
    pub arguments: String,
}

/// The call the request asks for under the rules above, if any.
pub fn tool_call(request: &Value, user_text: &str) -> Option<ToolCall> {
    let tools = request["tools"].as_array()?;
    let last_is_user = request["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m["role"] == "user");
    if !last_is_user || request["tool_choice"] == "none" {
        return None;
    }
    let functions = tools.iter().filter(|t| t["type"] == "function").map(|t| &t["function"]);
    let chosen = request["tool_choice"]["function"]["name"].as_str();
    let mut functions = functions.filter(|f| chosen.is_none_or(|name| f["name"] == name));
    let function = functions.next()?;
    let arguments = example(&function["parameters"], user_text);
    Some(ToolCall { name: function["name"].as_str()?.to_owned(), arguments: arguments.to_string() })
}

/// The text of the newest tool result, when the conversation ends with one.
pub fn tool_result(request: &Value) -> Option<String> {
    let last = request["messages"].as_array()?.last()?;
    (last["role"] == "tool").then(|| super::text_of(&last["content"]))
}

/// The answer text under `response_format`, replacing the echo.
pub fn formatted(request: &Value, echo: &str) -> Option<String> {
    let format = &request["response_format"];
    match format["type"].as_str()? {
        "json_schema" => Some(example(&format["json_schema"]["schema"], echo).to_string()),
        "json_object" => Some(json!({ "answer": echo }).to_string()),
        _ => None,
    }
}

/// A value that fits `schema` (the subset SDKs send: object, array, string,
/// number, integer, boolean, enum, const), strings filled with `text`.
pub fn example(schema: &Value, text: &str) -> Value {
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(first) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()).and_then(|a| a.first()) {
        return example(first, text);
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.iter().find(|k| *k != "null").and_then(Value::as_str).unwrap_or("null"),
        kind => kind.as_str().unwrap_or(if schema.get("properties").is_some() { "object" } else { "string" }),
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    out.insert(name.clone(), example(property, text));
                }
            }
            Value::Object(out)
        }
        "array" => Value::Array(vec![example(&schema["items"], text)]),
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_is_called_with_arguments_that_fit_its_schema() {
        let request = json!({
            "messages": [{"role": "user", "content": "Berlin"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city"]
            }}}]
        });
        let call = tool_call(&request, "Berlin").unwrap();
        assert_eq!(call.name, "weather");
        assert_eq!(
            serde_json::from_str::<Value>(&call.arguments).unwrap(),
            json!({"city": "Berlin", "days": 1, "unit": "c"})
        );

        let mut after = request.clone();
        after["messages"] = json!([{"role": "user", "content": "x"}, {"role": "tool", "content": "sunny"}]);
        assert!(tool_call(&after, "x").is_none(), "a tool result is answered, not called again");
        assert_eq!(tool_result(&after).as_deref(), Some("sunny"));
        let mut none = request.clone();
        none["tool_choice"] = json!("none");
        assert!(tool_call(&none, "x").is_none());
    }

    #[test]
    fn structured_outputs_fit_the_schema() {
        let request = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
            "type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}
        }}}});
        assert_eq!(formatted(&request, "hi").unwrap(), r#"{"name":"hi","tags":["hi"]}"#);
    }
}
