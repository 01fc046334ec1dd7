//! Typed configuration: TOML in, validated types out.
//!
//! Loading goes file → TOML tree → `${VAR}` interpolation → `raw` serde types
//! (unknown fields rejected) → [`Config`]. Every error names the file, the field
//! path and the reason, so `tollgate check-config` points at the line to fix.

mod events;
mod interpolate;
mod raw;
mod responses;

pub use events::{EventsConfig, WebhooksConfig};
pub use responses::ResponsesConfig;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use crate::secret::Secret;
use raw::{RawAgent, RawConfig, RawCredits, RawKey, RawModel, RawPlan, RawPrice, RawProvider, RawStore};

/// The config shipped in `config/tollgate.toml`, compiled in so `tollgate serve`
/// works from any directory with no file at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/tollgate.toml");

/// Request fields an agent's `defaults` may not set: they are the request itself.
const RESERVED_FIELDS: &[&str] = &["model", "messages", "prompt", "input", "stream", "stream_options"];

#[derive(Debug, thiserror::Error)]
#[error("{origin}: {path}: {reason}")]
pub struct ConfigError {
    pub origin: String,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where this config came from (a path, or `<embedded default>`).
    pub origin: String,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub agents: BTreeMap<String, AgentConfig>,
    pub keys: Vec<KeyConfig>,
    pub store: StoreConfig,
    /// Plans by name; `default` always exists.
    pub plans: BTreeMap<String, PlanConfig>,
    /// Workspaces created in the store at start when missing.
    pub workspaces: BTreeMap<String, WorkspaceConfig>,
    pub credits: CreditsConfig,
    pub events: EventsConfig,
    pub webhooks: WebhooksConfig,
    pub responses: ResponsesConfig,
}

/// How the credit ledger runs (see `credits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditsConfig {
    /// Embedded store: how often balances and usage are written behind; the
    /// most a kill -9 can lose.
    pub flush_interval: Duration,
    /// A reservation whose settle never comes (its replica died) is released
    /// after this long.
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    pub reaper_interval: Duration,
    /// Output tokens reserved when neither the request nor the agent bounds
    /// them (`max_tokens`); the settle charges what was really used.
    pub reserve_output_tokens: u64,
}

impl Default for CreditsConfig {
    fn default() -> Self {
        CreditsConfig {
            flush_interval: Duration::from_secs(1),
            reservation_ttl: Duration::from_secs(600),
            reaper_interval: Duration::from_secs(10),
            reserve_output_tokens: 4096,
        }
    }
}

/// What a call to an agent or model costs, in micro-credits (1 credit =
/// 1,000,000 micro-credits): integers, so no float ever touches money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// What a workspace's plan grants: monthly credit allowances (seed 000's two
/// kinds, in whole credits) and rate limits. `None` means not metered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanConfig {
    pub message_credits: Option<u64>,
    pub integration_credits: Option<u64>,
    /// Requests and tokens per minute for the whole workspace.
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Per-key limits for keys that set none of their own.
    pub key_rpm: Option<u32>,
    pub key_tpm: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    pub name: Option<String>,
    pub plan: String,
    /// IANA name for the monthly refresh; `None` is UTC.
    pub time_zone: Option<String>,
    /// Micro-credits below which `credits.low` fires.
    pub low_credits_threshold: Option<u64>,
}

/// The plan every workspace gets unless told otherwise.
pub const DEFAULT_PLAN: &str = "default";

fn price(p: RawPrice) -> Price {
    Price {
        request: p.request.unwrap_or(0),
        input_per_1k: p.input_per_1k.unwrap_or(0),
        output_per_1k: p.output_per_1k.unwrap_or(0),
    }
}

/// Where durable state lives (see `store`).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// How long a key looked up in the store is trusted before it is read
    /// again: the bound on how long a revocation takes on other replicas.
    pub key_cache_ttl: Duration,
    /// While the store cannot answer, a key read from it within this long is
    /// still served (stale-if-error); zero turns it off.
    pub key_stale_if_error: Duration,
}

