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

/// The fixed parts of one item's delta events, serialised once when the
/// part or call opens: each delta then costs one escaped string, not a whole
/// event (byte for byte what [`emit`] writes for [`Delta`] / [`ArgumentsDelta`]).
#[derive(Debug)]
pub(crate) struct DeltaShape {
    kind: &'static str,
    /// `,"item_id":..,"output_index":..[,"content_index":..],"delta":`
    head: Vec<u8>,
    /// `,"logprobs":[]}` or `}`
    tail: &'static [u8],
}

impl DeltaShape {
    /// A text or refusal part's deltas.
    pub(crate) fn text(
        kind: &'static str,
        item_id: &str,
        output_index: usize,
        content_index: usize,
        logprobs: bool,
    ) -> Self {
        let head = format!(
            ",\"item_id\":{},\"output_index\":{output_index},\"content_index\":{content_index},\"delta\":",
            serde_json::to_string(item_id).expect("a string serialises")
        );
        DeltaShape { kind, head: head.into_bytes(), tail: if logprobs { b",\"logprobs\":[]}" } else { b"}" } }
    }

    /// A function call's argument deltas.
    pub(crate) fn arguments(item_id: &str, output_index: usize) -> Self {
        let head = format!(
            ",\"item_id\":{},\"output_index\":{output_index},\"delta\":",
            serde_json::to_string(item_id).expect("a string serialises")
        );
        DeltaShape { kind: "response.function_call_arguments.delta", head: head.into_bytes(), tail: b"}" }
    }

    pub(crate) fn emit(&self, seq: &mut u64, delta: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(&self.head);
        serde_json::to_writer(&mut *out, delta).expect("a string serialises");
        out.extend_from_slice(self.tail);
        out.extend_from_slice(b"\n\n");
        *seq += 1;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed shapes [`DeltaShape`] stands in for.
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
    pub(crate) struct ArgumentsDelta<'a> {
        pub(crate) item_id: &'a str,
        pub(crate) output_index: usize,
        pub(crate) delta: &'a str,
    }

    #[test]
    fn delta_shapes_write_what_emit_writes() {
        for (refusal, content_index) in [(false, 0), (true, 1)] {
            let kind = if refusal { "response.refusal.delta" } else { "response.output_text.delta" };
            let (mut a, mut b, mut seq_a, mut seq_b) = (Vec::new(), Vec::new(), 7, 7);
            let delta = "quote \" tab \t émoji 🙂 \u{2028}";
            let logprobs = (!refusal).then_some(Empty);
            emit(
                &mut seq_a,
                kind,
                &Delta { item_id: "msg_1", output_index: 2, content_index, delta, logprobs },
                &mut a,
            );
            DeltaShape::text(kind, "msg_1", 2, content_index, !refusal).emit(&mut seq_b, delta, &mut b);
            assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            assert_eq!(seq_a, seq_b);
        }
        let (mut a, mut b, mut seq_a, mut seq_b) = (Vec::new(), Vec::new(), 0, 0);
        let kind = "response.function_call_arguments.delta";
        emit(&mut seq_a, kind, &ArgumentsDelta { item_id: "fc_1", output_index: 1, delta: "{\"a\":" }, &mut a);
        DeltaShape::arguments("fc_1", 1).emit(&mut seq_b, "{\"a\":", &mut b);
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
    }
}
