//! The Responses stream events, as they go on the wire: one SSE event each,
//! `event: <type>` and a `data:` line whose JSON starts with the same
//! `type` and the event's `sequence_number`.

use serde::Serialize;

use super::items::{Empty, Item, ItemStatus, Part, Role};
use super::response::{Response, ResponseError};

/// Writes one SSE event: `event: <kind>`, then the body with its `type` and
/// `sequence_number` first.
pub(crate) fn emit<T: Serialize>(seq: &mut u64, kind: &'static str, body: &T, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Event<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        sequence_number: u64,
        #[serde(flatten)]
        body: &'a T,
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let event = Event { kind, sequence_number: *seq, body };
    serde_json::to_writer(&mut *out, &event).expect("an event always serialises");
    out.extend_from_slice(b"\n\n");
    *seq += 1;
}

/// [`emit`] for an event whose one field besides `type` and
/// `sequence_number` is already serialised (`{"type":..,"sequence_number":..,"<field>":<json>}`,
/// byte for byte what [`emit`] writes).
pub(crate) fn emit_raw(seq: &mut u64, kind: &'static str, field: &'static str, json: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"sequence_number\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n\n");
    *seq += 1;
}

#[derive(Serialize)]
pub(crate) struct Snapshot<'a> {
    pub(crate) response: &'a Response,
}

/// An item as `output_item.added` shows it: open, nothing in it yet.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum View<'a> {
    Message { id: &'a str, role: Role, status: ItemStatus, content: Empty },
    FunctionCall { id: &'a str, call_id: &'a str, name: &'a str, arguments: &'a str, status: ItemStatus },
}

#[derive(Serialize)]
pub(crate) struct Added<'a> {
    pub(crate) output_index: usize,
    pub(crate) item: View<'a>,
}

#[derive(Serialize)]
pub(crate) struct Done<'a> {
    pub(crate) output_index: usize,
    pub(crate) item: &'a Item,
}

#[derive(Serialize)]
pub(crate) struct PartEvent<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) content_index: usize,
    pub(crate) part: &'a Part,
}

#[derive(Serialize)]
pub(crate) struct Delta<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) content_index: usize,
    pub(crate) delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logprobs: Option<Empty>,
}

#[derive(Serialize)]
pub(crate) struct TextDone<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) content_index: usize,
    pub(crate) text: &'a str,
    pub(crate) logprobs: Empty,
}

#[derive(Serialize)]
pub(crate) struct RefusalDone<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) content_index: usize,
    pub(crate) refusal: &'a str,
}

#[derive(Serialize)]
pub(crate) struct ArgumentsDelta<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) delta: &'a str,
}

#[derive(Serialize)]
pub(crate) struct ArgumentsDone<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) name: &'a str,
    pub(crate) arguments: &'a str,
}

/// OpenAI's `error` event has `code`, `message` and `param` at the top; the
/// Open Responses spec nests them in `error`. Both are sent, so the event
/// validates as either, and the Python SDK raises it as an `APIError`.
#[derive(Serialize)]
pub(crate) struct ErrorEvent<'a> {
    pub(crate) code: &'static str,
    pub(crate) message: &'a str,
    pub(crate) param: Option<&'a str>,
    pub(crate) error: &'a ResponseError,
}
