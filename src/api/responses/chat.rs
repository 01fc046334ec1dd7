//! The chat-completions body a Responses request becomes, serialised once
//! from borrowed views of the request and its items.
//!
//! Mapping choices, for the widest range of chat upstreams:
//! - `developer` messages go as `system`: OpenAI's chat API treats the two
//!   alike, while many OpenAI-compatible servers (vLLM, Ollama, older
//!   proxies) reject or ignore a `developer` role.
//! - content with one text part is a plain string; several parts, or images
//!   and files, the chat array of parts.
//! - `function_call` items that follow an assistant message (or each other)
//!   join it as its `tool_calls`, as the model produced them in one turn;
//!   `function_call_output` items become `tool` messages.
//! - `max_output_tokens` is `max_tokens`, which every chat upstream reads.

use serde::Serialize;

use super::echo::{Echo, Sampling, TextFormat, ToolChoice};
use super::items::{Detail, FunctionCall, Item, Message, Part, Role, ToolOutput};
use super::ResponsesError;

#[derive(Serialize)]
pub(crate) struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ChatTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ChatToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> ChatRequest<'a> {
    pub(crate) fn new(model: &'a str, echo: &'a Echo, sampling: Sampling, stream: bool) -> Self {
        // `allowed_tools` is enforced by offering only the allowed functions,
        // which every upstream understands, with the mode as the choice.
        let (allowed, tool_choice) = match &echo.tool_choice {
            ToolChoice::Auto => (None, None),
            ToolChoice::None => (None, Some(ChatToolChoice::Mode("none"))),
            ToolChoice::Required => (None, Some(ChatToolChoice::Mode("required"))),
            ToolChoice::Function(name) => (None, Some(ChatToolChoice::function(name))),
            ToolChoice::Allowed { required, names } => {
                (Some(names.as_slice()), required.then_some(ChatToolChoice::Mode("required")))
            }
        };
        let tools = echo
            .tools
            .iter()
            .filter(|t| allowed.is_none_or(|names| names.contains(&t.name)))
            .map(|t| ChatTool {
                kind: "function",
                function: ChatFunction {
                    name: &t.name,
                    description: t.description.as_deref(),
                    parameters: t.parameters.as_deref(),
                    strict: t.strict,
                },
            })
            .collect();
        let response_format = match &echo.text.format {
            TextFormat::Text => None,
            TextFormat::JsonObject => Some(ResponseFormat::JsonObject),
            TextFormat::JsonSchema { name, schema, strict, description } => Some(ResponseFormat::JsonSchema {
                json_schema: JsonSchema { name, schema, strict: *strict, description: description.as_deref() },
            }),
        };
        ChatRequest {
            model,
            messages: Vec::new(),
            tools,
            tool_choice,
            parallel_tool_calls: sampling.parallel_tool_calls,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            presence_penalty: sampling.presence_penalty,
            frequency_penalty: sampling.frequency_penalty,
            user: echo.user.as_deref(),
            max_tokens: echo.max_output_tokens,
            response_format,
            reasoning_effort: echo.reasoning.as_ref().and_then(|r| r.effort.as_deref()),
            stream,
            stream_options: stream.then_some(StreamOptions { include_usage: true }),
        }
        .with_instructions(echo.instructions.as_deref())
    }

    fn with_instructions(mut self, instructions: Option<&'a str>) -> Self {
        if let Some(text) = instructions {
            self.messages.push(ChatMessage::new("system", Content::Text(text)));
        }
        self
    }

    /// The body: the instructions, `history`, then `input`.
    pub(crate) fn into_body(mut self, history: &'a [Item], input: &'a [Item]) -> Result<Vec<u8>, ResponsesError> {
        // `true` while function calls may still join the last message.
        let mut joinable = false;
        for item in history.iter().chain(input) {
            match item {
                Item::Message(m) => {
                    self.messages.push(message(m));
                    joinable = m.role == Role::Assistant;
                }
                Item::FunctionCall(call) => {
                    match self.messages.last_mut() {
                        Some(last) if joinable => last.tool_calls.push(tool_call(call)),
                        _ => {
                            let mut assistant = ChatMessage::new("assistant", Content::Null);
                            assistant.tool_calls.push(tool_call(call));
                            self.messages.push(assistant);
                        }
                    }
                    joinable = true;
                }
                Item::FunctionCallOutput(out) => {
                    let content = match &out.output {
                        ToolOutput::Text(text) => Content::Text(text),
                        ToolOutput::Parts(parts) => content(parts),
                    };
                    let mut tool = ChatMessage::new("tool", content);
                    tool.tool_call_id = Some(&out.call_id);
                    self.messages.push(tool);
                    joinable = false;
                }
            }
        }
        if self.messages.is_empty() {
            return Err(ResponsesError::missing("input"));
        }
        Ok(serde_json::to_vec(&self).expect("a chat request always serialises"))
    }
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: Content<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ChatToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> ChatMessage<'a> {
    fn new(role: &'static str, content: Content<'a>) -> Self {
        ChatMessage { role, content, refusal: None, tool_calls: Vec::new(), tool_call_id: None }
    }
}

