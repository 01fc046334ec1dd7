//! Builds the upstream request body from a parsed client request and a target.
//!
//! One pass writes the new body: every member the gateway does not act on is
//! copied as raw bytes; `model` becomes the upstream model; the agent's system
//! message is spliced in front of `messages` without parsing them; defaults are
//! appended where unset; `max_tokens` is capped; a stream always asks for
//! `stream_options.include_usage` so it can be billed.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::Target;
use crate::json::push_json_string;
use crate::request::{Endpoint, ParsedRequest};
use crate::usage::estimate_tokens;

/// The body to send upstream and what the gateway learned while writing it.
#[derive(Debug)]
pub struct Rewritten {
    pub body: Vec<u8>,
    /// Estimated input tokens (bytes / 4 of the prompt), for cut streams and
    /// for reserving credits before the call.
    pub prompt_estimate: u64,
    /// The effective completion ceiling, if any (client value or agent cap).
    pub max_tokens: Option<u64>,
}

const MAX_TOKEN_FIELDS: [&str; 2] = ["max_tokens", "max_completion_tokens"];

/// `upstream_model` is the JSON string literal of the model the chosen
/// target serves (`RouteTarget::upstream_model_json`).
pub fn rewrite(req: &ParsedRequest<'_>, target: &Target, upstream_model: &[u8]) -> Rewritten {
    if req.endpoint == Endpoint::Responses {
        return rewrite_responses(req, target, upstream_model);
    }
    let mut out = Vec::with_capacity(
        req.fields.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>()
            + target.system_message.as_ref().map_or(0, Vec::len)
            + 96,
    );
    let mut prompt_bytes = 0;
    let mut max_tokens = None;
    out.push(b'{');
    let member = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        if out.len() > 1 {
            out.push(b',');
        }
        push_json_string(out, key);
        out.push(b':');
        out.extend_from_slice(value);
    };
    for (key, value) in &req.fields {
        let raw = value.get().as_bytes();
        match key.as_ref() {
            "model" => member(&mut out, key, upstream_model),
            "stream_options" => {}
            "messages" if req.endpoint == Endpoint::Chat => {
                prompt_bytes += raw.len();
                match &target.system_message {
                    Some(system) => member(&mut out, key, &prepend(raw, system)),
                    None => member(&mut out, key, raw),
                }
            }
            "prompt" if req.endpoint == Endpoint::Completions => {
                prompt_bytes += raw.len();
                match &target.instructions {
                    Some(text) => member(&mut out, key, &prefix_prompt(value, text)),
                    None => member(&mut out, key, raw),
                }
            }
            "input" if req.endpoint == Endpoint::Embeddings => {
                prompt_bytes += raw.len();
                member(&mut out, key, raw);
            }
            k if MAX_TOKEN_FIELDS.contains(&k) && raw != b"null" => {
                let asked: u64 = serde_json::from_slice(raw).unwrap_or(0);
                let effective = target.max_tokens_cap.map_or(asked, |cap| asked.min(cap));
                max_tokens = Some(effective);
                member(&mut out, key, effective.to_string().as_bytes());
            }
            k if raw == b"null" && target.defaults.iter().any(|(d, _)| d == k) => {}
            _ => member(&mut out, key, raw),
        }
    }
    if req.endpoint != Endpoint::Embeddings {
        for (key, value) in &target.defaults {
            if req.get_set(key).is_none() && !(MAX_TOKEN_FIELDS.contains(&key.as_str()) && max_tokens.is_some()) {
                if MAX_TOKEN_FIELDS.contains(&key.as_str()) {
                    let default: u64 = serde_json::from_slice(value).unwrap_or(0);
                    let effective = target.max_tokens_cap.map_or(default, |cap| default.min(cap));
                    max_tokens = Some(effective);
                    member(&mut out, key, effective.to_string().as_bytes());
                } else {
                    member(&mut out, key, value);
                }
            }
        }
        if let (None, Some(cap)) = (max_tokens, target.max_tokens_cap) {
            max_tokens = Some(cap);
            member(&mut out, "max_tokens", cap.to_string().as_bytes());
        }
    }
    if req.stream {
        member(&mut out, "stream_options", &stream_options(req.get_set("stream_options")));
    }
    out.push(b'}');
    let system_bytes = target.system_message.as_ref().map_or(0, Vec::len);
    Rewritten { body: out, prompt_estimate: estimate_tokens(prompt_bytes + system_bytes), max_tokens }
}

