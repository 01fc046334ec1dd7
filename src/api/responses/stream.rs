//! A streamed Response, made from chat-completion chunks as they arrive.
//!
//! [`ResponsesStream`] is fed one chunk's JSON at a time and pushes the
//! Responses events each one makes, at once: the first text opens the
//! message item and its `output_text` part, a tool call's first piece with a
//! name opens a `function_call` item, and every delta goes out as its own
//! event. Items stay open until the upstream's `[DONE]`: chat may interleave
//! text and tool calls, and only the end says which item was cut short. At
//! the end every open item is closed in output order (`*.done`,
//! `content_part.done`, `output_item.done`), then `response.completed` or
//! `response.incomplete` carries the whole Response, then `data: [DONE]`,
//! the Open Responses terminator (both SDKs accept it).
//!
//! Events are written into one buffer per call: what one chunk makes goes to
//! the client as one frame (one write), not one allocation and frame per event.
//!
//! Each event is `event: <type>\ndata: <json>\n\n` with a `sequence_number`
//! counting from 0; the shapes are those the Open Responses spec, the AI
//! SDK's chunk schemas and the Python SDK's event types agree on (`logprobs`
//! is always present: the Python SDK requires it on text events).

use super::events::{
    emit, emit_raw, Added, ArgumentsDone, DeltaShape, Done, ErrorEvent, PartEvent, RefusalDone, Snapshot, TextDone,
    View,
};
use super::items::{self, Empty, FunctionCall, Item, ItemStatus, Message, Part, Role};
use super::response::{
    incomplete_reason, upstream_error, usage_of, FailureCode, Response, ResponseError, ResponseMeta, ResponseUsage,
    Status,
};
use super::ResponsesError;
use crate::pipeline::answer::{chunk_events, AnswerEvent, ToolCall};

/// The state of one streamed response.
pub struct ResponsesStream {
    response: Response,
    seq: u64,
    /// The output items announced so far, in output order.
    open: Vec<Open>,
    /// The message item's position in `open`, once text arrived.
    message: Option<usize>,
    /// The upstream's tool calls, in order of their first piece.
    calls: Vec<Call>,
    finish_reason: Option<String>,
    usage: Option<ResponseUsage>,
}

enum Open {
    Message { id: String, parts: Vec<OpenPart> },
    Call { id: String, call_id: String, name: String, arguments: String, deltas: DeltaShape },
}

struct OpenPart {
    refusal: bool,
    text: String,
    deltas: DeltaShape,
}

/// An upstream tool call, announced as an item once its name is known.
struct Call {
    index: Option<u32>,
    call_id: Option<String>,
    name: String,
    /// Arguments that came before the name (held until the item exists).
    early_arguments: String,
    /// Its item's position in `open`.
    item: Option<usize>,
}