fn message(m: &Message) -> ChatMessage<'_> {
    let role = match m.role {
        Role::User => "user",
        Role::System | Role::Developer => "system",
        Role::Assistant => "assistant",
    };
    if m.role != Role::Assistant {
        return ChatMessage::new(role, content(&m.content));
    }
    let refusal = m.content.iter().find_map(|part| match part {
        Part::Refusal { refusal } => Some(refusal.as_str()),
        _ => None,
    });
    let texts: Vec<&Part> = m.content.iter().filter(|part| !matches!(part, Part::Refusal { .. })).collect();
    let content = match texts.as_slice() {
        [] => Content::Null,
        [Part::OutputText { text, .. }] => Content::Text(text),
        parts => Content::Parts(parts.iter().copied().filter_map(chat_part).collect()),
    };
    ChatMessage { refusal, ..ChatMessage::new(role, content) }
}

fn content(parts: &[Part]) -> Content<'_> {
    match parts {
        [Part::InputText { text } | Part::OutputText { text, .. }] => Content::Text(text),
        parts => Content::Parts(parts.iter().filter_map(chat_part).collect()),
    }
}

fn chat_part(part: &Part) -> Option<ChatPart<'_>> {
    Some(match part {
        Part::InputText { text } | Part::OutputText { text, .. } => ChatPart::Text { text },
        Part::InputImage { image_url, detail } => ChatPart::ImageUrl {
            image_url: ImageUrl {
                url: image_url,
                detail: match detail {
                    Detail::Auto => None,
                    Detail::Low => Some("low"),
                    Detail::High | Detail::Original => Some("high"),
                },
            },
        },
        Part::InputFile { filename, file_data } => {
            ChatPart::File { file: File { filename: filename.as_deref(), file_data } }
        }
        // Parsing keeps refusals to assistant messages, which carry them apart.
        Part::Refusal { .. } => return None,
    })
}

enum Content<'a> {
    Null,
    Text(&'a str),
    Parts(Vec<ChatPart<'a>>),
}

impl Serialize for Content<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Null => s.serialize_none(),
            Content::Text(text) => s.serialize_str(text),
            Content::Parts(parts) => parts.serialize(s),
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChatPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
    File { file: File<'a> },
}

#[derive(Serialize)]
struct ImageUrl<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'static str>,
}

#[derive(Serialize)]
struct File<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
    file_data: &'a str,
}

#[derive(Serialize)]
struct ChatToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: CallFunction<'a>,
}

#[derive(Serialize)]
struct CallFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

fn tool_call(call: &FunctionCall) -> ChatToolCall<'_> {
    ChatToolCall {
        id: &call.call_id,
        kind: "function",
        function: CallFunction { name: &call.name, arguments: &call.arguments },
    }
}

#[derive(Serialize)]
struct ChatTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: ChatFunction<'a>,
}

#[derive(Serialize)]
struct ChatFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChatToolChoice<'a> {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: Name<'a>,
    },
}

impl<'a> ChatToolChoice<'a> {
    fn function(name: &'a str) -> Self {
        ChatToolChoice::Function { kind: "function", function: Name { name } }
    }
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat<'a> {
    JsonObject,
    JsonSchema { json_schema: JsonSchema<'a> },
}

#[derive(Serialize)]
struct JsonSchema<'a> {
    name: &'a str,
    schema: &'a serde_json::value::RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}
