//! A Responses request body: parsed and validated ([`parse_request`]), then
//! translated into a chat-completions body ([`ParsedRequest::translate`]).
//!
//! Two steps because the caller needs what the first one reads before it can
//! supply what the second one needs: `previous_response_id` and the ids of
//! `item_reference` items name stored items it has to load first.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::chat;
use super::echo::{Echo, FunctionTool, Reasoning, Sampling, TextConfig, TextFormat, ToolChoice};
use super::input::{parse_input, Entry};
use super::items::Item;
use super::ResponsesError;
use crate::json::typed::{parse_at, parse_body};

/// A validated request, before its history is known.
#[derive(Debug)]
pub struct ParsedRequest {
    pub(crate) model: String,
    pub(crate) input: Vec<Entry>,
    pub(crate) stream: bool,
    /// What the client set, as it goes upstream (the echo has the defaults).
    pub(crate) sampling: Sampling,
    pub(crate) echo: Echo,
}

impl ParsedRequest {
    /// The `model` asked for: an agent id or a model alias.
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn previous_response_id(&self) -> Option<&str> {
        self.echo.previous_response_id.as_deref()
    }

    /// Ids of the `item_reference` items: earlier items the caller must look
    /// up and pass to [`translate`](Self::translate).
    pub fn item_references(&self) -> impl Iterator<Item = &str> {
        self.input.iter().filter_map(|e| match e {
            Entry::Reference { id, .. } => Some(id.as_str()),
            Entry::Item(_) => None,
        })
    }

    /// The chat request: `instructions`, then `history` (the earlier turns'
    /// input and output items, oldest first), then this input, with each
    /// `item_reference` replaced by the item of that id from `referenced`
    /// or `history`.
    pub fn translate(self, history: &[Item], referenced: &[Item]) -> Result<Translated, ResponsesError> {
        let mut input_items = Vec::with_capacity(self.input.len());
        for entry in self.input {
            match entry {
                Entry::Item(item) => input_items.push(item),
                Entry::Reference { id, param } => {
                    let found = referenced.iter().chain(history).find(|item| item.id() == id);
                    let item = found.ok_or_else(|| {
                        ResponsesError::invalid(param, format!("no item with id '{id}' is known to this conversation."))
                    })?;
                    input_items.push(item.clone());
                }
            }
        }
        let request = chat::ChatRequest::new(&self.model, &self.echo, self.sampling, self.stream);
        let chat_body = request.into_body(history, &input_items)?;
        Ok(Translated {
            chat_body,
            model: self.model,
            stream: self.stream,
            input_items,
            echo: self.echo,
            sampling: self.sampling,
        })
    }
}

/// A request translated for the chat pipeline.
#[derive(Debug)]
pub struct Translated {
    /// The chat-completions body, serialised once.
    pub chat_body: Vec<u8>,
    pub model: String,
    pub stream: bool,
    /// This request's input, normalized, ids filled in: what to store for
    /// `input_items` and for the next turn's history.
    pub input_items: Vec<Item>,
    pub echo: Echo,
    /// What the client set of the sampling options (the echo fills in defaults).
    pub(crate) sampling: Sampling,
}

impl Translated {
    /// The echo as the Response object shows it, once `target`'s defaults
    /// and caps are in force (see `Echo::in_force`).
    pub fn echo_for(&self, target: &crate::agents::Target) -> Echo {
        self.echo.clone().in_force(target, self.sampling)
    }

    /// Whether the response is to be stored (`store`, default true).
    pub fn store(&self) -> bool {
        self.echo.store
    }

    pub fn previous_response_id(&self) -> Option<&str> {
        self.echo.previous_response_id.as_deref()
    }
}

/// [`parse_request`] then [`ParsedRequest::translate`], for a request whose
/// history is already known and that references no items outside it.
pub fn translate_request(body: &[u8], history: &[Item]) -> Result<Translated, ResponsesError> {
    parse_request(body)?.translate(history, &[])
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    instructions: Option<String>,
    #[serde(borrow)]
    tools: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    tool_choice: Option<&'a RawValue>,
    parallel_tool_calls: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    user: Option<String>,
    max_output_tokens: Option<u64>,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
    #[serde(borrow)]
    reasoning: Option<&'a RawValue>,
    stream: Option<bool>,
    store: Option<bool>,
    previous_response_id: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    #[serde(borrow)]
    truncation: Option<Cow<'a, str>>,
    background: Option<bool>,
    #[serde(borrow)]
    conversation: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
}