#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// A SQLite file.
    Embedded { path: std::path::PathBuf },
    Redis {
        urls: Vec<String>,
        cluster: bool,
        /// Prefix of every Redis key, so deployments can share a Redis.
        prefix: String,
        connect_timeout: Duration,
        command_timeout: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted; larger bodies get 413 before being read.
    pub max_body_bytes: usize,
    /// A new connection must have sent its first request's headers within
    /// this time (first byte, h2 preface and settings included; slowloris guard).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long
    /// (HTTP/1 keep-alive, h2 kept open by pings).
    pub idle_timeout: Duration,
    /// A client must send its whole body within this time.
    pub body_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests and streams.
    pub shutdown_grace: Duration,
    /// Largest non-stream upstream response the gateway buffers to rewrite.
    pub max_upstream_body_bytes: usize,
    /// Open client connections of the whole process at most (all workers
    /// share it); at the bound the stalest idle connection makes room, and a
    /// newcomer waits up to `header_read_timeout` for a slot (see `server::connections`).
    pub max_connections: usize,
    /// Worker threads, each with its own runtime and listener (see `runtime`).
    pub workers: usize,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub json: bool,
}

#[derive(Debug, Clone)]
pub enum ProviderConfig {
    OpenAi(OpenAiConfig),
    Mock(MockConfig),
}

#[derive(Debug, Clone)]
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
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub stream_chunks: u32,
    pub chunk_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub provider: String,
    pub upstream_model: String,
    pub price: Price,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub provider: String,
    pub upstream_model: String,
    pub instructions: Option<String>,
    /// Sampling parameters applied only where the request leaves them unset.
    pub defaults: serde_json::Map<String, serde_json::Value>,
    /// Ceiling on `max_tokens` / `max_completion_tokens`.
    pub max_tokens_cap: Option<u64>,
    pub price: Price,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    pub sha256: [u8; 32],
    /// `chat` (the model API) or `admin` (everything, acting in the `admin`
    /// workspace). Either way the key itself cannot be changed through the API.
    pub scope: crate::scope::Scope,
    /// Models and agents the key may use; `None` means all.
    pub models: Option<Vec<String>>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            path: "(file)".into(),
            reason: e.to_string(),
        })?;
        Config::from_toml(&text, &origin)
    }

    /// The compiled-in default config.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_toml(EMBEDDED_DEFAULT, "<embedded default config>")
    }

    /// Parses TOML text, interpolating `${VAR}` from the process environment.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, origin, &|name| std::env::var(name).ok())
    }

    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let err = |path: &str, reason: String| ConfigError { origin: origin.into(), path: path.into(), reason };
        let mut tree: toml::Value = toml::from_str(text).map_err(|e| err("(syntax)", e.to_string()))?;
        interpolate::interpolate_tree(&mut tree, &mut Vec::new(), env).map_err(|(path, reason)| err(&path, reason))?;
        let raw: RawConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            err(if path == "." { "(top level)" } else { &path }, e.into_inner().to_string())
        })?;
        Validator { origin }.config(raw)
    }
}

struct Validator<'a> {
    origin: &'a str,
}

