//! `[providers]`, `[models]` and `[agents]`: the upstreams, the model aliases
//! and agents served on them, and what each call costs. Separate because it
//! is the catalogue of what the gateway serves, checked against itself
//! (every model and agent names a defined provider).

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::raw::{RawAgent, RawModel, RawPrice, RawProvider};
use super::routing::TargetConfig;
use super::{ConfigError, Validator};
use crate::secret::Secret;

/// Request fields an agent's `defaults` may not set: they are the request
/// itself (config agents and workspace agents alike).
pub const RESERVED_FIELDS: &[&str] = &["model", "messages", "prompt", "input", "stream", "stream_options"];

/// What a call to an agent or model costs, in micro-credits (1 credit =
/// 1,000,000 micro-credits): integers, so no float ever touches money.
/// Serialisable because a workspace agent stores its price (`agents::store`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Price {
    pub request: u64,
    pub input_per_1k: u64,
    pub output_per_1k: u64,
}

impl Price {
    pub fn is_free(&self) -> bool {
        *self == Price::default()
    }
}

fn price(p: RawPrice) -> Price {
    Price {
        request: p.request.unwrap_or(0),
        input_per_1k: p.input_per_1k.unwrap_or(0),
        output_per_1k: p.output_per_1k.unwrap_or(0),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProviderConfig {
    OpenAi(OpenAiConfig),
    Mock(MockConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// Base URL up to and including the version segment, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret<String>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub connect_timeout: Duration,
    /// Time allowed from sending the request to the response headers.
    pub first_byte_timeout: Duration,
    /// Longest silence allowed between two body frames.
    pub idle_timeout: Duration,
    pub max_retries: u32,
    pub retry_base: Duration,
    /// A `Retry-After` longer than this is not waited for: the error goes back.
    pub max_retry_after: Duration,
    pub pool_max_idle_per_host: usize,
    /// `responses = "native"`: the provider serves `POST /responses` itself, so
    /// the Responses API is forwarded to it (model and agent fields rewritten)
    /// instead of translated onto chat completions.
    pub native_responses: bool,
    /// Extra CA certificates trusted for this upstream, beside the public
    /// roots (`ca_file`: a self-hosted vLLM behind a private CA).
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    pub stream_chunks: u32,
    pub chunk_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Where calls go: one target, or several balanced and failed over.
    pub targets: Vec<TargetConfig>,
    pub price: Price,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where calls go: one target, or several balanced and failed over.
    pub targets: Vec<TargetConfig>,
    pub instructions: Option<String>,
    /// Sampling parameters applied only where the request leaves them unset.
    pub defaults: serde_json::Map<String, serde_json::Value>,
    /// Ceiling on `max_tokens` / `max_completion_tokens`.
    pub max_tokens_cap: Option<u64>,
    pub price: Price,
    /// What the agent's conversations keep in view (`None`: everything the
    /// store hands back, up to `responses.max_history_items`).
    pub memory: Option<crate::memory::MemoryPolicy>,
}

impl Validator<'_> {
    pub(super) fn provider(&self, name: &str, raw: RawProvider) -> Result<ProviderConfig, ConfigError> {
        let at = |field: &str| format!("providers.{name}.{field}");
        match raw {
            RawProvider::Mock(m) => Ok(ProviderConfig::Mock(MockConfig {
                stream_chunks: m.stream_chunks.unwrap_or(8).max(1),
                chunk_delay: Duration::from_millis(m.chunk_delay_ms.unwrap_or(0)),
            })),
            RawProvider::Openai(o) => {
                let base = o.base_url.trim_end_matches('/').to_owned();
                let uri: Uri = base.parse().map_err(|e| self.err(at("base_url"), format!("{base:?}: {e}")))?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err(self.err(at("base_url"), format!("{base:?} is not an http(s) URL with a host")));
                }
                if uri.query().is_some() {
                    return Err(self.err(at("base_url"), "must not have a query string"));
                }
                let mut headers = Vec::new();
                for (k, v) in o.headers {
                    let name = HeaderName::try_from(k.as_str())
                        .map_err(|e| self.err(at(&format!("headers.{k}")), e.to_string()))?;
                    let mut value =
                        HeaderValue::try_from(v).map_err(|e| self.err(at(&format!("headers.{k}")), e.to_string()))?;
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
                let api_key = o.api_key.filter(|k| !k.is_empty()).map(Secret::new);
                if let Some(key) = &api_key {
                    HeaderValue::try_from(format!("Bearer {}", key.expose()))
                        .map_err(|_| self.err(at("api_key"), "contains characters not allowed in a header"))?;
                }
                let native_responses = match o.responses.as_deref() {
                    None | Some("translate") => false,
                    Some("native") => true,
                    Some(other) => {
                        return Err(self.err(at("responses"), format!("{other:?} is not \"translate\" or \"native\"")))
                    }
                };
                let ca_certs = match &o.ca_file {
                    None => Vec::new(),
                    Some(path) => {
                        super::tls::ca_certs(std::path::Path::new(path)).map_err(|e| self.err(at("ca_file"), e))?
                    }
                };
                Ok(ProviderConfig::OpenAi(OpenAiConfig {
                    native_responses,
                    ca_certs,
                    base_url: base,
                    api_key,
                    headers,
                    connect_timeout: self.millis(&at("connect_timeout_ms"), o.connect_timeout_ms, 5_000)?,
                    first_byte_timeout: self.millis(&at("first_byte_timeout_ms"), o.first_byte_timeout_ms, 120_000)?,
                    idle_timeout: self.millis(&at("idle_timeout_ms"), o.idle_timeout_ms, 60_000)?,
                    max_retries: o.max_retries.unwrap_or(2),
                    retry_base: self.millis(&at("retry_base_ms"), o.retry_base_ms, 250)?,
                    max_retry_after: Duration::from_millis(o.max_retry_after_ms.unwrap_or(20_000)),
                    pool_max_idle_per_host: o.pool_max_idle_per_host.unwrap_or(512),
                }))
            }
        }
    }

    pub(super) fn model(
        &self,
        id: &str,
        m: RawModel,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<ModelConfig, ConfigError> {
        self.id(&format!("models.{id}"), id)?;
        let targets = self.targets(&format!("models.{id}"), (m.provider, m.upstream_model), m.targets, providers)?;
        Ok(ModelConfig { targets, price: price(m.price) })
    }

    pub(super) fn agent(
        &self,
        id: &str,
        a: RawAgent,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<AgentConfig, ConfigError> {
        self.id(&format!("agents.{id}"), id)?;
        let targets = self.targets(&format!("agents.{id}"), (a.provider, a.upstream_model), a.targets, providers)?;
        let mut defaults = serde_json::Map::new();
        for (k, v) in a.defaults {
            if RESERVED_FIELDS.contains(&k.as_str()) {
                return Err(self.err(format!("agents.{id}.defaults.{k}"), "is part of the request, not a default"));
            }
            defaults.insert(k, v);
        }
        if a.caps.max_tokens == Some(0) {
            return Err(self.err(format!("agents.{id}.caps.max_tokens"), "must be greater than 0"));
        }
        if let Some(Err((field, e))) = a.memory.as_ref().map(|m| m.validate()) {
            return Err(self.err(format!("agents.{id}.memory.{field}"), e.to_string()));
        }
        Ok(AgentConfig {
            memory: a.memory,
            targets,
            instructions: a.instructions.filter(|i| !i.trim().is_empty()),
            defaults,
            max_tokens_cap: a.caps.max_tokens,
            price: price(a.price),
        })
    }

    pub(super) fn provider_ref(
        &self,
        path: &str,
        name: &str,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<(), ConfigError> {
        if providers.contains_key(name) {
            Ok(())
        } else {
            Err(self.err(path, format!("unknown provider {name:?} (define it under [providers.{name}])")))
        }
    }

    pub(super) fn upstream_model(&self, path: &str, model: &str) -> Result<(), ConfigError> {
        if model.trim().is_empty() {
            return Err(self.err(path, "must not be empty"));
        }
        Ok(())
    }
}
