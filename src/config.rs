//! Typed configuration: TOML in, validated types out.
//!
//! Loading goes file → TOML tree → `${VAR}` interpolation → `raw` serde types
//! (unknown fields rejected) → [`Config`]. Every error names the file, the field
//! path and the reason, so `tollgate check-config` points at the line to fix.
//!
//! Each section's typed form and its checks live in a file of their own
//! (`server`, `providers`, `keys`, `store`, `plans`, `events`, `responses`,
//! `schedules`);
//! this file holds the whole [`Config`], its loading and the checks they share.

mod cors;
mod events;
mod interpolate;
mod keys;
mod metrics;
mod plans;
mod providers;
mod raw;
mod responses;
mod routing;
mod schedules;
mod server;
mod store;
pub mod tls;
mod tracing;

pub use cors::CorsConfig;
pub use events::{EventsConfig, WebhooksConfig};
pub use keys::KeyConfig;
pub use metrics::MetricsConfig;
pub use plans::{CreditsConfig, PlanConfig, WorkspaceConfig, DEFAULT_PLAN};
pub use providers::{AgentConfig, MockConfig, ModelConfig, OpenAiConfig, Price, ProviderConfig, RESERVED_FIELDS};
pub use responses::ResponsesConfig;
pub use routing::{RoutingConfig, TargetConfig, MAX_TARGETS};
pub use schedules::SchedulesConfig;
pub use server::{LogConfig, ServerConfig};
pub use store::{StoreBackend, StoreConfig};
pub use tracing::{OtlpConfig, OtlpProtocol, TracingConfig};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use raw::RawConfig;

/// The config shipped in `config/tollgate.toml`, compiled in so `tollgate serve`
/// works from any directory with no file at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/tollgate.toml");

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
    pub schedules: SchedulesConfig,
    /// Browser origins allowed to call the gateway (`[cors]`; off by default).
    pub cors: CorsConfig,
    /// `GET /metrics` on or off, and its scrape token (`[metrics]`).
    pub metrics: MetricsConfig,
    /// Circuit-breaker thresholds for every target (`[routing]`).
    pub routing: RoutingConfig,
    /// OpenTelemetry traces (`[tracing]`; off by default).
    pub tracing: TracingConfig,
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
        let server = self.server(raw.server)?;
        let log = self.log(raw.log)?;

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
        let schedules = self.schedules(raw.schedules)?;
        let cors = self.cors(raw.cors)?;
        let metrics = self.metrics(raw.metrics)?;
        let routing = self.routing(raw.routing)?;
        let tracing = self.tracing(raw.tracing)?;
        let plans = self.plans(raw.plans)?;
        let workspaces = self.workspaces(raw.workspaces, &plans)?;
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
            schedules,
            cors,
            metrics,
            routing,
            tracing,
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

    fn id(&self, path: &str, id: &str) -> Result<(), ConfigError> {
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(self.err(path, "ids must be 1-128 characters without spaces or control characters"));
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

    /// [`BASE`] plus `extra`, loaded; the error as text (for the sections' tests).
    pub(crate) fn load_extra(extra: &str) -> Result<Config, String> {
        load(&format!("{BASE}\n{extra}")).map_err(|e| e.to_string())
    }

    pub(crate) const BASE: &str = r#"
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
        // The window's ceiling: 32 by default, never below the floor.
        let c = load(BASE).unwrap();
        assert_eq!((c.webhooks.per_endpoint_concurrency, c.webhooks.max_per_endpoint_concurrency), (4, 32));
        let c = load(&format!("{BASE}\n[webhooks]\nper_endpoint_concurrency = 48")).unwrap();
        assert_eq!(c.webhooks.max_per_endpoint_concurrency, 48, "unset, it follows a higher floor");
        for (toml, path) in [
            ("[webhooks]\ntimeout_ms = 5000\nclaim_idle_ms = 5000", "webhooks.claim_idle_ms"),
            ("[webhooks]\njitter_percent = 101", "webhooks.jitter_percent"),
            ("[webhooks]\nper_endpoint_concurrency = 0", "webhooks.per_endpoint_concurrency"),
            (
                "[webhooks]\nper_endpoint_concurrency = 8\nmax_per_endpoint_concurrency = 4",
                "webhooks.max_per_endpoint_concurrency",
            ),
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
