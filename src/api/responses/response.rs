//! The Response object: built from a whole chat completion
//! ([`response_from_chat`]), for a failure ([`failed_response`]), or by the
//! stream as it goes ([`super::ResponsesStream`]).
//!
//! It carries every field the Open Responses `ResponseResource` requires, so
//! strict clients find them all: the request's settings or the API's
//! defaults ([`Echo`]), `null` where the schema allows it and there is
//! nothing to say, and a fixed value for what this gateway never does
//! (`background: false`, `service_tier: "default"`). There is no
//! `output_text`: neither OpenAI's object nor the Open Responses schema has
//! one; it is a convenience the SDKs compute from `output` (the Python SDK's
//! property ignores a field of that name, the AI SDK reads only `output`).

use serde::Serialize;

use super::echo::Echo;
use super::items::{self, FunctionCall, Item, ItemStatus, Message, Part, Role};
use super::ResponsesError;
use crate::pipeline::answer::{AnswerError, ChatUsage, WholeAnswer};

/// What the caller knows of a response before the upstream answers.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// `resp_…`, unique; output item ids are derived from it.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model the client asked for (the agent id), as every answer says.
    pub model: String,
    pub echo: Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IncompleteDetails {
    pub reason: IncompleteReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncompleteReason {
    MaxOutputTokens,
    ContentFilter,
}

/// The `code` of a failed response. The SDKs validate it against the API's
/// closed list, so the gateway's own codes (`upstream_timeout`, ...) cannot
/// go here; its message says what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The upstream failed, timed out or sent garbage.
    ServerError,
    /// The upstream refused for load after the gateway's retries.
    RateLimitExceeded,
    /// The upstream refused the prompt.
    InvalidPrompt,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::ServerError => "server_error",
            FailureCode::RateLimitExceeded => "rate_limit_exceeded",
            FailureCode::InvalidPrompt => "invalid_prompt",
        }
    }

    /// The Open Responses error type.
    pub fn error_type(self) -> &'static str {
        match self {
            FailureCode::ServerError => "server_error",
            FailureCode::RateLimitExceeded => "too_many_requests",
            FailureCode::InvalidPrompt => "invalid_request",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseError {
    pub code: FailureCode,
    pub message: String,
    /// Required by the AI SDK's schema of a failed (non-stream) response.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
}

impl ResponseError {
    pub fn new(code: FailureCode, message: &str) -> ResponseError {
        ResponseError { code, message: message.to_owned(), kind: code.error_type(), param: None }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResponseUsage {
    pub input_tokens: u64,
    pub input_tokens_details: InputDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InputDetails {
    pub cached_tokens: u64,
    /// Required by the Python SDK; chat upstreams report no cache writes.
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutputDetails {
    pub reasoning_tokens: u64,
}

impl ResponseUsage {
    pub fn new(input_tokens: u64, output_tokens: u64) -> ResponseUsage {
        ResponseUsage { input_tokens, output_tokens, total_tokens: input_tokens + output_tokens, ..Default::default() }
    }
}

impl From<crate::usage::Usage> for ResponseUsage {
    fn from(usage: crate::usage::Usage) -> ResponseUsage {
        ResponseUsage::new(usage.prompt_tokens, usage.completion_tokens)
    }
}

/// A Responses API `response` object.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub id: String,
    object: &'static str,
    pub created_at: u64,
    pub status: Status,
    /// Unix seconds, once `completed`.
    pub completed_at: Option<u64>,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub model: String,
    pub output: Vec<Item>,
    pub usage: Option<ResponseUsage>,
    #[serde(flatten)]
    pub echo: Echo,
    #[serde(flatten)]
    fixed: Fixed,
}

/// Fields with one value at this gateway.
#[derive(Debug, Clone, Copy, Serialize)]
struct Fixed {
    background: bool,
    service_tier: &'static str,
    top_logprobs: u8,
    max_tool_calls: Option<u64>,
    safety_identifier: Option<&'static str>,
    prompt_cache_key: Option<&'static str>,
}

const FIXED: Fixed = Fixed {
    background: false,
    service_tier: "default",
    top_logprobs: 0,
    max_tool_calls: None,
    safety_identifier: None,
    prompt_cache_key: None,
};

impl Response {
    /// The response as it starts: `in_progress`, no output yet.
    pub fn in_progress(meta: ResponseMeta) -> Response {
        Response {
            id: meta.id,
            object: "response",
            created_at: meta.created_at,
            status: Status::InProgress,
            completed_at: None,
            error: None,
            incomplete_details: None,
            model: meta.model,
            output: Vec::new(),
            usage: None,
            echo: meta.echo,
            fixed: FIXED,
        }
    }

    /// Ends the response: `completed`, or `incomplete` for `reason` (then
    /// the last output item is the one cut short, as the spec requires).
    pub(crate) fn end(&mut self, reason: Option<IncompleteReason>, completed_at: u64) {
        match reason {
            None => {
                self.status = Status::Completed;
                self.completed_at = Some(completed_at);
            }
            Some(reason) => {
                self.status = Status::Incomplete;
                self.incomplete_details = Some(IncompleteDetails { reason });
                if let Some(last) = self.output.last_mut() {
                    set_status(last, ItemStatus::Incomplete);
                }
            }
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a response always serialises")
    }

    /// The output items, for storing the turn.
    pub fn output(&self) -> &[Item] {
        &self.output
    }
}

pub(crate) fn set_status(item: &mut Item, status: ItemStatus) {
    match item {
        Item::Message(m) => m.status = status,
        Item::FunctionCall(c) => c.status = status,
        Item::FunctionCallOutput(o) => o.status = status,
    }
}

/// The Response for a whole (non-stream) chat completion, completed at
/// `completed_at` (Unix seconds).
pub fn response_from_chat(chat_json: &[u8], meta: ResponseMeta, completed_at: u64) -> Result<Response, ResponsesError> {
    let answer = WholeAnswer::parse(chat_json).map_err(upstream_error)?;
    let mut response = Response::in_progress(meta);
    let mut content = Vec::new();
    if let Some(text) = answer.text {
        content.push(Part::output_text(text.into_owned()));
    }
    if let Some(refusal) = answer.refusal {
        content.push(Part::Refusal { refusal: refusal.into_owned() });
    }
    if !content.is_empty() {
        let id = items::output_item_id("msg", &response.id, 0);
        let status = ItemStatus::Completed;
        response.output.push(Item::Message(Message { id, role: Role::Assistant, status, content }));
    }
    for call in answer.tool_calls {
        let id = items::output_item_id("fc", &response.id, response.output.len());
        let function = call.function;
        let (name, arguments) = function.map_or((None, None), |f| (f.name, f.arguments));
        response.output.push(Item::FunctionCall(FunctionCall {
            id,
            call_id: call.id.map_or_else(items::new_call_id, |id| id.into_owned()),
            name: name.unwrap_or_default().into_owned(),
            arguments: arguments.unwrap_or_default().into_owned(),
            status: ItemStatus::Completed,
        }));
    }
    response.usage = answer.usage.map(|u| usage_of(&u));
    response.end(incomplete_reason(answer.finish_reason.as_deref()), completed_at);
    Ok(response)
}

/// The chat answer could not be read: the upstream's fault (502).
pub(crate) fn upstream_error(e: AnswerError) -> ResponsesError {
    ResponsesError::Upstream(e.to_string())
}

/// The Responses form of a chat answer's usage.
pub(crate) fn usage_of(usage: &ChatUsage) -> ResponseUsage {
    let mut out = ResponseUsage::new(usage.prompt_tokens, usage.completion_tokens);
    out.total_tokens = usage.total_tokens.unwrap_or(out.total_tokens);
    out.input_tokens_details.cached_tokens = usage.cached_tokens();
    out.output_tokens_details.reasoning_tokens = usage.reasoning_tokens();
    out
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

/// A `failed` Response: the upstream could not answer.
pub fn failed_response(meta: ResponseMeta, code: FailureCode, message: &str) -> Response {
    let mut response = Response::in_progress(meta);
    response.status = Status::Failed;
    response.error = Some(ResponseError::new(code, message));
    response
}
