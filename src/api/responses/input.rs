//! A request's `input`, parsed into normalized [`Item`]s.
//!
//! Each item and content part is parsed on its own, into one struct holding
//! every field any accepted type has, so a wrong type, a missing field or an
//! unsupported kind is reported at its exact path (`input[2].content[0].type`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::items::{self, Detail, FunctionCall, FunctionCallOutput, Item, ItemStatus, Message, Part, Role, ToolOutput};
use super::ResponsesError;
use crate::json::typed::parse_at;

/// One entry of the input, in order.
#[derive(Debug)]
pub(crate) enum Entry {
    Item(Item),
    /// `{"type":"item_reference","id":...}`: an earlier item, by id, resolved
    /// when the request is translated.
    Reference {
        id: String,
        param: String,
    },
}

/// Parses `input`: a string (one user message) or a list of items.
pub(crate) fn parse_input(raw: &RawValue) -> Result<Vec<Entry>, ResponsesError> {
    match raw.get().as_bytes().first() {
        Some(b'"') => {
            let text: String = parse_at(raw, "input")?;
            Ok(vec![Entry::Item(user_text(text))])
        }
        Some(b'[') => {
            let list: Vec<&RawValue> = parse_at(raw, "input")?;
            let mut entries = Vec::with_capacity(list.len());
            for (i, item) in list.into_iter().enumerate() {
                entries.extend(parse_item(item, &format!("input[{i}]"))?);
            }
            Ok(entries)
        }
        _ => Err(ResponsesError::invalid_type("input", "a string or an array of input items")),
    }
}

fn user_text(text: String) -> Item {
    Item::Message(Message {
        id: items::new_message_id(),
        role: Role::User,
        status: ItemStatus::Completed,
        content: vec![Part::InputText { text }],
    })
}

/// Every field of the item types the gateway accepts.
#[derive(Deserialize)]
struct ItemWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    id: Option<String>,
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    call_id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
    #[serde(borrow)]
    output: Option<&'a RawValue>,
}

fn parse_item(raw: &RawValue, at: &str) -> Result<Option<Entry>, ResponsesError> {
    if !raw.get().starts_with('{') {
        return Err(ResponsesError::invalid_type(at, "an object"));
    }
    let wire: ItemWire = parse_at(raw, at)?;
    let required =
        |value: Option<String>, field: &str| value.ok_or_else(|| ResponsesError::missing(format!("{at}.{field}")));
    let item = match wire.kind.as_deref() {
        None | Some("message") => Item::Message(message(wire, at)?),
        Some("function_call") => Item::FunctionCall(FunctionCall {
            id: wire.id.unwrap_or_else(items::new_call_item_id),
            call_id: required(wire.call_id, "call_id")?,
            name: required(wire.name, "name")?,
            arguments: required(wire.arguments, "arguments")?,
            status: ItemStatus::Completed,
        }),
        Some("function_call_output") => {
            let call_id = required(wire.call_id, "call_id")?;
            let raw = wire.output.ok_or_else(|| ResponsesError::missing(format!("{at}.output")))?;
            Item::FunctionCallOutput(FunctionCallOutput {
                id: wire.id.unwrap_or_else(items::new_output_item_id),
                call_id,
                output: tool_output(raw, &format!("{at}.output"))?,
                status: ItemStatus::Completed,
            })
        }
        Some("item_reference") => {
            let id = required(wire.id, "id")?;
            return Ok(Some(Entry::Reference { id, param: format!("{at}.id") }));
        }
        // Reasoning state belongs to the model that produced it; a chat
        // upstream has no way to take it back.
        Some("reasoning") => return Ok(None),
        Some(other) => {
            return Err(ResponsesError::invalid(
                format!("{at}.type"),
                format!(
                    "input items of type '{other}' are not supported; the gateway translates message, \
                     function_call, function_call_output, item_reference and reasoning items (a built-in \
                     tool's items cannot be replayed to a chat model)."
                ),
            ))
        }
    };
    Ok(Some(Entry::Item(item)))
}

fn message(wire: ItemWire<'_>, at: &str) -> Result<Message, ResponsesError> {
    let role = match wire.role.as_deref() {
        None => return Err(ResponsesError::missing(format!("{at}.role"))),
        Some("user") => Role::User,
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        Some("assistant") => Role::Assistant,
        Some(other) => {
            return Err(ResponsesError::invalid(
                format!("{at}.role"),
                format!("'{other}' is not one of 'user', 'system', 'developer', 'assistant'."),
            ))
        }
    };
    let raw = wire.content.ok_or_else(|| ResponsesError::missing(format!("{at}.content")))?;
    let content_at = format!("{at}.content");
    let content = match raw.get().as_bytes().first() {
        Some(b'"') => {
            let text: String = parse_at(raw, &content_at)?;
            vec![if role == Role::Assistant { Part::output_text(text) } else { Part::InputText { text } }]
        }
        Some(b'[') => parts(raw, &content_at, role.into())?,
        _ => return Err(ResponsesError::invalid_type(content_at, "a string or an array of content parts")),
    };
    Ok(Message { id: wire.id.unwrap_or_else(items::new_message_id), role, status: ItemStatus::Completed, content })
}