impl Validator<'_> {
    fn err(&self, path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError { origin: self.origin.into(), path: path.into(), reason: reason.into() }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let s = raw.server;
        let listen = s.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let server = ServerConfig {
            listen: listen.parse().map_err(|e| self.err("server.listen", format!("{listen:?}: {e}")))?,
            max_body_bytes: self.positive("server.max_body_bytes", s.max_body_bytes, 4 << 20)? as usize,
            header_read_timeout: self.millis("server.header_read_timeout_ms", s.header_read_timeout_ms, 10_000)?,
            idle_timeout: self.millis("server.idle_timeout_ms", s.idle_timeout_ms, 60_000)?,
            body_read_timeout: self.millis("server.body_read_timeout_ms", s.body_read_timeout_ms, 30_000)?,
            shutdown_grace: self.millis("server.shutdown_grace_ms", s.shutdown_grace_ms, 30_000)?,
            max_upstream_body_bytes: self.positive(
                "server.max_upstream_body_bytes",
                s.max_upstream_body_bytes,
                64 << 20,
            )? as usize,
            max_connections: self.positive("server.max_connections", s.max_connections, 10_000)? as usize,
            workers: self.positive(
                "server.workers",
                s.workers,
                std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            )? as usize,
        };
        let log = LogConfig {
            level: raw.log.level.unwrap_or_else(|| "info".into()),
            json: match raw.log.format.as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => return Err(self.err("log.format", format!("{other:?} is not \"text\" or \"json\""))),
            },
        };
        tracing_subscriber::EnvFilter::try_new(&log.level)
            .map_err(|e| self.err("log.level", format!("{:?}: {e}", log.level)))?;

        let mut providers = BTreeMap::new();
        for (name, p) in raw.providers {
            let provider = self.provider(&name, p)?;
            providers.insert(name, provider);
        }
        let mut models = BTreeMap::new();
        for (id, m) in raw.models {
            models.insert(id.clone(), self.model(&id, m, &providers)?);
        }
        let mut agents = BTreeMap::new();
        for (id, a) in raw.agents {
            if models.contains_key(&id) {
                return Err(self.err(format!("agents.{id}"), "the same id is also a model alias; ids must be unique"));
            }
            agents.insert(id.clone(), self.agent(&id, a, &providers)?);
        }
        let keys = raw
            .keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| self.key(i, k, &models, &agents))
            .collect::<Result<Vec<_>, _>>()?;
        let store = self.store(raw.store)?;
        let credits = self.credits(raw.credits)?;
        let events = self.events(raw.events)?;
        let webhooks = self.webhooks(raw.webhooks)?;
        let responses = self.responses(raw.responses)?;
        let mut plans = BTreeMap::new();
        plans.insert(DEFAULT_PLAN.to_owned(), PlanConfig::default());
        for (name, plan) in raw.plans {
            plans.insert(name.clone(), self.plan(&name, plan)?);
        }
        let mut workspaces = BTreeMap::new();
        for (id, ws) in raw.workspaces {
            let plan = ws.plan.unwrap_or_else(|| DEFAULT_PLAN.into());
            if !plans.contains_key(&plan) {
                return Err(self.err(format!("workspaces.{id}.plan"), format!("unknown plan {plan:?}")));
            }
            if let Some(tz) = ws.time_zone.as_deref().filter(|tz| crate::clock::parse_time_zone(tz).is_none()) {
                return Err(self.err(format!("workspaces.{id}.time_zone"), format!("{tz:?} is not an IANA time zone")));
            }
            workspaces.insert(
                id,
                WorkspaceConfig {
                    name: ws.name,
                    plan,
                    time_zone: ws.time_zone,
                    low_credits_threshold: ws.low_credits_threshold,
                },
            );
        }
        Ok(Config {
            origin: self.origin.into(),
            server,
            log,
            providers,
            models,
            agents,
            keys,
            store,
            plans,
            workspaces,
            credits,
            events,
            webhooks,
            responses,
        })
    }

    fn plan(&self, name: &str, p: RawPlan) -> Result<PlanConfig, ConfigError> {
        self.id(&format!("plans.{name}"), name)?;
        if [p.rpm, p.tpm, p.key_rpm, p.key_tpm].contains(&Some(0)) {
            return Err(self.err(format!("plans.{name}"), "rpm, tpm, key_rpm and key_tpm must be greater than 0"));
        }
        // Whole credits, stored as micro-credits within what Lua counts exactly.
        const MAX_CREDITS: u64 = crate::units::MAX_BALANCE / crate::units::MICRO;
        if p.message_credits.max(p.integration_credits).is_some_and(|c| c > MAX_CREDITS) {
            return Err(self.err(format!("plans.{name}"), format!("credit allowances must be at most {MAX_CREDITS}")));
        }
        Ok(PlanConfig {
            message_credits: p.message_credits,
            integration_credits: p.integration_credits,
            rpm: p.rpm,
            tpm: p.tpm,
            key_rpm: p.key_rpm,
            key_tpm: p.key_tpm,
        })
    }

    fn credits(&self, c: RawCredits) -> Result<CreditsConfig, ConfigError> {
        let d = CreditsConfig::default();
        let ms = |d: Duration| d.as_millis() as u64;
        Ok(CreditsConfig {
            flush_interval: self.millis("credits.flush_interval_ms", c.flush_interval_ms, ms(d.flush_interval))?,
            reservation_ttl: self.millis("credits.reservation_ttl_ms", c.reservation_ttl_ms, ms(d.reservation_ttl))?,
            reaper_interval: self.millis("credits.reaper_interval_ms", c.reaper_interval_ms, ms(d.reaper_interval))?,
            reserve_output_tokens: self.positive(
                "credits.reserve_output_tokens",
                c.reserve_output_tokens,
                d.reserve_output_tokens,
            )?,
        })
    }

    fn store(&self, s: RawStore) -> Result<StoreConfig, ConfigError> {
        let backend = match s.backend.as_deref().unwrap_or("embedded") {
            "embedded" => {
                if !s.urls.is_empty() || s.cluster.is_some() || s.prefix.is_some() {
                    return Err(self.err("store", "urls, cluster and prefix are settings of backend = \"redis\""));
                }
                let path = s.path.unwrap_or_else(|| "data/tollgate.db".into());
                if path.trim().is_empty() {
                    return Err(self.err("store.path", "must not be empty"));
                }
                StoreBackend::Embedded { path: path.into() }
            }
            "redis" => {
                if s.path.is_some() {
                    return Err(self.err("store.path", "is a setting of backend = \"embedded\""));
                }
                let cluster = s.cluster.unwrap_or(false);
                match (cluster, s.urls.len()) {
                    (_, 0) => return Err(self.err("store.urls", "needs at least one redis:// URL")),
                    (false, n) if n > 1 => {
                        return Err(
                            self.err("store.urls", "standalone Redis takes one URL (set cluster = true for several)")
                        )
                    }
                    _ => {}
                }
                for (i, url) in s.urls.iter().enumerate() {
                    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                        return Err(self.err(format!("store.urls.{i}"), format!("{url:?} is not a redis:// URL")));
                    }
                }
                let prefix = s.prefix.unwrap_or_else(|| "tollgate".into());
                if prefix.is_empty() || prefix.contains(['{', '}']) {
                    return Err(self.err("store.prefix", "must be non-empty, without braces"));
                }
                StoreBackend::Redis {
                    urls: s.urls,
                    cluster,
                    prefix,
                    connect_timeout: self.millis("store.connect_timeout_ms", s.connect_timeout_ms, 2_000)?,
                    command_timeout: self.millis("store.command_timeout_ms", s.command_timeout_ms, 1_000)?,
                }
            }
            other => return Err(self.err("store.backend", format!("{other:?} is not \"embedded\" or \"redis\""))),
        };
        Ok(StoreConfig {
            backend,
            key_cache_ttl: self.millis("store.key_cache_ttl_ms", s.key_cache_ttl_ms, 5_000)?,
            key_stale_if_error: Duration::from_millis(s.key_stale_if_error_ms.unwrap_or(600_000)),
        })
    }

    fn positive(&self, path: &str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
        match value.unwrap_or(default) {
            0 => Err(self.err(path, "must be greater than 0")),
            v => Ok(v),
        }
    }

    fn millis(&self, path: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
        self.positive(path, value, default).map(Duration::from_millis)
    }

    fn provider(&self, name: &str, raw: RawProvider) -> Result<ProviderConfig, ConfigError> {
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
                Ok(ProviderConfig::OpenAi(OpenAiConfig {
                    native_responses,
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

    fn model(
        &self,
        id: &str,
        m: RawModel,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<ModelConfig, ConfigError> {
        self.id(&format!("models.{id}"), id)?;
        self.provider_ref(&format!("models.{id}.provider"), &m.provider, providers)?;
        self.upstream_model(&format!("models.{id}.upstream_model"), &m.upstream_model)?;
        Ok(ModelConfig { provider: m.provider, upstream_model: m.upstream_model, price: price(m.price) })
    }

    fn agent(
        &self,
        id: &str,
        a: RawAgent,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<AgentConfig, ConfigError> {
        self.id(&format!("agents.{id}"), id)?;
        self.provider_ref(&format!("agents.{id}.provider"), &a.provider, providers)?;
        self.upstream_model(&format!("agents.{id}.upstream_model"), &a.upstream_model)?;
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
        Ok(AgentConfig {
            provider: a.provider,
            upstream_model: a.upstream_model,
            instructions: a.instructions.filter(|i| !i.trim().is_empty()),
            defaults,
            max_tokens_cap: a.caps.max_tokens,
            price: price(a.price),
        })
    }

    fn key(
        &self,
        index: usize,
        k: RawKey,
        models: &BTreeMap<String, ModelConfig>,
        agents: &BTreeMap<String, AgentConfig>,
    ) -> Result<KeyConfig, ConfigError> {
        let at = |field: &str| format!("keys.{index}.{field}");
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(k.sha256.trim(), &mut sha256).map_err(|_| {
            self.err(at("sha256"), "must be 64 hex characters (the SHA-256 of the key; see `tollgate hash-key`)")
        })?;
        if let Some(list) = &k.models {
            for m in list {
                if !models.contains_key(m) && !agents.contains_key(m) {
                    return Err(self.err(at("models"), format!("{m:?} is neither a model alias nor an agent")));
                }
            }
        }
        if k.name.trim().is_empty() {
            return Err(self.err(at("name"), "must not be empty"));
        }
        let scope = match k.scope.as_deref() {
            None | Some("chat") => crate::scope::Scope::Chat,
            Some("admin") => crate::scope::Scope::Admin,
            Some(other) => {
                return Err(self.err(
                    at("scope"),
                    format!(
                        "{other:?}: config keys are \"chat\" or \"admin\" (create other scopes with the API or CLI)"
                    ),
                ))
            }
        };
        Ok(KeyConfig { name: k.name, sha256, scope, models: k.models })
    }

    fn id(&self, path: &str, id: &str) -> Result<(), ConfigError> {
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(self.err(path, "ids must be 1-128 characters without spaces or control characters"));
        }
        Ok(())
    }

    fn provider_ref(
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

    fn upstream_model(&self, path: &str, model: &str) -> Result<(), ConfigError> {
        if model.trim().is_empty() {
            return Err(self.err(path, "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, "t.toml", &|n| (n == "KEY").then(|| "sk-x".to_string()))
    }

    const BASE: &str = r#"
        [providers.up]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1/"
        api_key = "${KEY}"
        [agents.a]
        provider = "up"
        upstream_model = "m"
        instructions = "be brief"
        defaults = { temperature = 0.5 }
        caps = { max_tokens = 100 }
    "#;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default().unwrap();
        assert!(c.agents.contains_key("demo"));
        assert!(!c.keys.is_empty());
    }

    #[test]
    fn parses_and_interpolates() {
        let c = load(BASE).unwrap();
        let ProviderConfig::OpenAi(p) = &c.providers["up"] else { panic!("kind") };
        assert_eq!(p.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(p.api_key.as_ref().unwrap().expose(), "sk-x");
        assert_eq!(c.agents["a"].max_tokens_cap, Some(100));
    }

    #[test]
    fn errors_name_file_path_and_reason() {
        let e = load(&format!("{BASE}\n[server]\nlisten = \"nope\"")).unwrap_err().to_string();
        assert!(e.starts_with("t.toml: server.listen:"), "{e}");
        let e = load(&BASE.replace("caps =", "capz =")).unwrap_err().to_string();
        assert!(e.contains("agents.a") && e.contains("unknown field `capz`"), "{e}");
        let e = load(&BASE.replace("${KEY}", "${MISSING}")).unwrap_err().to_string();
        assert!(e.contains("providers.up.api_key") && e.contains("MISSING is not set"), "{e}");
        let e = load(&BASE.replace("provider = \"up\"", "provider = \"nope\"")).unwrap_err().to_string();
        assert!(e.contains("agents.a.provider: unknown provider"), "{e}");
        let e = load(&format!("{BASE}\n[[keys]]\nname = \"k\"\nsha256 = \"xyz\"")).unwrap_err().to_string();
        assert!(e.contains("keys.0.sha256"), "{e}");
        let e = load(&BASE.replace("temperature", "stream")).unwrap_err().to_string();
        assert!(e.contains("agents.a.defaults.stream"), "{e}");
        let e = load(&format!("{BASE}\n[store]\nbackend = \"redis\"")).unwrap_err().to_string();
        assert!(e.contains("store.urls: needs at least one"), "{e}");
        let e = load(&format!("{BASE}\n[store]\nbackend = \"redis\"\nurls = [\"http://x\"]")).unwrap_err().to_string();
        assert!(e.contains("store.urls.0"), "{e}");
        let e = load(&format!("{BASE}\n[workspaces.acme]\nplan = \"gold\"")).unwrap_err().to_string();
        assert!(e.contains("workspaces.acme.plan: unknown plan \"gold\""), "{e}");
        let e = load(&format!("{BASE}\n[store]\nbackend = \"sqlite\"")).unwrap_err().to_string();
        assert!(e.contains("store.backend"), "{e}");
        let e = load("[server\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml: (syntax)"), "{e}");
    }

    #[test]
    fn events_and_webhooks_settings_are_checked() {
        let c = load(BASE).unwrap();
        assert_eq!(c.webhooks.timeout, std::time::Duration::from_secs(15));
        assert_eq!(c.webhooks.retry_schedule.len(), 7, "the Standard Webhooks schedule after the first attempt");
        assert!(!c.webhooks.allow_private_targets);
        let c =
            load(&format!("{BASE}\n[webhooks]\nretry_schedule_ms = [50, 100]\nallow_private_targets = true")).unwrap();
        assert_eq!(c.webhooks.retry_schedule, [50, 100].map(std::time::Duration::from_millis));
        assert!(c.webhooks.allow_private_targets);
        let c = load(&format!("{BASE}\n[events]\nretention_days = 2")).unwrap();
        assert_eq!(c.events.max_age, std::time::Duration::from_secs(2 * 86_400));
        for (toml, path) in [
            ("[webhooks]\ntimeout_ms = 5000\nclaim_idle_ms = 5000", "webhooks.claim_idle_ms"),
            ("[webhooks]\njitter_percent = 101", "webhooks.jitter_percent"),
            ("[webhooks]\nper_endpoint_concurrency = 0", "webhooks.per_endpoint_concurrency"),
            ("[webhooks]\nprice = 18014398509481985", "webhooks.price"),
            ("[webhooks]\nretry = 1", "unknown field `retry`"),
            ("[events]\nretention_days = 1\nretention_ms = 5", "events: set retention_days or retention_ms"),
            ("[events]\nqueue_capacity = 0", "events.queue_capacity"),
            ("[events]\nlow_credits_percent = 150", "events.low_credits_percent"),
        ] {
            let e = load(&format!("{BASE}\n{toml}")).unwrap_err().to_string();
            assert!(e.contains(path), "{toml}: {e}");
        }
    }

    #[test]
    fn responses_settings_are_checked() {
        let c = load(BASE).unwrap();
        assert_eq!(c.responses, ResponsesConfig::default());
        assert_eq!(c.responses.retention, std::time::Duration::from_secs(30 * 86_400));
        assert_eq!(c.responses.max_history_items, 1000);
        assert_eq!(c.responses.expires_at(1_000), 1_000 + 30 * 86_400);
        let c = load(&format!("{BASE}\n[responses]\nretention_days = 2\nmax_history_items = 50")).unwrap();
        assert_eq!(c.responses.retention, std::time::Duration::from_secs(2 * 86_400));
        assert_eq!(c.responses.max_history_items, 50);
        for (toml, expected) in [
            ("[responses]\nretention_days = 0", "responses.retention_days: must be greater than 0"),
            ("[responses]\nretention_days = 3651", "responses.retention_days: must be at most 3650"),
            ("[responses]\nmax_history_items = 0", "responses.max_history_items: must be greater than 0"),
            ("[responses]\nmax_history_items = 100001", "responses.max_history_items: must be at most 100000"),
            ("[responses]\nretention_ms = 5", "unknown field `retention_ms`"),
        ] {
            let e = load(&format!("{BASE}\n{toml}")).unwrap_err().to_string();
            assert!(e.contains(expected), "{toml}: {e}");
        }
    }
}