/// The Responses API's fields an agent's `defaults` may fill; chat-only ones
/// (penalties, `seed`, `stop`, ...) would be refused by a Responses provider.
const RESPONSES_DEFAULTS: [&str; 3] = ["temperature", "top_p", "parallel_tool_calls"];

/// A Responses request for a provider that serves the API itself: `model`
/// becomes the upstream model and, for an agent, its instructions go first in
/// `instructions`, its defaults fill what is unset and its cap bounds
/// `max_output_tokens`; everything else is copied as it came. No usage option
/// is added: the API reports usage in its last event.
fn rewrite_responses(req: &ParsedRequest<'_>, target: &Target, upstream_model: &[u8]) -> Rewritten {
    let mut out = Vec::with_capacity(
        req.fields.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>()
            + target.instructions.as_ref().map_or(0, String::len)
            + 96,
    );
    let member = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        out.push(if out.is_empty() { b'{' } else { b',' });
        push_json_string(out, key);
        out.push(b':');
        out.extend_from_slice(value);
    };
    let (mut prompt_bytes, mut max_tokens, mut instructed) = (0, None, false);
    for (key, value) in &req.fields {
        let raw = value.get().as_bytes();
        match key.as_ref() {
            "model" => member(&mut out, key, upstream_model),
            "input" => {
                prompt_bytes += raw.len();
                member(&mut out, key, raw);
            }
            "instructions" if target.instructions.is_some() => {
                let own: Option<String> = serde_json::from_slice(raw).ok().flatten();
                instructed = true;
                member(&mut out, key, &instructions(target, own.as_deref()));
            }
            "max_output_tokens" if raw != b"null" => {
                let asked: u64 = serde_json::from_slice(raw).unwrap_or(0);
                let effective = target.max_tokens_cap.map_or(asked, |cap| asked.min(cap));
                max_tokens = Some(effective);
                member(&mut out, key, effective.to_string().as_bytes());
            }
            // An explicit null the agent has a default for: the default goes in below.
            k if raw == b"null" && RESPONSES_DEFAULTS.contains(&k) && target.defaults.iter().any(|(d, _)| d == k) => {}
            _ => member(&mut out, key, raw),
        }
    }
    if let (false, Some(_)) = (instructed, &target.instructions) {
        member(&mut out, "instructions", &instructions(target, None));
    }
    for (key, value) in &target.defaults {
        if RESPONSES_DEFAULTS.contains(&key.as_str()) && req.get_set(key).is_none() {
            member(&mut out, key, value);
        } else if MAX_TOKEN_FIELDS.contains(&key.as_str()) && max_tokens.is_none() {
            let default: u64 = serde_json::from_slice(value).unwrap_or(0);
            let effective = target.max_tokens_cap.map_or(default, |cap| default.min(cap));
            max_tokens = Some(effective);
            member(&mut out, "max_output_tokens", effective.to_string().as_bytes());
        }
    }
    if let (None, Some(cap)) = (max_tokens, target.max_tokens_cap) {
        max_tokens = Some(cap);
        member(&mut out, "max_output_tokens", cap.to_string().as_bytes());
    }
    out.push(b'}');
    let instruction_bytes = target.instructions.as_ref().map_or(0, String::len);
    Rewritten { body: out, prompt_estimate: estimate_tokens(prompt_bytes + instruction_bytes), max_tokens }
}

