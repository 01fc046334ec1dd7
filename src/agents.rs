//! The catalog of what clients may ask for: agents and model aliases.
//!
//! Both resolve to a [`Target`]: a provider and an upstream model. An agent adds
//! instructions (sent as the first system message), default sampling parameters
//! (applied only where the request leaves them unset) and caps. Everything a
//! rewrite needs is prepared here once, at startup, as ready-to-copy JSON bytes.
//!
//! The config's catalog is global and read-only; a workspace's own agents
//! are data ([`store`]), made through `/v1/agents` and resolved only for that
//! workspace's keys by [`Agents`], which looks in the catalog first.

pub mod resolver;
pub mod rewrite;
pub mod store;

pub use resolver::{Agents, ResolveError};

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::Principal;
use crate::config::{Config, Price};
use crate::json::push_json_string;
use crate::routing::{Healths, Route};
use crate::upstream::Provider;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    NotFound(String),
    #[error("This API key may not use the model `{0}`.")]
    NotAllowed(String),
}

/// What a model id resolves to.
pub struct Target {
    /// The id the client used; every response says this in its `model` field.
    pub id: Arc<str>,
    pub is_agent: bool,
    /// The workspace whose agent this is (only its keys resolve it); `None`
    /// for the config's models and agents, which every key may name.
    pub workspace: Option<Arc<str>>,
    /// Where calls go: its targets, their health, how one is chosen.
    pub route: Arc<Route>,
    /// `id` as a JSON string literal, or `None` when it equals the upstream
    /// model of every target (then responses pass through without a rewrite).
    pub client_model_json: Option<Bytes>,
    /// `{"role":"system","content":"<instructions>"}`, ready to splice in.
    pub system_message: Option<Vec<u8>>,
    pub instructions: Option<String>,
    /// Default parameters as (JSON key literal, raw JSON value).
    pub defaults: Vec<(String, Vec<u8>)>,
    pub max_tokens_cap: Option<u64>,
    /// What a call costs (micro-credits).
    pub price: Price,
    /// What the agent's conversations keep in view; `None` for model aliases
    /// and agents without a policy.
    pub memory: Option<crate::memory::MemoryPolicy>,
}

pub struct Catalog {
    targets: HashMap<String, Arc<Target>>,
    /// Ids in a stable order for `/v1/models`.
    order: Vec<Arc<Target>>,
    /// The configured providers, for building workspace agents' targets.
    providers: HashMap<String, Arc<Provider>>,
    /// Every configured target's health, shared by the routes naming it.
    healths: Arc<Healths>,
    /// Some provider serves the Responses API natively.
    native_responses: bool,
}

/// What a target is built from: a config model or agent, or a workspace
/// agent from the store (`store::AgentRecord::spec`). One struct so both
/// kinds are prepared by the same code.
pub struct TargetSpec<'a> {
    pub id: &'a str,
    pub is_agent: bool,
    /// The workspace owning a stored agent; `None` for config targets.
    pub workspace: Option<&'a str>,
    pub provider: &'a str,
    pub upstream_model: &'a str,
    /// The model alias a stored agent was made from: while the alias is
    /// configured, the agent goes where the alias goes (all its targets).
    pub alias: Option<&'a str>,
    pub instructions: Option<&'a str>,
    pub defaults: &'a serde_json::Map<String, serde_json::Value>,
    pub max_tokens_cap: Option<u64>,
    pub price: Price,
    pub memory: Option<crate::memory::MemoryPolicy>,
}

