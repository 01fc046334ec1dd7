//! Parsing and validating a model API request body, without deep parsing.
//!
//! The body is parsed once into its top-level members, each kept as borrowed raw
//! JSON (`&RawValue`): the gateway inspects the few fields it acts on and copies
//! the rest to the upstream verbatim. serde_json still validates the whole
//! document, so malformed JSON is refused here, before anything is sent; what
//! it does not check in the values it skips (nesting depth, surrogate pairs,
//! number range) [`crate::json::check_strict`] does, so no strict upstream is
//! sent a body it would refuse.

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Which model API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// The Responses API, forwarded to a provider that speaks it natively.
    Responses,
}

impl Endpoint {
    /// Path below the provider's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("We could not parse the JSON body of your request: {0}")]
    InvalidJson(String),
    #[error("Missing required parameter: '{0}'.")]
    Missing(&'static str),
    #[error("Invalid type for '{param}': expected {expected}.")]
    InvalidType { param: String, expected: &'static str },
    #[error("Invalid value for '{param}': {reason}")]
    InvalidValue { param: &'static str, reason: &'static str },
    #[error("The request body is larger than the limit of {0} bytes.")]
    BodyTooLarge(usize),
    #[error("The request body was not received within {0} ms.")]
    BodyTimeout(u64),
    #[error("The request body could not be read.")]
    BodyRead,
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidJson(_) => "invalid_json",
            RequestError::Missing(_) => "missing_required_parameter",
            RequestError::InvalidType { .. } => "invalid_type",
            RequestError::InvalidValue { .. } => "invalid_value",
            RequestError::BodyTooLarge(_) => "body_too_large",
            RequestError::BodyTimeout(_) => "request_timeout",
            RequestError::BodyRead => "body_read_error",
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            RequestError::Missing(p) => Some(p),
            RequestError::InvalidType { param, .. } => Some(param),
            RequestError::InvalidValue { param, .. } => Some(param),
            _ => None,
        }
    }
}

/// A request body split into its top-level members, in order.
#[derive(Debug)]
pub struct ParsedRequest<'a> {
    pub fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    pub endpoint: Endpoint,
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

impl<'a> ParsedRequest<'a> {
    /// The member's raw value; the last one wins for a duplicated key, as in
    /// every mainstream JSON parser.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Like [`get`](Self::get), treating `null` as absent.
    pub fn get_set(&self, key: &str) -> Option<&'a RawValue> {
        self.get(key).filter(|v| v.get() != "null")
    }
}

/// The top-level members of a JSON object, in order (a duplicated key is
/// kept each time), each value borrowed as raw JSON.
pub fn members(body: &[u8]) -> Result<Vec<(Cow<'_, str>, &RawValue)>, serde_json::Error> {
    serde_json::from_slice(body).map(|TopLevel(fields)| fields)
}

/// Parses and validates a body for `endpoint`.
pub fn parse(body: &[u8], endpoint: Endpoint) -> Result<ParsedRequest<'_>, RequestError> {
    let fields = members(body).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    crate::json::check_strict(body).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    let mut req = ParsedRequest { fields, endpoint, model: Cow::Borrowed(""), stream: false, include_usage: false };
    req.model = match req.get_set("model") {
        None => return Err(RequestError::Missing("model")),
        Some(raw) => typed::<Cow<'_, str>>(raw, "model", "a string")?,
    };
    if req.model.trim().is_empty() {
        return Err(RequestError::Missing("model"));
    }
    req.stream = optional::<bool>(&req, "stream", "a boolean")?.unwrap_or(false);
    if req.stream && endpoint == Endpoint::Embeddings {
        return Err(RequestError::InvalidValue { param: "stream", reason: "embeddings cannot be streamed." });
    }
    if let Some(raw) = req.get_set("stream_options") {
        #[derive(Deserialize)]
        struct StreamOptions {
            include_usage: Option<bool>,
        }
        let options: StreamOptions = typed(raw, "stream_options", "an object with a boolean include_usage")?;
        req.include_usage = options.include_usage.unwrap_or(false);
    }
    for param in ["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "seed"] {
        optional::<i64>(&req, param, "an integer")?;
    }
    for param in ["max_tokens", "max_completion_tokens", "max_output_tokens", "n"] {
        if optional::<i64>(&req, param, "an integer")?.is_some_and(|v| v < 0) {
            return Err(RequestError::InvalidType { param: param.into(), expected: "a non-negative integer" });
        }
    }
    for param in ["temperature", "top_p", "presence_penalty", "frequency_penalty"] {
        optional::<f64>(&req, param, "a number")?;
    }
    match endpoint {
        Endpoint::Chat => {
            let raw = req.get_set("messages").ok_or(RequestError::Missing("messages"))?;
            let messages: Vec<&RawValue> = typed(raw, "messages", "an array of message objects")?;
            if messages.is_empty() {
                return Err(RequestError::InvalidValue {
                    param: "messages",
                    reason: "must contain at least one message.",
                });
            }
            if let Some(i) = messages.iter().position(|m| !m.get().starts_with('{')) {
                return Err(RequestError::InvalidType { param: format!("messages[{i}]"), expected: "an object" });
            }
        }
        Endpoint::Completions => {
            let raw = req.get_set("prompt").ok_or(RequestError::Missing("prompt"))?;
            require_string_or_array(raw, "prompt")?;
        }
        Endpoint::Embeddings => {
            let raw = req.get_set("input").ok_or(RequestError::Missing("input"))?;
            require_string_or_array(raw, "input")?;
        }
        // The provider validates the rest (input may be absent with a stored prompt).
        Endpoint::Responses => {
            if let Some(raw) = req.get_set("input") {
                require_string_or_array(raw, "input")?;
            }
        }
    }
    Ok(req)
}