/// The agent's instructions, then the client's after a blank line.
fn instructions(target: &Target, own: Option<&str>) -> Vec<u8> {
    let agent = target.instructions.as_deref().unwrap_or_default();
    let text = match own.filter(|o| !o.is_empty()) {
        Some(own) => format!("{agent}\n\n{own}"),
        None => agent.to_owned(),
    };
    let mut out = Vec::with_capacity(text.len() + 2);
    push_json_string(&mut out, &text);
    out
}

/// `[system, ...messages]`, splicing raw bytes (the array was validated as
/// non-empty by the parser).
fn prepend(messages: &[u8], system: &[u8]) -> Vec<u8> {
    let open = messages.iter().position(|&b| b == b'[').unwrap_or(0);
    let rest = &messages[open + 1..];
    let mut out = Vec::with_capacity(messages.len() + system.len() + 2);
    out.push(b'[');
    out.extend_from_slice(system);
    if rest.iter().any(|b| !b.is_ascii_whitespace() && *b != b']') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

/// Completions have no system message: the instructions are prefixed to the
/// prompt (each prompt of an array; token-id prompts are left alone).
fn prefix_prompt(prompt: &RawValue, instructions: &str) -> Vec<u8> {
    let prefix = |p: &str| format!("{instructions}\n\n{p}");
    if let Ok(text) = serde_json::from_str::<Cow<'_, str>>(prompt.get()) {
        return serde_json::to_vec(&prefix(&text)).expect("JSON serialises");
    }
    if let Ok(texts) = serde_json::from_str::<Vec<Cow<'_, str>>>(prompt.get()) {
        let prefixed: Vec<String> = texts.iter().map(|t| prefix(t)).collect();
        return serde_json::to_vec(&prefixed).expect("JSON serialises");
    }
    prompt.get().as_bytes().to_vec()
}