/// Parses and validates a Responses request body.
pub fn parse_request(body: &[u8]) -> Result<ParsedRequest, ResponsesError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ResponsesError::from(crate::json::typed::TypedError::InvalidJson("expected a JSON object".into())));
    }
    let b: Body = parse_body(body)?;
    let model = b.model.filter(|m| !m.trim().is_empty()).ok_or_else(|| ResponsesError::missing("model"))?;
    if b.background == Some(true) {
        return Err(ResponsesError::invalid("background", "background responses are not supported."));
    }
    if b.conversation.is_some() {
        return Err(ResponsesError::invalid(
            "conversation",
            "conversations are not supported; chain responses with previous_response_id.",
        ));
    }
    if b.prompt.is_some() {
        return Err(ResponsesError::invalid("prompt", "prompt templates are not supported."));
    }
    let metadata = b.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let truncation = match b.truncation.as_deref() {
        None | Some("disabled") => "disabled",
        Some("auto") => "auto",
        Some(other) => {
            return Err(ResponsesError::invalid("truncation", format!("'{other}' is not one of 'auto', 'disabled'.")))
        }
    };
    let input = b.input.map(parse_input).transpose()?.unwrap_or_default();
    let tools = b.tools.unwrap_or_default();
    let tools = tools.iter().enumerate().map(|(i, raw)| tool(raw, i)).collect::<Result<Vec<_>, _>>()?;
    let tool_choice = b.tool_choice.map(|raw| tool_choice(raw, &tools)).transpose()?.unwrap_or(ToolChoice::Auto);
    let text = b.text.map(text_config).transpose()?.unwrap_or_default();
    let reasoning = b.reasoning.map(|raw| object::<ReasoningWire>(raw, "reasoning")).transpose()?;
    Ok(ParsedRequest {
        model: model.into_owned(),
        input,
        stream: b.stream.unwrap_or(false),
        sampling: Sampling {
            temperature: b.temperature,
            top_p: b.top_p,
            presence_penalty: b.presence_penalty,
            frequency_penalty: b.frequency_penalty,
            parallel_tool_calls: b.parallel_tool_calls,
        },
        echo: Echo {
            instructions: b.instructions,
            metadata,
            temperature: b.temperature.unwrap_or(1.0),
            top_p: b.top_p.unwrap_or(1.0),
            presence_penalty: b.presence_penalty.unwrap_or(0.0),
            frequency_penalty: b.frequency_penalty.unwrap_or(0.0),
            tool_choice,
            tools,
            parallel_tool_calls: b.parallel_tool_calls.unwrap_or(true),
            max_output_tokens: b.max_output_tokens,
            text,
            reasoning: reasoning.map(|r| Reasoning { effort: r.effort, summary: r.summary }),
            truncation,
            user: b.user,
            store: b.store.unwrap_or(true),
            previous_response_id: b.previous_response_id,
        },
    })
}

/// OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512.
fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), ResponsesError> {
    if metadata.len() > 16 {
        return Err(ResponsesError::invalid("metadata", "at most 16 key-value pairs are allowed."));
    }
    for (key, value) in metadata {
        if key.chars().count() > 64 {
            return Err(ResponsesError::invalid(format!("metadata.{key}"), "keys are at most 64 characters."));
        }
        if value.chars().count() > 512 {
            return Err(ResponsesError::invalid(format!("metadata.{key}"), "values are at most 512 characters."));
        }
    }
    Ok(())
}

/// Parses an object-valued field (serde would take an array positionally).
fn object<'a, T: Deserialize<'a>>(raw: &'a RawValue, at: &str) -> Result<T, ResponsesError> {
    if !raw.get().starts_with('{') {
        return Err(ResponsesError::invalid_type(at, "an object"));
    }
    Ok(parse_at(raw, at)?)
}

#[derive(Deserialize)]
struct ReasoningWire {
    effort: Option<String>,
    summary: Option<String>,
}

#[derive(Deserialize)]
struct ToolWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Box<RawValue>>,
    strict: Option<bool>,
}