impl ResponsesStream {
    pub fn new(meta: ResponseMeta) -> ResponsesStream {
        ResponsesStream {
            response: Response::in_progress(meta),
            seq: 0,
            open: Vec::new(),
            message: None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    /// `response.created` and `response.in_progress`: the same Response,
    /// serialised once for both.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        let response = serde_json::to_vec(&self.response).expect("a Response always serialises");
        for kind in ["response.created", "response.in_progress"] {
            emit_raw(&mut self.seq, kind, "response", &response, out);
        }
    }

    /// Usage from the upstream's usage chunk, once it went by.
    pub fn usage(&self) -> Option<ResponseUsage> {
        self.usage
    }

    /// One chunk: the payload of a `data:` line (`[DONE]` is ignored). An
    /// error is the upstream's garbage or its reported failure: [`fail`](Self::fail) then.
    pub fn push_chunk(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ResponsesError> {
        if chunk.trim_ascii() == b"[DONE]" {
            return Ok(());
        }
        for event in chunk_events(chunk).map_err(upstream_error)? {
            match event {
                AnswerEvent::Text(text) => self.text(false, &text, out),
                AnswerEvent::Refusal(refusal) => self.text(true, &refusal, out),
                AnswerEvent::ToolCall(call) => self.tool_call(call, out),
                AnswerEvent::Finish(reason) => self.finish_reason = Some(reason.into_owned()),
                AnswerEvent::Usage(usage) => self.usage = Some(usage_of(&usage)),
            }
        }
        Ok(())
    }

    fn text(&mut self, refusal: bool, delta: &str, out: &mut Vec<u8>) {
        let output_index = match self.message {
            Some(i) => i,
            None => {
                let i = self.open.len();
                let id = items::output_item_id("msg", &self.response.id, i);
                let item =
                    View::Message { id: &id, role: Role::Assistant, status: ItemStatus::InProgress, content: Empty };
                emit(&mut self.seq, "response.output_item.added", &Added { output_index: i, item }, out);
                self.open.push(Open::Message { id, parts: Vec::new() });
                self.message = Some(i);
                i
            }
        };
        let Open::Message { id, parts } = &mut self.open[output_index] else { unreachable!("the message slot") };
        let content_index = match parts.iter().position(|p| p.refusal == refusal) {
            Some(j) => j,
            None => {
                let part =
                    if refusal { Part::Refusal { refusal: String::new() } } else { Part::output_text(String::new()) };
                let event = PartEvent { item_id: id, output_index, content_index: parts.len(), part: &part };
                emit(&mut self.seq, "response.content_part.added", &event, out);
                let kind = if refusal { "response.refusal.delta" } else { "response.output_text.delta" };
                let deltas = DeltaShape::text(kind, id, output_index, parts.len(), !refusal);
                parts.push(OpenPart { refusal, text: String::new(), deltas });
                parts.len() - 1
            }
        };
        let part = &mut parts[content_index];
        part.text.push_str(delta);
        part.deltas.emit(&mut self.seq, delta, out);
    }

    fn tool_call(&mut self, piece: ToolCall<'_>, out: &mut Vec<u8>) {
        let at = self.find_call(piece.index, piece.id.as_deref());
        let call = &mut self.calls[at];
        if call.call_id.is_none() {
            call.call_id = piece.id.filter(|id| !id.is_empty()).map(|id| id.into_owned());
        }
        let (name, arguments) = piece.function.map_or((None, None), |f| (f.name, f.arguments));
        // The first name wins: some upstreams repeat it in later pieces.
        if call.item.is_none() && call.name.is_empty() {
            call.name = name.map(|n| n.into_owned()).unwrap_or_default();
        }
        let arguments = arguments.unwrap_or_default();
        if call.item.is_none() {
            call.early_arguments.push_str(&arguments);
            if !call.name.is_empty() {
                self.announce(at, out);
            }
        } else {
            self.arguments(at, &arguments, out);
        }
    }

    /// The call at chat `index`, else the one with `id`, else the latest
    /// (upstreams that send no index); a new one when none matches.
    fn find_call(&mut self, index: Option<u32>, id: Option<&str>) -> usize {
        let found = match (index, id.filter(|id| !id.is_empty())) {
            (Some(index), _) => self.calls.iter().position(|c| c.index == Some(index)),
            (None, Some(id)) => self.calls.iter().position(|c| c.call_id.as_deref() == Some(id)),
            (None, None) => self.calls.len().checked_sub(1),
        };
        found.unwrap_or_else(|| {
            let call = Call { index, call_id: None, name: String::new(), early_arguments: String::new(), item: None };
            self.calls.push(call);
            self.calls.len() - 1
        })
    }

    /// Opens the call's item, then sends the arguments that came before it.
    fn announce(&mut self, at: usize, out: &mut Vec<u8>) {
        let output_index = self.open.len();
        let call = &mut self.calls[at];
        call.item = Some(output_index);
        let id = items::output_item_id("fc", &self.response.id, output_index);
        let call_id = call.call_id.clone().unwrap_or_else(items::new_call_id);
        let name = std::mem::take(&mut call.name);
        let early = std::mem::take(&mut call.early_arguments);
        let item = View::FunctionCall {
            id: &id,
            call_id: &call_id,
            name: &name,
            arguments: "",
            status: ItemStatus::InProgress,
        };
        emit(&mut self.seq, "response.output_item.added", &Added { output_index, item }, out);
        let deltas = DeltaShape::arguments(&id, output_index);
        self.open.push(Open::Call { id, call_id, name, arguments: String::new(), deltas });
        self.arguments(at, &early, out);
    }

    fn arguments(&mut self, at: usize, delta: &str, out: &mut Vec<u8>) {
        let Some(output_index) = self.calls[at].item.filter(|_| !delta.is_empty()) else { return };
        let Open::Call { arguments, deltas, .. } = &mut self.open[output_index] else { unreachable!("a call slot") };
        arguments.push_str(delta);
        deltas.emit(&mut self.seq, delta, out);
    }

    /// The upstream's `[DONE]`: closes every item, then `response.completed`
    /// (or `response.incomplete` for a `length` or `content_filter` finish)
    /// with the whole Response, then `data: [DONE]`. `fallback_usage` stands
    /// in when the upstream sent no usage (the gateway's estimate).
    pub fn finish(mut self, completed_at: u64, fallback_usage: Option<ResponseUsage>, out: &mut Vec<u8>) -> Response {
        // A call whose name never came still gets its item: its arguments are output.
        for at in 0..self.calls.len() {
            if self.calls[at].item.is_none() {
                self.announce(at, out);
            }
        }
        let reason = incomplete_reason(self.finish_reason.as_deref());
        let last = self.open.len().saturating_sub(1);
        for (i, open) in std::mem::take(&mut self.open).into_iter().enumerate() {
            let status = if reason.is_some() && i == last { ItemStatus::Incomplete } else { ItemStatus::Completed };
            let item = self.close(i, open, status, out);
            emit(&mut self.seq, "response.output_item.done", &Done { output_index: i, item: &item }, out);
            self.response.output.push(item);
        }
        self.response.usage = self.usage.or(fallback_usage);
        self.response.end(reason, completed_at);
        let kind = if reason.is_some() { "response.incomplete" } else { "response.completed" };
        emit(&mut self.seq, kind, &Snapshot { response: &self.response }, out);
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.response
    }

    /// The `*.done` events of an item's content; the completed item.
    fn close(&mut self, output_index: usize, open: Open, status: ItemStatus, out: &mut Vec<u8>) -> Item {
        match open {
            Open::Message { id, parts } => {
                let mut content = Vec::with_capacity(parts.len());
                for (content_index, OpenPart { refusal, text, .. }) in parts.into_iter().enumerate() {
                    let item_id = id.as_str();
                    let part = if refusal {
                        let event = RefusalDone { item_id, output_index, content_index, refusal: &text };
                        emit(&mut self.seq, "response.refusal.done", &event, out);
                        Part::Refusal { refusal: text }
                    } else {
                        let event = TextDone { item_id, output_index, content_index, text: &text, logprobs: Empty };
                        emit(&mut self.seq, "response.output_text.done", &event, out);
                        Part::output_text(text)
                    };
                    let event = PartEvent { item_id, output_index, content_index, part: &part };
                    emit(&mut self.seq, "response.content_part.done", &event, out);
                    content.push(part);
                }
                Item::Message(Message { id, role: Role::Assistant, status, content })
            }
            Open::Call { id, call_id, name, arguments, .. } => {
                let event = ArgumentsDone { item_id: &id, output_index, name: &name, arguments: &arguments };
                emit(&mut self.seq, "response.function_call_arguments.done", &event, out);
                Item::FunctionCall(FunctionCall { id, call_id, name, arguments, status })
            }
        }
    }

    /// The upstream failed mid-stream: the `error` event, then
    /// `response.failed` with what arrived so far (items `incomplete`), then
    /// `data: [DONE]`.
    pub fn fail(
        mut self,
        code: FailureCode,
        message: &str,
        fallback_usage: Option<ResponseUsage>,
        out: &mut Vec<u8>,
    ) -> Response {
        let error = ResponseError::new(code, message);
        let event = ErrorEvent { code: code.as_str(), message, param: None, error: &error };
        emit(&mut self.seq, "error", &event, out);
        for open in std::mem::take(&mut self.open) {
            self.response.output.push(match open {
                Open::Message { id, parts } => {
                    let content = parts
                        .into_iter()
                        .map(|p| if p.refusal { Part::Refusal { refusal: p.text } } else { Part::output_text(p.text) })
                        .collect();
                    Item::Message(Message { id, role: Role::Assistant, status: ItemStatus::Incomplete, content })
                }
                Open::Call { id, call_id, name, arguments, .. } => {
                    Item::FunctionCall(FunctionCall { id, call_id, name, arguments, status: ItemStatus::Incomplete })
                }
            });
        }
        self.response.status = Status::Failed;
        self.response.error = Some(error);
        self.response.usage = self.usage.or(fallback_usage);
        emit(&mut self.seq, "response.failed", &Snapshot { response: &self.response }, out);
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.response
    }
}