fn tool_output(raw: &RawValue, at: &str) -> Result<ToolOutput, ResponsesError> {
    match raw.get().as_bytes().first() {
        Some(b'"') => Ok(ToolOutput::Text(parse_at(raw, at)?)),
        Some(b'[') => Ok(ToolOutput::Parts(parts(raw, at, Accepts::Text)?)),
        _ => Err(ResponsesError::invalid_type(at, "a string or an array of input_text parts")),
    }
}

/// Which parts a place takes: chat carries images and files in user messages
/// only, and system, developer and tool messages as text.
#[derive(Clone, Copy, PartialEq)]
enum Accepts {
    Input,
    Text,
    Output,
}

impl From<Role> for Accepts {
    fn from(role: Role) -> Accepts {
        match role {
            Role::User => Accepts::Input,
            Role::System | Role::Developer => Accepts::Text,
            Role::Assistant => Accepts::Output,
        }
    }
}

/// Every field of the content part types the gateway accepts.
#[derive(Deserialize)]
struct PartWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    text: Option<String>,
    image_url: Option<String>,
    file_id: Option<String>,
    #[serde(borrow)]
    detail: Option<Cow<'a, str>>,
    file_data: Option<String>,
    filename: Option<String>,
    file_url: Option<String>,
    refusal: Option<String>,
}

fn parts(raw: &RawValue, at: &str, accepts: Accepts) -> Result<Vec<Part>, ResponsesError> {
    let list: Vec<&RawValue> = parse_at(raw, at)?;
    list.into_iter().enumerate().map(|(j, raw)| part(raw, &format!("{at}[{j}]"), accepts)).collect()
}

fn part(raw: &RawValue, at: &str, accepts: Accepts) -> Result<Part, ResponsesError> {
    if !raw.get().starts_with('{') {
        return Err(ResponsesError::invalid_type(at, "an object"));
    }
    let wire: PartWire = parse_at(raw, at)?;
    let kind = wire.kind.as_deref().ok_or_else(|| ResponsesError::missing(format!("{at}.type")))?;
    let required =
        |value: Option<String>, field: &str| value.ok_or_else(|| ResponsesError::missing(format!("{at}.{field}")));
    let unsupported = |why: &str| ResponsesError::invalid(format!("{at}.type"), format!("'{kind}' {why}"));
    match (kind, accepts) {
        ("input_text", Accepts::Input | Accepts::Text) => Ok(Part::InputText { text: required(wire.text, "text")? }),
        ("input_text" | "output_text", Accepts::Output) => Ok(Part::output_text(required(wire.text, "text")?)),
        ("refusal", Accepts::Output) => Ok(Part::Refusal { refusal: required(wire.refusal, "refusal")? }),
        ("input_image", Accepts::Input) => {
            let Some(image_url) = wire.image_url else {
                return Err(match wire.file_id {
                    Some(_) => ResponsesError::invalid(
                        format!("{at}.file_id"),
                        "file ids are not supported: chat upstreams cannot fetch files; send the image as \
                         image_url (an https: or data: URL).",
                    ),
                    None => ResponsesError::missing(format!("{at}.image_url")),
                });
            };
            let detail = match wire.detail.as_deref() {
                None | Some("auto") => Detail::Auto,
                Some("low") => Detail::Low,
                Some("high") => Detail::High,
                Some("original") => Detail::Original,
                Some(other) => {
                    return Err(ResponsesError::invalid(
                        format!("{at}.detail"),
                        format!("'{other}' is not one of 'low', 'high', 'auto', 'original'."),
                    ))
                }
            };
            Ok(Part::InputImage { image_url, detail })
        }
        ("input_file", Accepts::Input) => match (wire.file_data, wire.file_id.or(wire.file_url)) {
            (Some(file_data), _) => Ok(Part::InputFile { filename: wire.filename, file_data }),
            (None, Some(_)) => Err(ResponsesError::invalid(
                format!("{at}.file_data"),
                "file ids and file URLs are not supported: chat upstreams cannot fetch files; send the file \
                 inline as file_data (a base64 data URL) with its filename.",
            )),
            (None, None) => Err(ResponsesError::missing(format!("{at}.file_data"))),
        },
        ("input_image" | "input_file", Accepts::Text) => Err(unsupported(
            "parts are not supported here: chat carries only text in system, developer and tool messages.",
        )),
        ("input_image" | "input_file" | "output_text" | "refusal", _) => {
            Err(unsupported("parts are not supported in this message's role."))
        }
        _ => Err(unsupported("content parts are not supported.")),
    }
}