fn tool(raw: &RawValue, i: usize) -> Result<FunctionTool, ResponsesError> {
    let at = format!("tools[{i}]");
    let wire: ToolWire = object(raw, &at)?;
    match wire.kind.as_deref() {
        Some("function") => Ok(FunctionTool {
            name: wire.name.ok_or_else(|| ResponsesError::missing(format!("{at}.name")))?,
            description: wire.description,
            parameters: wire.parameters,
            strict: wire.strict,
        }),
        Some(other) => Err(built_in(format!("{at}.type"), other)),
        None => Err(ResponsesError::missing(format!("{at}.type"))),
    }
}

fn built_in(param: String, kind: &str) -> ResponsesError {
    ResponsesError::invalid(
        param,
        format!("'{kind}' is a built-in tool the gateway cannot run; only function tools are supported."),
    )
}

#[derive(Deserialize)]
struct ChoiceWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    name: Option<String>,
    #[serde(borrow)]
    mode: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tools: Option<Vec<ToolWire<'a>>>,
}

fn tool_choice(raw: &RawValue, tools: &[FunctionTool]) -> Result<ToolChoice, ResponsesError> {
    if raw.get().starts_with('"') {
        let mode: Cow<'_, str> = parse_at(raw, "tool_choice")?;
        return match &*mode {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(ResponsesError::invalid(
                "tool_choice",
                format!("'{other}' is not one of 'auto', 'none', 'required'."),
            )),
        };
    }
    let wire: ChoiceWire = object(raw, "tool_choice")?;
    let declared = |name: &str, param: String| match tools.iter().any(|t| t.name == name) {
        true => Ok(()),
        false => Err(ResponsesError::invalid(param, format!("no function named '{name}' is in tools."))),
    };
    match wire.kind.as_deref() {
        Some("function") => {
            let name = wire.name.ok_or_else(|| ResponsesError::missing("tool_choice.name"))?;
            declared(&name, "tool_choice.name".into())?;
            Ok(ToolChoice::Function(name))
        }
        Some("allowed_tools") => {
            let required = match wire.mode.as_deref() {
                None | Some("auto") => false,
                Some("required") => true,
                Some(other) => {
                    let reason = format!("'{other}' is not one of 'auto', 'required'.");
                    return Err(ResponsesError::invalid("tool_choice.mode", reason));
                }
            };
            let allowed = wire.tools.ok_or_else(|| ResponsesError::missing("tool_choice.tools"))?;
            let mut names = Vec::with_capacity(allowed.len());
            for (i, tool) in allowed.into_iter().enumerate() {
                let at = format!("tool_choice.tools[{i}]");
                match tool.kind.as_deref() {
                    Some("function") => {}
                    Some(other) => return Err(built_in(format!("{at}.type"), other)),
                    None => return Err(ResponsesError::missing(format!("{at}.type"))),
                }
                let name = tool.name.ok_or_else(|| ResponsesError::missing(format!("{at}.name")))?;
                declared(&name, format!("{at}.name"))?;
                names.push(name);
            }
            Ok(ToolChoice::Allowed { required, names })
        }
        Some(other) => Err(built_in("tool_choice.type".into(), other)),
        None => Err(ResponsesError::missing("tool_choice.type")),
    }
}

#[derive(Deserialize)]
struct TextWire<'a> {
    #[serde(borrow)]
    format: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct FormatWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    name: Option<String>,
    schema: Option<Box<RawValue>>,
    strict: Option<bool>,
    description: Option<String>,
}

fn text_config(raw: &RawValue) -> Result<TextConfig, ResponsesError> {
    let text: TextWire = object(raw, "text")?;
    let Some(raw) = text.format else { return Ok(TextConfig::default()) };
    let wire: FormatWire = object(raw, "text.format")?;
    let format = match wire.kind.as_deref() {
        Some("text") => TextFormat::Text,
        Some("json_object") => TextFormat::JsonObject,
        Some("json_schema") => TextFormat::JsonSchema {
            name: wire.name.ok_or_else(|| ResponsesError::missing("text.format.name"))?,
            schema: wire.schema.ok_or_else(|| ResponsesError::missing("text.format.schema"))?,
            strict: wire.strict,
            description: wire.description,
        },
        Some(other) => {
            let reason = format!("'{other}' is not one of 'text', 'json_object', 'json_schema'.");
            return Err(ResponsesError::invalid("text.format.type", reason));
        }
        None => return Err(ResponsesError::missing("text.format.type")),
    };
    Ok(TextConfig { format })
}
