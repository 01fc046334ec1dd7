//! The parts of a chat-completions answer the translation reads: a whole
//! completion, or one stream chunk. Borrowed structs (strings without
//! escapes are slices of the input) that skip everything else: no tree of
//! values, and a chunk's other top-level fields are not parsed at all.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

use crate::json::{find_fields, is_null};

use super::response::{IncompleteReason, ResponseUsage};

#[derive(Deserialize)]
pub(crate) struct Completion<'a> {
    #[serde(borrow, default)]
    pub choices: Vec<Choice<'a>>,
    pub usage: Option<ChatUsage>,
    #[serde(borrow)]
    pub error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct Choice<'a> {
    #[serde(borrow)]
    pub message: Option<AnswerMessage<'a>>,
    #[serde(borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
pub(crate) struct AnswerMessage<'a> {
    #[serde(borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
}

/// A tool call, whole (in a completion) or a piece of one (in a chunk).
#[derive(Deserialize)]
pub(crate) struct ToolCall<'a> {
    /// The call's position among the answer's calls (chunks only).
    pub index: Option<u32>,
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub function: Option<FunctionPiece<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct FunctionPiece<'a> {
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub arguments: Option<Cow<'a, str>>,
}

pub(crate) struct Chunk<'a> {
    pub choices: Vec<ChunkChoice<'a>>,
    pub usage: Option<ChatUsage>,
    /// Some upstreams report a failure mid-stream as a chunk with `error`.
    pub error: Option<ErrorBody<'a>>,
}

impl<'a> Chunk<'a> {
    /// Parses `choices`, `usage` and `error` only: the top-level scanner
    /// skips the rest (`id`, `model`, `system_fingerprint`, ...) unread,
    /// which halves the cost of a chunk against parsing it whole.
    pub fn parse(raw: &'a [u8]) -> Result<Chunk<'a>, String> {
        let [choices, usage, error] = find_fields(raw, ["choices", "usage", "error"]).map_err(|e| e.to_string())?;
        fn field<'a, T: Deserialize<'a>>(raw: &'a [u8], at: Option<Range<usize>>) -> Result<Option<T>, String> {
            let value = at.map(|r| &raw[r]).filter(|v| !is_null(v));
            value.map(serde_json::from_slice).transpose().map_err(|e| e.to_string())
        }
        Ok(Chunk {
            choices: field(raw, choices)?.unwrap_or_default(),
            usage: field(raw, usage)?,
            error: field(raw, error)?,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct ChunkChoice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow)]
    pub delta: Option<Delta<'a>>,
    #[serde(borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(crate) struct Delta<'a> {
    #[serde(borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(borrow)]
    pub message: Option<Cow<'a, str>>,
}

impl ErrorBody<'_> {
    pub fn message(&self) -> String {
        format!("the upstream reported an error: {}", self.message.as_deref().unwrap_or("(no message)"))
    }
}

#[derive(Deserialize)]
pub(crate) struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    total_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl ChatUsage {
    pub fn to_response(&self) -> ResponseUsage {
        let mut usage = ResponseUsage::new(self.prompt_tokens, self.completion_tokens);
        usage.total_tokens = self.total_tokens.unwrap_or(usage.total_tokens);
        usage.input_tokens_details.cached_tokens =
            self.prompt_tokens_details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0);
        usage.output_tokens_details.reasoning_tokens =
            self.completion_tokens_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0);
        usage
    }
}

/// Why the response is incomplete, from a chat `finish_reason`: `length` is
/// the token budget, `content_filter` the upstream's filter; every other
/// reason (`stop`, `tool_calls`, an upstream's own) completed the answer.
pub(crate) fn incomplete_reason(finish_reason: Option<&str>) -> Option<IncompleteReason> {
    match finish_reason {
        Some("length") => Some(IncompleteReason::MaxOutputTokens),
        Some("content_filter") => Some(IncompleteReason::ContentFilter),
        _ => None,
    }
}
