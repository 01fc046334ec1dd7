//! Model calls as events: `request.completed` for every call of a workspace
//! key, `agent.execution.started|completed` around agent calls, one
//! `tool.invoked` per tool call the model returned, and `ai_message` with the
//! assistant's answer to a chat call.
//!
//! [`EventSink`] wraps the usage sink: it runs once per call, after the
//! answer, on the request's task, and only builds events and hands them to
//! the bus (no I/O, no waiting).

use std::sync::Arc;

use serde::Serialize;

use super::{EventType, Events};
use crate::usage::{UsageRecord, UsageSink};

pub struct EventSink {
    inner: Arc<dyn UsageSink>,
    events: Arc<Events>,
}

impl EventSink {
    pub fn new(inner: Arc<dyn UsageSink>, events: Arc<Events>) -> EventSink {
        EventSink { inner, events }
    }
}

#[derive(Serialize)]
struct Completed<'a> {
    request_id: &'a str,
    key_id: Option<&'a str>,
    /// The agent id or model alias the client asked for.
    agent: &'a str,
    is_agent: bool,
    provider: &'a str,
    upstream_model: &'a str,
    /// Targets tried: more than 1 when the call fell back.
    attempts: u32,
    endpoint: &'a str,
    status: u16,
    outcome: &'a str,
    streamed: bool,
    input_tokens: u64,
    output_tokens: u64,
    tokens_estimated: bool,
    /// Micro-credits charged.
    credits: u64,
    latency_ms: u64,
}

#[derive(Serialize)]
struct Execution<'a> {
    agent_id: &'a str,
    /// The request id: one execution per model call.
    execution_id: &'a str,
    key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
}

#[derive(Serialize)]
struct Tool<'a> {
    request_id: &'a str,
    agent: &'a str,
    tool_call_id: &'a str,
    tool_name: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    request_id: &'a str,
    agent: &'a str,
    key_id: Option<&'a str>,
    role: &'static str,
    content: &'a str,
    truncated: bool,
    finish_reason: Option<&'a str>,
    streamed: bool,
}

/// Emits `agent.execution.started` (the call passed admission).
pub fn agent_started(events: &Events, workspace: &Arc<str>, r: &UsageRecord, key_id: Option<&str>) {
    let data = Execution { agent_id: &r.model, execution_id: &r.request_id, key_id, status: None, duration_ms: None };
    events.emit(workspace, EventType::AgentExecutionStarted, &data);
}

impl UsageSink for EventSink {
    fn record(&self, r: UsageRecord) {
        if let Some(ws) = r.workspace.clone() {
            let key_id = r.key_id.as_deref();
            let latency_ms = r.latency.as_millis() as u64;
            let completed = Completed {
                request_id: &r.request_id,
                key_id,
                agent: &r.model,
                is_agent: r.agent,
                provider: &r.provider,
                upstream_model: &r.upstream_model,
                attempts: r.attempts,
                endpoint: r.endpoint,
                status: r.status,
                outcome: r.outcome.as_str(),
                streamed: r.streamed,
                input_tokens: r.usage.prompt_tokens,
                output_tokens: r.usage.completion_tokens,
                tokens_estimated: r.usage.estimated,
                credits: r.credits,
                latency_ms,
            };
            self.events.emit(&ws, EventType::RequestCompleted, &completed);
            if let Some(t) = &r.transcript {
                for call in t.tool_calls.iter().filter(|c| !c.id.is_empty() || !c.name.is_empty()) {
                    let data = Tool {
                        request_id: &r.request_id,
                        agent: &r.model,
                        tool_call_id: &call.id,
                        tool_name: &call.name,
                    };
                    self.events.emit(&ws, EventType::ToolInvoked, &data);
                }
                if r.outcome == crate::usage::Outcome::Completed {
                    let data = Message {
                        request_id: &r.request_id,
                        agent: &r.model,
                        key_id,
                        role: "assistant",
                        content: &t.content,
                        truncated: t.truncated,
                        finish_reason: t.finish_reason.as_deref(),
                        streamed: r.streamed,
                    };
                    self.events.emit(&ws, EventType::AiMessage, &data);
                }
            }
            if r.agent {
                let status = if r.outcome == crate::usage::Outcome::Completed { "success" } else { r.outcome.as_str() };
                let data = Execution {
                    agent_id: &r.model,
                    execution_id: &r.request_id,
                    key_id,
                    status: Some(status),
                    duration_ms: Some(latency_ms),
                };
                self.events.emit(&ws, EventType::AgentExecutionCompleted, &data);
            }
        }
        self.inner.record(r);
    }
}
