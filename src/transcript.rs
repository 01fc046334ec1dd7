//! What a model answered, captured for `ai_message` and `tool.invoked`
//! events: the assistant's text (bounded) and the tool calls it made.
//!
//! Only the `choices` member of an answer (or of each stream chunk) is parsed,
//! and only when events are on; the relay forwards the bytes unchanged.

use serde::Deserialize;

/// The most assistant text kept for an `ai_message` event.
pub const MAX_CONTENT: usize = 32 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    pub content: String,
    /// The content went past [`MAX_CONTENT`] and was cut.
    pub truncated: bool,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, alias = "delta")]
    message: Option<Message<'a>>,
    #[serde(borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall<'a>>,
}

#[derive(Deserialize)]
struct WireToolCall<'a> {
    /// Stream deltas say which call they continue; a whole answer's calls
    /// have no index and are taken in order.
    index: Option<usize>,
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
}

impl Transcript {
    /// Adds a `choices` array: a whole answer's, or one stream chunk's
    /// deltas (tool calls arrive in pieces: the id and name in the first,
    /// keyed by `index`). Only the first choice is the conversation's.
    pub fn add_choices(&mut self, choices: &[u8]) {
        let Ok(parsed) = serde_json::from_slice::<Vec<Choice<'_>>>(choices) else { return };
        let Some(first) = parsed.into_iter().next() else { return };
        if let Some(reason) = first.finish_reason {
            self.finish_reason = Some(reason.into_owned());
        }
        let Some(message) = first.message else { return };
        if let Some(text) = message.content {
            let room = MAX_CONTENT.saturating_sub(self.content.len());
            if text.len() > room {
                let mut cut = room;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                self.content.push_str(&text[..cut]);
                self.truncated = true;
            } else {
                self.content.push_str(&text);
            }
        }
        for (position, call) in message.tool_calls.into_iter().enumerate() {
            let index = call.index.unwrap_or(position);
            if index >= 128 {
                continue;
            }
            if self.tool_calls.len() <= index {
                self.tool_calls.resize(index + 1, ToolCall::default());
            }
            let slot = &mut self.tool_calls[index];
            if let Some(id) = call.id.filter(|id| !id.is_empty()) {
                slot.id = id.into_owned();
            }
            if let Some(name) = call.function.and_then(|f| f.name).filter(|n| !n.is_empty()) {
                slot.name.push_str(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_text_and_tool_calls_from_an_answer_and_from_deltas() {
        let mut t = Transcript::default();
        t.add_choices(br#"[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}},{"id":"call_2","type":"function","function":{"name":"send","arguments":"{}"}}]},"finish_reason":"tool_calls"}]"#);
        assert_eq!(t.content, "hi");
        assert_eq!(
            t.tool_calls,
            [
                ToolCall { id: "call_1".into(), name: "get_weather".into() },
                ToolCall { id: "call_2".into(), name: "send".into() }
            ],
            "a whole answer's calls carry no index: one per position"
        );
        assert_eq!(t.finish_reason.as_deref(), Some("tool_calls"));

        let mut s = Transcript::default();
        for chunk in [
            r#"[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]"#,
            r#"[{"index":0,"delta":{"content":"lo"}}]"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"lookup","arguments":""}}]}}]"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":1}"}}]}}]"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"send"}}]}}]"#,
            r#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#,
            r#"[]"#,
            r#"not json"#,
        ] {
            s.add_choices(chunk.as_bytes());
        }
        assert_eq!(s.content, "Hello");
        assert_eq!(s.tool_calls.len(), 2);
        assert_eq!((s.tool_calls[0].id.as_str(), s.tool_calls[0].name.as_str()), ("call_a", "lookup"));
        assert_eq!((s.tool_calls[1].id.as_str(), s.tool_calls[1].name.as_str()), ("call_b", "send"));
    }

    #[test]
    fn content_is_bounded_on_a_char_boundary() {
        let mut t = Transcript::default();
        let long = "é".repeat(MAX_CONTENT);
        t.add_choices(format!(r#"[{{"message":{{"content":"{long}"}}}}]"#).as_bytes());
        assert!(t.truncated && t.content.len() <= MAX_CONTENT && t.content.chars().all(|c| c == 'é'));
    }
}