/// The client's `stream_options` with `include_usage` forced on.
fn stream_options(client: Option<&RawValue>) -> Vec<u8> {
    let mut options: serde_json::Map<String, serde_json::Value> =
        client.and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default();
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&options).expect("JSON serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MockConfig;
    use crate::request::parse;
    use crate::upstream::{mock::MockProvider, Provider};
    use std::sync::Arc;

    fn target(instructions: Option<&str>, defaults: &[(&str, &str)], cap: Option<u64>) -> Target {
        let system =
            instructions.map(|t| serde_json::to_vec(&serde_json::json!({"role":"system","content":t})).unwrap());
        Target {
            id: "agent".into(),
            is_agent: true,
            workspace: None,
            route: Arc::new(crate::routing::Healths::default().single(
                "mock",
                Arc::new(Provider::Mock(MockProvider::new(&MockConfig {
                    stream_chunks: 1,
                    chunk_delay: Default::default(),
                }))),
                "up-model",
            )),
            client_model_json: Some(bytes::Bytes::from_static(b"\"agent\"")),
            system_message: system,
            instructions: instructions.map(str::to_owned),
            defaults: defaults.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
            max_tokens_cap: cap,
            price: Default::default(),
            memory: None,
        }
    }

    fn run(body: &str, endpoint: Endpoint, t: &Target) -> (serde_json::Value, Rewritten) {
        let req = parse(body.as_bytes(), endpoint).unwrap();
        let out = rewrite(&req, t, b"\"up-model\"");
        (serde_json::from_slice(&out.body).unwrap(), out)
    }

    #[test]
    fn injects_instructions_defaults_and_caps() {
        let t = target(Some("Be brief."), &[("temperature", "0.2"), ("top_p", "0.9")], Some(100));
        let (v, out) = run(
            r#"{"model":"agent","messages":[{"role":"user","content":"hi"}],"top_p":0.5,"max_tokens":500}"#,
            Endpoint::Chat,
            &t,
        );
        assert_eq!(v["model"], "up-model");
        assert_eq!(v["messages"][0], serde_json::json!({"role":"system","content":"Be brief."}));
        assert_eq!(v["messages"][1]["content"], "hi");
        assert_eq!(v["temperature"], 0.2);
        assert_eq!(v["top_p"], 0.5, "the client's value wins over the default");
        assert_eq!(v["max_tokens"], 100, "capped");
        assert_eq!(out.max_tokens, Some(100));
        assert!(v.get("stream_options").is_none());
    }

    #[test]
    fn sets_cap_when_unset_and_keeps_lower_values() {
        let t = target(None, &[], Some(100));
        let (v, _) = run(r#"{"model":"agent","messages":[{"role":"user","content":"hi"}]}"#, Endpoint::Chat, &t);
        assert_eq!(v["max_tokens"], 100);
        let (v, _) = run(
            r#"{"model":"agent","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":7}"#,
            Endpoint::Chat,
            &t,
        );
        assert_eq!(v["max_completion_tokens"], 7);
        assert!(v.get("max_tokens").is_none());
    }

    #[test]
    fn forces_include_usage_and_keeps_other_stream_options() {
        let t = target(None, &[], None);
        let (v, _) = run(
            r#"{"model":"agent","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"x":1}}"#,
            Endpoint::Chat,
            &t,
        );
        assert_eq!(v["stream_options"], serde_json::json!({"x":1,"include_usage":true}));
    }

    #[test]
    fn null_fields_take_defaults_and_completions_get_prefixed() {
        let t = target(Some("Rules."), &[("temperature", "0.2")], None);
        let (v, _) = run(r#"{"model":"agent","prompt":["a","b"],"temperature":null}"#, Endpoint::Completions, &t);
        assert_eq!(v["temperature"], 0.2);
        assert_eq!(v["prompt"], serde_json::json!(["Rules.\n\na", "Rules.\n\nb"]));
        let (v, _) = run(r#"{"model":"agent","input":"x","encoding_format":"float"}"#, Endpoint::Embeddings, &t);
        assert_eq!(v, serde_json::json!({"model":"up-model","input":"x","encoding_format":"float"}));
    }

    #[test]
    fn a_native_responses_request_gets_the_agent_in_its_own_fields() {
        let t = target(
            Some("Be brief."),
            &[("temperature", "0.2"), ("presence_penalty", "1"), ("max_tokens", "80")],
            Some(100),
        );
        let (v, out) = run(
            r#"{"model":"agent","input":"hi","instructions":"In French.","top_p":null,"stream":true}"#,
            Endpoint::Responses,
            &t,
        );
        assert_eq!(v["model"], "up-model");
        assert_eq!(v["instructions"], "Be brief.\n\nIn French.", "the agent's first, then the client's");
        assert_eq!(v["temperature"], 0.2);
        assert!(v.get("presence_penalty").is_none(), "a chat-only default is not sent to a Responses provider");
        assert_eq!(v["max_output_tokens"], 80);
        assert!(v.get("stream_options").is_none(), "the Responses API reports usage without being asked");
        assert_eq!(v["input"], "hi");
        assert_eq!(out.max_tokens, Some(80));
        let (v, _) =
            run(r#"{"model":"agent","input":[],"max_output_tokens":5000,"temperature":null}"#, Endpoint::Responses, &t);
        assert_eq!(v["instructions"], "Be brief.");
        assert_eq!(v["max_output_tokens"], 100, "the cap bounds the client's ceiling");
        assert_eq!(v["temperature"], 0.2, "an explicit null takes the agent's default, once");
        let plain = target(None, &[], None);
        let body = r#"{"model":"agent","input":"x","tools":[{"type":"web_search"}],"store":true}"#;
        let (v, _) = run(body, Endpoint::Responses, &plain);
        assert_eq!(v, serde_json::json!({"model":"up-model","input":"x","tools":[{"type":"web_search"}],"store":true}));
    }
}
