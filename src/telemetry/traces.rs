//! OpenTelemetry traces (`[tracing]`), through `tracing-opentelemetry`: the
//! gateway's spans are ordinary `tracing` spans of target [`TARGET`] at
//! `TRACE` level, which the log's filter never enables (log lines stay as
//! they are) and the OpenTelemetry layer always does. With traces off no
//! layer wants them, so the request path pays one disabled-callsite check
//! per span.
//!
//! A trace per model request: `request` (server span: route, method,
//! status) → `{operation} {model}` (the model call, with the OpenTelemetry
//! GenAI attributes: `gen_ai.operation.name`, `gen_ai.request.model`,
//! `gen_ai.provider.name`, `gen_ai.response.model`,
//! `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`) → `admit`,
//! one `upstream` client span per attempt, and `settle`. A stream's spans
//! end with the stream. The client's W3C `traceparent` (and `tracestate`)
//! is the parent; each upstream attempt sends its own `traceparent`, so
//! a traced upstream (vLLM) joins the trace. Prompts, answers and keys are
//! never attributes.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{OtlpConfig, OtlpProtocol};

/// The `tracing` target of every span exported as a trace.
pub const TARGET: &str = "tollgate::trace";

static ON: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported (so the request path builds spans).
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The exporting provider: keep it until exit, then [`shutdown`] it so the
/// spans still batched are sent.
pub fn provider(config: &OtlpConfig) -> Result<SdkTracerProvider, String> {
    let protocol = match config.protocol {
        OtlpProtocol::Protobuf => Protocol::HttpBinary,
        OtlpProtocol::Json => Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(config.endpoint.clone())
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    ON.store(true, Ordering::Relaxed);
    Ok(provider)
}

/// The layer that turns [`TARGET`] spans into OpenTelemetry spans.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let only_ours = tracing_subscriber::filter::filter_fn(|meta| meta.target() == TARGET);
    tracing_opentelemetry::layer().with_tracer(provider.tracer("tollgate")).with_filter(only_ours)
}

/// Sends what is batched (bounded by the exporter's timeout).
pub fn shutdown(provider: &SdkTracerProvider) {
    if let Err(e) = provider.shutdown() {
        eprintln!("tollgate: sending the last traces failed: {e}");
    }
}

/// The server span of one request, its parent the client's `traceparent`.
pub fn request_span(method: &http::Method, route: &'static str, headers: &HeaderMap) -> tracing::Span {
    if !on() {
        return tracing::Span::none();
    }
    let span = tracing::span!(
        target: TARGET,
        tracing::Level::TRACE,
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(parent);
    span
}

/// Records the response's status on a request span.
pub fn record_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct Outgoing(Vec<(HeaderName, HeaderValue)>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.push((name, value));
        }
    }
}

/// The GenAI operation of an endpoint (`gen_ai.operation.name`).
pub fn operation(endpoint: crate::request::Endpoint) -> &'static str {
    use crate::request::Endpoint;
    match endpoint {
        Endpoint::Chat | Endpoint::Responses => "chat",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embeddings",
    }
}

/// The model call's span, a child of the current (request) span; the
/// accounting records its usage and outcome when the answer ends.
pub fn model_span(endpoint: crate::request::Endpoint, model: &str, stream: bool) -> tracing::Span {
    if !on() {
        return tracing::Span::none();
    }
    let operation = operation(endpoint);
    tracing::span!(
        target: TARGET,
        tracing::Level::TRACE,
        "model call",
        otel.name = format!("{operation} {model}"),
        gen_ai.operation.name = operation,
        gen_ai.request.model = model,
        gen_ai.request.stream = stream,
        gen_ai.provider.name = tracing::field::Empty,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        tollgate.attempts = tracing::field::Empty,
        tollgate.outcome = tracing::field::Empty,
        tollgate.credits = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records how a model call ended on its span.
pub fn record_model_call(span: &tracing::Span, r: &crate::usage::UsageRecord) {
    if span.is_none() {
        return;
    }
    span.record("gen_ai.provider.name", &*r.provider);
    span.record("gen_ai.response.model", &*r.upstream_model);
    span.record("gen_ai.usage.input_tokens", r.usage.prompt_tokens);
    span.record("gen_ai.usage.output_tokens", r.usage.completion_tokens);
    span.record("tollgate.attempts", r.attempts);
    span.record("tollgate.outcome", r.outcome.as_str());
    span.record("tollgate.credits", r.credits);
    if r.outcome == crate::usage::Outcome::UpstreamFailed {
        span.record("otel.status_code", "ERROR");
    }
}

/// A step of the model call (`admit`, `settle`), a child of `parent`.
pub fn step(parent: &tracing::Span, name: &'static str) -> tracing::Span {
    if parent.is_none() {
        return tracing::Span::none();
    }
    tracing::span!(target: TARGET, parent: parent, tracing::Level::TRACE, "step", otel.name = name)
}

/// One attempt on an upstream target (a client span, to its headers).
pub fn upstream_span(target: &str, provider: &str, model: &str, attempt: u32) -> tracing::Span {
    if !on() {
        return tracing::Span::none();
    }
    tracing::span!(
        target: TARGET,
        tracing::Level::TRACE,
        "upstream",
        otel.name = format!("upstream {target}"),
        otel.kind = "client",
        gen_ai.provider.name = provider,
        gen_ai.request.model = model,
        tollgate.attempt = attempt,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records a failed attempt.
pub fn record_failure(span: &tracing::Span, kind: &'static str) {
    span.record("error.type", kind);
    span.record("otel.status_code", "ERROR");
}

/// `traceparent` (and `tracestate`) for a call made as `span`.
pub fn outgoing_for(span: &tracing::Span) -> Vec<(HeaderName, HeaderValue)> {
    if span.is_none() {
        return Vec::new();
    }
    let mut out = Outgoing(Vec::new());
    TraceContextPropagator::new().inject_context(&span.context(), &mut out);
    out.0
}
