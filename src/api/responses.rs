//! The OpenAI Responses API (`POST /v1/responses`) as a translation onto
//! chat completions: pure functions, no HTTP, so the route can run every
//! Responses request through the same pipeline as `/v1/chat/completions`
//! (resolve, rewrite, limits, upstream, relay) and turn the chat answer back.
//!
//! | step | function | what it does |
//! |---|---|---|
//! | request | [`parse_request`] → [`ParsedRequest::translate`] (or [`translate_request`]) | Responses body → chat body, the normalized input items, the [`Echo`] |
//! | whole answer | [`response_from_chat`], [`failed_response`] | chat completion JSON → [`Response`] |
//! | stream | [`ResponsesStream`] | chat chunks in, Responses SSE events out, as they arrive |
//!
//! The wire formats followed are the [Open Responses specification]
//! (openresponses.org) and OpenAI's Responses API reference; every object and
//! event is checked against the two clients that must accept it, the Vercel AI
//! SDK's `@ai-sdk/openai` schemas and the `openai` Python SDK's types
//! (`tests/responses_sdk.rs`).
//!
//! ## The request
//! Translated: `model` (kept: an agent id or alias, resolved by the pipeline);
//! `input` (a string, or items: `message`, `function_call`,
//! `function_call_output`, `item_reference`; content parts `input_text`,
//! `input_image` by URL, `input_file` inline, `output_text`, `refusal`;
//! history first, as `previous_response_id` asks; each `item_reference`
//! replaced by the item of its id, from that history or else from the items
//! the caller loaded from its stored responses — an id in neither is a 400 on
//! its `input[i].id`); `instructions` (a leading
//! `system` message); function `tools`; `tool_choice` (including
//! `allowed_tools`, enforced by sending only the allowed tools); `text.format`
//! → `response_format`; `reasoning.effort` → `reasoning_effort`;
//! `max_output_tokens` → `max_tokens`; `temperature`, `top_p`,
//! `presence_penalty`, `frequency_penalty`, `parallel_tool_calls`, `user`;
//! `stream` (with `stream_options.include_usage`, so streams carry usage).
//!
//! Kept for the Response object, not sent upstream: `metadata` (validated as
//! OpenAI does: at most 16 string pairs), `store`, `previous_response_id`,
//! `truncation` (the gateway never truncates), `reasoning.summary`.
//!
//! Refused with 400 and the field's path in `param`: built-in tools and tool
//! choices (the gateway runs no tools; a chat upstream cannot), file ids
//! (chat upstreams cannot fetch files), `background`, `conversation`, `prompt`,
//! unknown item and content types.
//!
//! Dropped: `reasoning` input items (chat upstreams accept no reasoning state
//! back), and every other top-level field (`include`, `service_tier`,
//! `stream_options`, `top_logprobs`, `max_tool_calls`, `prompt_cache_key`,
//! `safety_identifier`, ...), as OpenAI-compatible servers ignore what they do
//! not implement rather than fail clients that send their SDK's defaults.
//!
//! ## Items and state
//! [`Item`] is the normalized form of an input or output item (ids filled in,
//! string content made a list of parts), so a stored turn can be listed as
//! `input_items` and replayed as history after a `previous_response_id`.
//!
//! [Open Responses specification]: https://www.openresponses.org/specification

mod chat;
mod echo;
mod events;
mod input;
mod items;
mod request;
mod response;
mod stream;

#[cfg(test)]
mod tests;

pub use echo::{Echo, FunctionTool, Reasoning, TextConfig, TextFormat, ToolChoice};
pub use items::{Detail, Empty, FunctionCall, FunctionCallOutput, Item, ItemStatus, Message, Part, Role, ToolOutput};
pub use request::{parse_request, translate_request, ParsedRequest, Translated};
pub use response::{
    failed_response, response_from_chat, FailureCode, IncompleteReason, Response, ResponseError, ResponseMeta,
    ResponseUsage, Status,
};
pub use stream::ResponsesStream;

use crate::responses::ResponsesError;
