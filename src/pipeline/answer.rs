//! A chat-completions answer read back as typed values, for front doors that
//! speak another dialect (the Responses API; later sessions, `/v1/chat` and
//! scheduled runs): a whole completion as a [`WholeAnswer`], a stream chunk as
//! its [`AnswerEvent`]s — text, refusal and tool-call pieces, the finish
//! reason, usage. Only the first choice is read: a door asks for one answer.
//!
//! Borrowed structs (strings without escapes are slices of the input) that
//! skip everything else: no tree of values, and a chunk's other top-level
//! fields (`id`, `model`, `system_fingerprint`, ...) are not parsed at all.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

use crate::json::{find_fields, is_null};

/// Why an answer could not be read: the upstream's garbage, or the failure
/// it reported in the answer itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("{0}")]
    Unreadable(String),
    #[error("the upstream reported an error: {0}")]
    Reported(String),
    #[error("the answer has no choices")]
    NoChoices,
}

/// A whole chat completion's first choice.
#[derive(Debug, Default)]
pub struct WholeAnswer<'a> {
    pub text: Option<Cow<'a, str>>,
    pub refusal: Option<Cow<'a, str>>,
    pub tool_calls: Vec<ToolCall<'a>>,
    pub finish_reason: Option<Cow<'a, str>>,
    pub usage: Option<ChatUsage>,
}

impl<'a> WholeAnswer<'a> {
    pub fn parse(json: &'a [u8]) -> Result<WholeAnswer<'a>, AnswerError> {
        let completion: Completion<'a> =
            serde_json::from_slice(json).map_err(|e| AnswerError::Unreadable(e.to_string()))?;
        if let Some(error) = completion.error {
            return Err(error.into());
        }
        let choice = completion.choices.into_iter().next().ok_or(AnswerError::NoChoices)?;
        let message = choice.message.unwrap_or_default();
        Ok(WholeAnswer {
            text: message.content.filter(|t| !t.is_empty()),
            refusal: message.refusal.filter(|r| !r.is_empty()),
            tool_calls: message.tool_calls.unwrap_or_default(),
            finish_reason: choice.finish_reason,
            usage: completion.usage,
        })
    }
}

/// What one stream chunk says, in order.
#[derive(Debug)]
pub enum AnswerEvent<'a> {
    /// More of the answer's text (never empty).
    Text(Cow<'a, str>),
    /// More of a refusal (never empty).
    Refusal(Cow<'a, str>),
    /// A piece of a tool call: its index, id and name come with the first
    /// piece, the arguments in pieces.
    ToolCall(ToolCall<'a>),
    /// Why the answer ended (`stop`, `length`, `tool_calls`, ...).
    Finish(Cow<'a, str>),
    /// The usage chunk.
    Usage(ChatUsage),
}

/// The events of one chunk (the payload of a `data:` line other than
/// `[DONE]`), first choice only.
pub fn chunk_events(raw: &[u8]) -> Result<Vec<AnswerEvent<'_>>, AnswerError> {
    let [choices, usage, error] =
        find_fields(raw, ["choices", "usage", "error"]).map_err(|e| AnswerError::Unreadable(e.to_string()))?;
    fn field<'a, T: Deserialize<'a>>(raw: &'a [u8], at: Option<Range<usize>>) -> Result<Option<T>, AnswerError> {
        let value = at.map(|r| &raw[r]).filter(|v| !is_null(v));
        value.map(serde_json::from_slice).transpose().map_err(|e| AnswerError::Unreadable(e.to_string()))
    }
    if let Some(error) = field::<ErrorBody<'_>>(raw, error)? {
        return Err(error.into());
    }
    let mut events = Vec::new();
    let choices: Vec<ChunkChoice<'_>> = field(raw, choices)?.unwrap_or_default();
    // One answer is asked for; a chat upstream sends it as index 0.
    for choice in choices.into_iter().filter(|c| c.index == 0) {
        if let Some(delta) = choice.delta {
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                events.push(AnswerEvent::Text(text));
            }
            if let Some(refusal) = delta.refusal.filter(|t| !t.is_empty()) {
                events.push(AnswerEvent::Refusal(refusal));
            }
            events.extend(delta.tool_calls.unwrap_or_default().into_iter().map(AnswerEvent::ToolCall));
        }
        if let Some(reason) = choice.finish_reason {
            events.push(AnswerEvent::Finish(reason));
        }
    }
    if let Some(usage) = field(raw, usage)? {
        events.push(AnswerEvent::Usage(usage));
    }
    Ok(events)
}

/// A tool call, whole (in a completion) or a piece of one (in a chunk).
#[derive(Debug, Deserialize)]
pub struct ToolCall<'a> {
    /// The call's position among the answer's calls (chunks only).
    pub index: Option<u32>,
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub function: Option<FunctionPiece<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionPiece<'a> {
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub arguments: Option<Cow<'a, str>>,
}

/// The upstream's token counts.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    pub total_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

impl ChatUsage {
    /// Prompt tokens served from the provider's cache.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0)
    }

    /// Completion tokens spent reasoning.
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    usage: Option<ChatUsage>,
    #[serde(borrow)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    message: Option<Message<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

/// A whole answer's `message` and a chunk's `delta` carry the same fields.
#[derive(Deserialize, Default)]
struct Message<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow)]
    delta: Option<Message<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

/// Some upstreams report a failure in an answer or a chunk with `error`.
#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

impl From<ErrorBody<'_>> for AnswerError {
    fn from(e: ErrorBody<'_>) -> Self {
        AnswerError::Reported(e.message.as_deref().unwrap_or("(no message)").to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_reads_as_its_events_in_order() {
        let raw = br#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi","tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{"}}]},"finish_reason":"tool_calls"},{"index":1,"delta":{"content":"other"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}}"#;
        let events = chunk_events(raw).unwrap();
        assert!(matches!(&events[0], AnswerEvent::Text(t) if t == "Hi"));
        assert!(matches!(&events[1], AnswerEvent::ToolCall(c) if c.id.as_deref() == Some("call_1")));
        assert!(matches!(&events[2], AnswerEvent::Finish(r) if r == "tool_calls"));
        assert!(matches!(&events[3], AnswerEvent::Usage(u) if u.prompt_tokens == 3 && u.cached_tokens() == 1));
        assert_eq!(events.len(), 4, "only the first choice is read");
        assert!(chunk_events(br#"{"choices":[{"index":0,"delta":{"content":""}}]}"#).unwrap().is_empty());
        assert_eq!(
            chunk_events(br#"{"error":{"message":"overloaded"}}"#).unwrap_err(),
            AnswerError::Reported("overloaded".into())
        );
        assert!(matches!(chunk_events(b"<html>"), Err(AnswerError::Unreadable(_))));
    }

    #[test]
    fn a_whole_answer_is_its_first_choice() {
        let raw = br#"{"choices":[{"message":{"content":"Hello","tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#;
        let a = WholeAnswer::parse(raw).unwrap();
        assert_eq!((a.text.as_deref(), a.finish_reason.as_deref()), (Some("Hello"), Some("stop")));
        assert_eq!(a.tool_calls.len(), 1);
        assert_eq!(a.usage.map(|u| u.completion_tokens), Some(1));
        assert_eq!(WholeAnswer::parse(br#"{"choices":[]}"#).unwrap_err(), AnswerError::NoChoices);
        assert_eq!(
            WholeAnswer::parse(br#"{"error":{}}"#).unwrap_err().to_string(),
            "the upstream reported an error: (no message)"
        );
    }
}