impl Catalog {
    /// `previous` is the catalog a reload replaces: targets it shares with
    /// this one keep their health (open breakers, latency estimates).
    pub fn new(config: &Config, providers: &HashMap<String, Arc<Provider>>, previous: Option<&Catalog>) -> Catalog {
        let all_targets =
            config.models.values().flat_map(|m| &m.targets).chain(config.agents.values().flat_map(|a| &a.targets));
        let healths = Arc::new(Healths::new(config.routing, all_targets, previous.map(|c| &*c.healths)));
        let mut order = Vec::new();
        let no_defaults = Default::default();
        for (id, m) in &config.models {
            let spec = TargetSpec {
                id,
                is_agent: false,
                workspace: None,
                provider: &m.targets[0].provider,
                upstream_model: &m.targets[0].upstream_model,
                alias: None,
                instructions: None,
                defaults: &no_defaults,
                max_tokens_cap: None,
                price: m.price,
                memory: None,
            };
            order.push(target(&spec, Arc::new(healths.route(&m.targets, providers))));
        }
        for (id, a) in &config.agents {
            let spec = TargetSpec {
                id,
                is_agent: true,
                workspace: None,
                provider: &a.targets[0].provider,
                upstream_model: &a.targets[0].upstream_model,
                alias: None,
                instructions: a.instructions.as_deref(),
                defaults: &a.defaults,
                max_tokens_cap: a.max_tokens_cap,
                price: a.price,
                memory: a.memory,
            };
            order.push(target(&spec, Arc::new(healths.route(&a.targets, providers))));
        }
        let targets = order.iter().map(|t| (t.id.to_string(), t.clone())).collect();
        let native_responses = providers.values().any(|p| p.speaks_responses());
        Catalog { targets, order, providers: providers.clone(), healths, native_responses }
    }

    /// Every configured target's health (the metrics scrape).
    pub fn healths(&self) -> &Healths {
        &self.healths
    }

    /// Resolves `model` for a caller, checking the caller's allow-list.
    pub fn resolve(&self, model: &str, principal: &Principal) -> Result<Arc<Target>, CatalogError> {
        let target = self.targets.get(model).ok_or_else(|| CatalogError::NotFound(model.into()))?;
        if !principal.may_use(model) {
            return Err(CatalogError::NotAllowed(model.into()));
        }
        Ok(target.clone())
    }

    /// Everything the caller may use, in a stable order.
    pub fn visible_to<'a>(&'a self, principal: &'a Principal) -> impl Iterator<Item = &'a Arc<Target>> + 'a {
        self.order.iter().filter(move |t| principal.may_use(&t.id))
    }

    /// Whether any provider serves the Responses API natively (so the
    /// Responses route must look at the model before translating).
    pub fn has_native_responses(&self) -> bool {
        self.native_responses
    }

    pub fn get(&self, model: &str) -> Option<&Arc<Target>> {
        self.targets.get(model)
    }

    /// The configured provider `name` (a reload keeps one that did not change).
    pub fn provider(&self, name: &str) -> Option<Arc<Provider>> {
        self.providers.get(name).cloned()
    }

    /// Whether `name` is a configured provider (a workspace agent must name one).
    pub fn has_provider(&self, name: &str) -> bool {
        self.providers.contains_key(name)
    }

    /// The target of a spec that is not in the config (a workspace agent);
    /// `None` when its provider is no longer configured.
    pub fn build(&self, spec: &TargetSpec<'_>) -> Option<Arc<Target>> {
        let aliased = spec.alias.and_then(|a| self.targets.get(a)).filter(|t| !t.is_agent);
        let route = match aliased {
            Some(alias) => alias.route.clone(),
            None => {
                let provider = self.providers.get(spec.provider)?.clone();
                Arc::new(self.healths.single(spec.provider, provider, spec.upstream_model))
            }
        };
        Some(target(spec, route))
    }
}

/// Prepares everything a rewrite copies (JSON literals, the system message)
/// once, when the target is built.
fn target(spec: &TargetSpec<'_>, route: Arc<Route>) -> Arc<Target> {
    let json_string = |s: &str| {
        let mut out = Vec::with_capacity(s.len() + 2);
        push_json_string(&mut out, s);
        out
    };
    let (id, instructions) = (spec.id, spec.instructions);
    let renamed = route.targets().iter().any(|t| *t.upstream_model != *id);
    Arc::new(Target {
        id: id.into(),
        is_agent: spec.is_agent,
        workspace: spec.workspace.map(Arc::from),
        route,
        client_model_json: renamed.then(|| Bytes::from(json_string(id))),
        system_message: instructions.map(|text| {
            serde_json::to_vec(&serde_json::json!({"role": "system", "content": text})).expect("JSON serialises")
        }),
        instructions: instructions.map(str::to_owned),
        defaults: spec
            .defaults
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_vec(v).expect("JSON serialises")))
            .collect(),
        max_tokens_cap: spec.max_tokens_cap,
        price: spec.price,
        memory: spec.memory,
    })
}