fn require_string_or_array(raw: &RawValue, param: &'static str) -> Result<(), RequestError> {
    match raw.get().as_bytes().first() {
        Some(b'"' | b'[') => Ok(()),
        _ => Err(RequestError::InvalidType { param: param.into(), expected: "a string or an array" }),
    }
}

fn typed<'a, T: Deserialize<'a>>(raw: &'a RawValue, param: &str, expected: &'static str) -> Result<T, RequestError> {
    serde_json::from_str(raw.get()).map_err(|_| RequestError::InvalidType { param: param.into(), expected })
}

fn optional<'a, T: Deserialize<'a>>(
    req: &ParsedRequest<'a>,
    param: &str,
    expected: &'static str,
) -> Result<Option<T>, RequestError> {
    req.get_set(param).map(|raw| typed(raw, param, expected)).transpose()
}

/// The top level of a JSON object as (key, raw value) pairs, borrowing the input.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    fields.push((key.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(TopLevel(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// A key that borrows from the input unless it contains escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str, endpoint: Endpoint) -> RequestError {
        parse(body.as_bytes(), endpoint).unwrap_err()
    }

    #[test]
    fn parses_the_fields_it_acts_on() {
        let body = br#"{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
        let req = parse(body, Endpoint::Chat).unwrap();
        assert_eq!(req.model, "demo");
        assert!(req.stream && req.include_usage);
        assert_eq!(req.fields.len(), 4);
    }

    #[test]
    fn refuses_bad_input_with_the_param() {
        assert!(matches!(err("{", Endpoint::Chat), RequestError::InvalidJson(_)));
        assert!(matches!(err("[1]", Endpoint::Chat), RequestError::InvalidJson(_)));
        assert_eq!(err(r#"{"messages":[{}]}"#, Endpoint::Chat), RequestError::Missing("model"));
        assert_eq!(err(r#"{"model":null,"messages":[{}]}"#, Endpoint::Chat), RequestError::Missing("model"));
        assert_eq!(err(r#"{"model":1,"messages":[{}]}"#, Endpoint::Chat).param(), Some("model"));
        assert_eq!(err(r#"{"model":"m"}"#, Endpoint::Chat), RequestError::Missing("messages"));
        assert_eq!(err(r#"{"model":"m","messages":"hi"}"#, Endpoint::Chat).param(), Some("messages"));
        assert_eq!(err(r#"{"model":"m","messages":[]}"#, Endpoint::Chat).param(), Some("messages"));
        assert_eq!(err(r#"{"model":"m","messages":[1]}"#, Endpoint::Chat).param(), Some("messages[0]"));
        assert_eq!(err(r#"{"model":"m","messages":[{}],"stream":"yes"}"#, Endpoint::Chat).param(), Some("stream"));
        assert_eq!(err(r#"{"model":"m","messages":[{}],"max_tokens":-1}"#, Endpoint::Chat).param(), Some("max_tokens"));
        assert_eq!(
            err(r#"{"model":"m","messages":[{}],"temperature":"hot"}"#, Endpoint::Chat).param(),
            Some("temperature")
        );
        assert_eq!(err(r#"{"model":"m"}"#, Endpoint::Completions), RequestError::Missing("prompt"));
        assert_eq!(err(r#"{"model":"m","input":5}"#, Endpoint::Embeddings).param(), Some("input"));
        assert_eq!(err(r#"{"model":"m","input":"x","stream":true}"#, Endpoint::Embeddings).param(), Some("stream"));
    }

    #[test]
    fn json_a_strict_parser_refuses_is_invalid_json() {
        let deep = format!(r#"{{"model":"m","input":{}1{}}}"#, "[".repeat(127), "]".repeat(127));
        let lone = r#"{"model":"m","input":"\ud800"}"#;
        let huge = r#"{"model":"m","input":"x","top":[1e400]}"#;
        for body in [deep.as_str(), lone, huge] {
            assert!(matches!(err(body, Endpoint::Embeddings), RequestError::InvalidJson(_)), "{body}");
        }
        let deepest = format!(r#"{{"model":"m","input":{}1{}}}"#, "[".repeat(126), "]".repeat(126));
        assert!(parse(deepest.as_bytes(), Endpoint::Embeddings).is_ok());
    }

    #[test]
    fn escaped_keys_are_unescaped() {
        let req = parse(br#"{"mod\u0065l":"m","input":"x"}"#, Endpoint::Embeddings).unwrap();
        assert_eq!(req.model, "m");
    }
}
