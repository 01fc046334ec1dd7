//! The normalized items of a conversation: what a request's input becomes and
//! what a response outputs, in the shapes OpenAI lists them (`input_items`,
//! `output`): every item has an `id` and a `status`, and message content is
//! always a list of parts. Serialisable both ways, so a turn can be stored and
//! read back as the history of a later `previous_response_id`.

use std::sync::LazyLock;

use serde::de::IgnoredAny;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::Sequence;

/// One input or output item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Message(Message),
    FunctionCall(FunctionCall),
    FunctionCallOutput(FunctionCallOutput),
}

impl Item {
    pub fn id(&self) -> &str {
        match self {
            Item::Message(m) => &m.id,
            Item::FunctionCall(c) => &c.id,
            Item::FunctionCallOutput(o) => &o.id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub role: Role,
    pub status: ItemStatus,
    pub content: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    System,
    Developer,
    Assistant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    InProgress,
    Completed,
    Incomplete,
}

/// A content part. User, system and developer messages hold `input_*`
/// parts; assistant messages `output_text` and `refusal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    InputText {
        text: String,
    },
    /// An image by URL (`https:` or a `data:` URL); file ids are refused at
    /// parse time, chat upstreams cannot resolve them.
    InputImage {
        image_url: String,
        detail: Detail,
    },
    /// An inline file (`file_data`, a base64 data URL), as chat's `file` part.
    InputFile {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
        file_data: String,
    },
    /// Model text. The gateway has no annotations or logprobs to offer; both
    /// are empty lists, which the SDKs require (`annotations`) or expect.
    OutputText {
        text: String,
        #[serde(default)]
        annotations: Empty,
        #[serde(default)]
        logprobs: Empty,
    },
    Refusal {
        refusal: String,
    },
}

impl Part {
    pub fn output_text(text: String) -> Part {
        Part::OutputText { text, annotations: Empty, logprobs: Empty }
    }
}

/// An image's `detail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Low,
    High,
    #[default]
    Auto,
    /// Full resolution (newer OpenAI models); chat's closest is `high`.
    Original,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub id: String,
    pub call_id: String,
    pub name: String,
    /// The arguments as the model wrote them: a JSON text, not parsed.
    pub arguments: String,
    pub status: ItemStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutput {
    pub id: String,
    pub call_id: String,
    pub output: ToolOutput,
    pub status: ItemStatus,
}

/// A function's result: a string, or text parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolOutput {
    Text(String),
    Parts(Vec<Part>),
}

/// A list that is always empty on the wire (`[]`); whatever a stored or
/// client-sent item holds there is ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Empty;

impl Serialize for Empty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_seq(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Empty)
    }
}

static MESSAGE_IDS: LazyLock<Sequence> = LazyLock::new(|| Sequence::new("msg"));
static CALL_IDS: LazyLock<Sequence> = LazyLock::new(|| Sequence::new("fc"));
static OUTPUT_IDS: LazyLock<Sequence> = LazyLock::new(|| Sequence::new("fco"));
static TOOL_CALL_IDS: LazyLock<Sequence> = LazyLock::new(|| Sequence::new("call"));

/// Ids for input items sent without one (`msg_`, `fc_`, `fco_` + 24 hex).
pub(crate) fn new_message_id() -> String {
    MESSAGE_IDS.next()
}

pub(crate) fn new_call_item_id() -> String {
    CALL_IDS.next()
}

pub(crate) fn new_output_item_id() -> String {
    OUTPUT_IDS.next()
}

/// A `call_id` for an upstream tool call that came without one.
pub(crate) fn new_call_id() -> String {
    TOOL_CALL_IDS.next()
}

/// The id of a response's `index`-th output item: derived from the
/// response's own (unique) id, so it is unique without shared state and the
/// same for the stream and the object it ends with.
pub(crate) fn output_item_id(kind: &str, response_id: &str, index: usize) -> String {
    let unique = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{kind}_{unique}_{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_in_openai_shapes() {
        let items = vec![
            Item::Message(Message {
                id: "msg_1".into(),
                role: Role::Assistant,
                status: ItemStatus::Completed,
                content: vec![Part::output_text("hi".into())],
            }),
            Item::FunctionCallOutput(FunctionCallOutput {
                id: "fco_1".into(),
                call_id: "call_1".into(),
                output: ToolOutput::Parts(vec![Part::InputText { text: "42".into() }]),
                status: ItemStatus::Completed,
            }),
        ];
        let json = serde_json::to_string(&items).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"[{"type":"message","id":"msg_1","role":"assistant","status":"completed","#,
                r#""content":[{"type":"output_text","text":"hi","annotations":[],"logprobs":[]}]},"#,
                r#"{"type":"function_call_output","id":"fco_1","call_id":"call_1","#,
                r#""output":[{"type":"input_text","text":"42"}],"status":"completed"}]"#
            )
        );
        assert_eq!(serde_json::from_str::<Vec<Item>>(&json).unwrap(), items);
    }

    #[test]
    fn ids_have_their_kind() {
        assert!(new_message_id().starts_with("msg_") && new_call_item_id().starts_with("fc_"));
        assert_eq!(output_item_id("msg", "resp_abc", 2), "msg_abc_2");
    }
}
