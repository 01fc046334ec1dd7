//! The config file as written: serde types that reject unknown fields. These are
//! validated into [`super::Config`]; nothing else reads them.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub agents: BTreeMap<String, RawAgent>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub plans: BTreeMap<String, RawPlan>,
    #[serde(default)]
    pub workspaces: BTreeMap<String, RawWorkspace>,
    #[serde(default)]
    pub credits: RawCredits,
    #[serde(default)]
    pub events: super::events::RawEvents,
    #[serde(default)]
    pub webhooks: super::events::RawWebhooks,
    #[serde(default)]
    pub responses: super::responses::RawResponses,
    #[serde(default)]
    pub schedules: super::schedules::RawSchedules,
    #[serde(default)]
    pub cors: super::cors::RawCors,
    #[serde(default)]
    pub metrics: super::metrics::RawMetrics,
    #[serde(default)]
    pub routing: super::routing::RawRouting,
    #[serde(default)]
    pub tracing: super::tracing::RawTracing,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCredits {
    pub flush_interval_ms: Option<u64>,
    pub reservation_ttl_ms: Option<u64>,
    pub reaper_interval_ms: Option<u64>,
    pub reserve_output_tokens: Option<u64>,
    pub lease_requests: Option<u64>,
}

/// Micro-credits; see `config::Price`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub request: Option<u64>,
    pub input_per_1k: Option<u64>,
    pub output_per_1k: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub message_credits: Option<u64>,
    pub integration_credits: Option<u64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub key_rpm: Option<u32>,
    pub key_tpm: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkspace {
    pub name: Option<String>,
    pub plan: Option<String>,
    pub time_zone: Option<String>,
    pub low_credits_threshold: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<String>,
    pub path: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    pub cluster: Option<bool>,
    pub prefix: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub command_timeout_ms: Option<u64>,
    pub key_cache_ttl_ms: Option<u64>,
    pub key_stale_if_error_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub max_upstream_body_bytes: Option<u64>,
    pub max_connections: Option<u64>,
    pub workers: Option<u64>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum RawProvider {
    Openai(RawOpenAi),
    Mock(RawMock),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenAi {
    pub base_url: String,
    pub api_key: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
    pub retry_base_ms: Option<u64>,
    pub max_retry_after_ms: Option<u64>,
    pub pool_max_idle_per_host: Option<usize>,
    /// PEM file of extra CA certificates to trust (a self-hosted upstream).
    pub ca_file: Option<String>,
    /// `"translate"` (default) or `"native"`.
    pub responses: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMock {
    pub stream_chunks: Option<u32>,
    pub chunk_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub targets: Option<Vec<super::routing::RawTarget>>,
    #[serde(default)]
    pub price: RawPrice,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub targets: Option<Vec<super::routing::RawTarget>>,
    pub instructions: Option<String>,
    #[serde(default)]
    pub defaults: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub caps: RawCaps,
    #[serde(default)]
    pub price: RawPrice,
    pub memory: Option<crate::memory::MemoryPolicy>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCaps {
    pub max_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: String,
    pub sha256: String,
    pub scope: Option<String>,
    pub models: Option<Vec<String>>,
}
