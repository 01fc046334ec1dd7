//! The request fields a Response object repeats back (its "echo"), typed:
//! how the request set them, with the API's defaults where it set nothing.

use std::collections::BTreeMap;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// The request fields a Response object repeats back, as the client sent
/// them or with the API's defaults.
///
/// The sampling numbers are required (non-null) by the Open Responses
/// schema, so an unset one is the API's documented default (`temperature`
/// and `top_p` 1, the penalties 0); only what the client set goes upstream.
/// An agent's own defaults and caps change what is in force:
/// `Echo::in_force` shows those, so the object says how the answer was made.
#[derive(Debug, Clone, Serialize)]
pub struct Echo {
    pub instructions: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub temperature: f64,
    pub top_p: f64,
    pub presence_penalty: f64,
    pub frequency_penalty: f64,
    pub tool_choice: ToolChoice,
    pub tools: Vec<FunctionTool>,
    pub parallel_tool_calls: bool,
    pub max_output_tokens: Option<u64>,
    pub text: TextConfig,
    pub reasoning: Option<Reasoning>,
    pub truncation: &'static str,
    pub user: Option<String>,
    pub store: bool,
    pub previous_response_id: Option<String>,
}

impl Echo {
    /// The echo once `target`'s own defaults and caps applied, as the agent
    /// rewrite applies them upstream: an option the client left unset shows the
    /// agent's default; the output ceiling is the agent's cap when the client
    /// set none or a higher one. The agent's instructions are never echoed
    /// (they are the operator's, not the caller's).
    pub(crate) fn in_force(mut self, target: &crate::agents::Target, set: Sampling) -> Echo {
        let default = |name: &str| {
            let raw = target.defaults.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())?;
            serde_json::from_slice::<serde_json::Value>(raw).ok()
        };
        let number = |name: &str| default(name).and_then(|v| v.as_f64());
        let fields: [(&str, Option<f64>, &mut f64); 4] = [
            ("temperature", set.temperature, &mut self.temperature),
            ("top_p", set.top_p, &mut self.top_p),
            ("presence_penalty", set.presence_penalty, &mut self.presence_penalty),
            ("frequency_penalty", set.frequency_penalty, &mut self.frequency_penalty),
        ];
        for (name, by_client, echoed) in fields {
            if let (None, Some(value)) = (by_client, number(name)) {
                *echoed = value;
            }
        }
        if let (None, Some(value)) = (set.parallel_tool_calls, default("parallel_tool_calls").and_then(|v| v.as_bool()))
        {
            self.parallel_tool_calls = value;
        }
        if let Some(cap) = target.max_tokens_cap {
            self.max_output_tokens = Some(self.max_output_tokens.map_or(cap, |asked| asked.min(cap)));
        }
        self
    }
}

/// What the client set of the sampling options, as it goes upstream.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub parallel_tool_calls: Option<bool>,
}

/// A function tool, as the request declared it.
#[derive(Debug, Clone)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON Schema of the arguments, verbatim.
    pub parameters: Option<Box<RawValue>>,
    pub strict: Option<bool>,
}

impl Serialize for FunctionTool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut tool = s.serialize_struct("FunctionTool", 5)?;
        tool.serialize_field("type", "function")?;
        tool.serialize_field("name", &self.name)?;
        tool.serialize_field("description", &self.description)?;
        tool.serialize_field("parameters", &self.parameters)?;
        tool.serialize_field("strict", &self.strict)?;
        tool.end()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
    /// `allowed_tools`: only these functions may be called (`required`: one must).
    Allowed {
        required: bool,
        names: Vec<String>,
    },
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Named<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            name: &'a str,
        }
        #[derive(Serialize)]
        struct Allowed<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            mode: &'static str,
            tools: Vec<Named<'a>>,
        }
        match self {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => Named { kind: "function", name }.serialize(s),
            ToolChoice::Allowed { required, names } => Allowed {
                kind: "allowed_tools",
                mode: if *required { "required" } else { "auto" },
                tools: names.iter().map(|name| Named { kind: "function", name }).collect(),
            }
            .serialize(s),
        }
    }
}

/// `text`: the output format.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TextConfig {
    pub format: TextFormat,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    #[default]
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Box<RawValue>,
        strict: Option<bool>,
        description: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Reasoning {
    pub effort: Option<String>,
    pub summary: Option<String>,
}
