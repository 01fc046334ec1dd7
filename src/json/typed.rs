//! Typed parsing with the failing field's path in the error.
//!
//! Request structs declare every field `Option` and check what is required
//! themselves, so serde only ever reports type errors; `serde_path_to_error`
//! says where (`tools[1].parameters`), and a part parsed on its own (an
//! input item, a content part) gets its position in the body as a prefix.

use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a body could not be read into its typed request, with the failing
/// field's path where there is one. Each API maps it to its error once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypedError {
    #[error("We could not parse the JSON body of your request: {0}")]
    InvalidJson(String),
    #[error("Missing required parameter: '{param}'.")]
    Missing { param: String },
    #[error("Invalid type for '{param}': expected {expected}.")]
    InvalidType { param: String, expected: String },
    #[error("Invalid value for '{param}': {reason}")]
    InvalidValue { param: String, reason: String },
}

impl TypedError {
    /// The OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            TypedError::InvalidJson(_) => "invalid_json",
            TypedError::Missing { .. } => "missing_required_parameter",
            TypedError::InvalidType { .. } => "invalid_type",
            TypedError::InvalidValue { .. } => "invalid_value",
        }
    }

    /// The failing field's path (`tools[1].parameters`), if any.
    pub fn param(&self) -> Option<&str> {
        match self {
            TypedError::Missing { param }
            | TypedError::InvalidType { param, .. }
            | TypedError::InvalidValue { param, .. } => Some(param),
            TypedError::InvalidJson(_) => None,
        }
    }
}

/// Parses a whole request body. Malformed JSON is `invalid_json`.
///
/// The common case (a valid body) parses without tracking the path; only a
/// failure is parsed again with `serde_path_to_error` to say where, so a
/// good request does not pay for the error's detail.
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, TypedError> {
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    // serde would read a struct from an array too; a request body is an object.
    if body.trim_ascii_start().first().is_some_and(|&b| b != b'{') {
        return Err(TypedError::InvalidJson("the body must be a JSON object".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| error_at("", e))?;
    de.end().map_err(|e| TypedError::InvalidJson(without_position(&e.to_string()).to_owned()))?;
    Ok(value)
}

/// Parses `raw`, found at path `at` in the body (the path tracked only on
/// failure, as in [`parse_body`]).
pub fn parse_at<'a, T: Deserialize<'a>>(raw: &'a RawValue, at: &str) -> Result<T, TypedError> {
    if let Ok(value) = serde_json::from_str(raw.get()) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| error_at(at, e))
}

/// `at` + `path`, written as OpenAI writes params: `input[2].content[0].type`.
pub fn join(at: &str, path: &str) -> String {
    match (at.is_empty(), path) {
        (_, "" | ".") => at.to_owned(),
        (true, _) => path.to_owned(),
        (false, p) if p.starts_with('[') => format!("{at}{p}"),
        (false, p) => format!("{at}.{p}"),
    }
}

fn error_at(at: &str, e: serde_path_to_error::Error<serde_json::Error>) -> TypedError {
    let param = join(at, &e.path().to_string());
    let inner = e.into_inner();
    let message = inner.to_string();
    let message = without_position(&message);
    if !inner.is_data() {
        return TypedError::InvalidJson(message.to_owned());
    }
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        return TypedError::Missing { param: join(&param, field) };
    }
    if let Some(field) = message.strip_prefix("unknown field `").and_then(|m| m.split_once('`')).map(|(f, _)| f) {
        // The path already ends at the unknown field.
        let param = if param.is_empty() { field.to_owned() } else { param };
        return TypedError::InvalidValue { param, reason: "this parameter is not known.".into() };
    }
    if message.starts_with("unknown variant") {
        return TypedError::InvalidValue { param, reason: format!("{message}.") };
    }
    // Not an object where the body must be one: the body is not the JSON asked for.
    if param.is_empty() {
        return TypedError::InvalidJson(message.to_owned());
    }
    let expected = message.split_once(", expected ").map_or("another type", |(_, e)| e);
    TypedError::InvalidType { param, expected: plain_expected(expected).to_owned() }
}

/// serde_json appends " at line L column C", which means nothing to a client
/// whose param already says where.
fn without_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(m, _)| m)
}

/// serde's expectations name Rust types; clients know JSON ones.
fn plain_expected(expected: &str) -> &str {
    match expected {
        "f64" | "f32" => "a number",
        "u64" | "u32" | "usize" => "a non-negative integer",
        "i64" | "i32" => "an integer",
        "a borrowed string" | "a string" => "a string",
        "a boolean" => "a boolean",
        "a sequence" => "an array",
        "a map" => "an object",
        e if e.starts_with("struct ") || e.starts_with("a JSON object") => "an object",
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Outer<'a> {
        #[serde(borrow)]
        _raw: Option<&'a RawValue>,
        _list: Option<Vec<Inner>>,
    }

    #[derive(Deserialize, Debug)]
    struct Inner {
        _n: Option<f64>,
    }

    #[test]
    fn reports_the_path_and_a_json_type() {
        let err = parse_body::<Outer>(br#"{"_raw":{"x":[1]},"_list":[{"_n":1},{"_n":"x"}]}"#).unwrap_err();
        assert_eq!(err, TypedError::InvalidType { param: "_list[1]._n".into(), expected: "a number".into() });
        assert!(matches!(parse_body::<Outer>(b"{\"_raw\":").unwrap_err(), TypedError::InvalidJson(_)));
        assert!(matches!(parse_body::<Outer>(b"{} x").unwrap_err(), TypedError::InvalidJson(_)));
        assert!(matches!(parse_body::<Outer>(b"[1, 2]").unwrap_err(), TypedError::InvalidJson(_)), "not an object");
        let raw: &RawValue = serde_json::from_str(r#"[{"_n":true}]"#).unwrap();
        let err = parse_at::<Vec<Inner>>(raw, "input[3].content").unwrap_err();
        assert_eq!(err.param(), Some("input[3].content[0]._n"));
    }

    #[test]
    fn joins_paths() {
        assert_eq!(join("", "a.b"), "a.b");
        assert_eq!(join("input[2]", "."), "input[2]");
        assert_eq!(join("input[2]", "content[0].type"), "input[2].content[0].type");
        assert_eq!(join("tools", "[1]"), "tools[1]");
    }
}
