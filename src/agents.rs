//! The catalog of what clients may ask for: agents and model aliases.
//!
//! Both resolve to a [`Target`]: a provider and an upstream model. An agent adds
//! instructions (sent as the first system message), default sampling parameters
//! (applied only where the request leaves them unset) and caps. Everything a
//! rewrite needs is prepared here once, at startup, as ready-to-copy JSON bytes.

pub mod rewrite;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::Principal;
use crate::config::{Config, Price};
use crate::json::push_json_string;
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
    pub provider_name: Arc<str>,
    pub provider: Arc<Provider>,
    pub upstream_model: Arc<str>,
    /// `upstream_model` as a JSON string literal.
    pub upstream_model_json: Vec<u8>,
    /// `id` as a JSON string literal, or `None` when it equals the upstream
    /// model (then responses pass through without a rewrite).
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
    /// Some target's provider serves the Responses API natively.
    native_responses: bool,
}

impl Catalog {
    pub fn new(config: &Config, providers: &HashMap<String, Arc<Provider>>) -> Catalog {
        let mut order = Vec::new();
        for (id, m) in &config.models {
            let no_defaults = Default::default();
            order.push(target(
                id,
                false,
                &m.provider,
                &m.upstream_model,
                providers,
                None,
                &no_defaults,
                None,
                m.price,
                None,
            ));
        }
        for (id, a) in &config.agents {
            order.push(target(
                id,
                true,
                &a.provider,
                &a.upstream_model,
                providers,
                a.instructions.as_deref(),
                &a.defaults,
                a.max_tokens_cap,
                a.price,
                a.memory,
            ));
        }
        let targets = order.iter().map(|t| (t.id.to_string(), t.clone())).collect();
        let native_responses = order.iter().any(|t: &Arc<Target>| t.provider.speaks_responses());
        Catalog { targets, order, native_responses }
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

    /// Whether any target's provider serves the Responses API natively (so
    /// the Responses route must look at the model before translating).
    pub fn has_native_responses(&self) -> bool {
        self.native_responses
    }

    pub fn get(&self, model: &str) -> Option<&Arc<Target>> {
        self.targets.get(model)
    }
}

#[allow(clippy::too_many_arguments)]
fn target(
    id: &str,
    is_agent: bool,
    provider: &str,
    upstream_model: &str,
    providers: &HashMap<String, Arc<Provider>>,
    instructions: Option<&str>,
    defaults: &serde_json::Map<String, serde_json::Value>,
    max_tokens_cap: Option<u64>,
    price: Price,
    memory: Option<crate::memory::MemoryPolicy>,
) -> Arc<Target> {
    let json_string = |s: &str| {
        let mut out = Vec::with_capacity(s.len() + 2);
        push_json_string(&mut out, s);
        out
    };
    Arc::new(Target {
        id: id.into(),
        is_agent,
        provider_name: provider.into(),
        provider: providers[provider].clone(),
        upstream_model: upstream_model.into(),
        upstream_model_json: json_string(upstream_model),
        client_model_json: (id != upstream_model).then(|| Bytes::from(json_string(id))),
        system_message: instructions.map(|text| {
            serde_json::to_vec(&serde_json::json!({"role": "system", "content": text})).expect("JSON serialises")
        }),
        instructions: instructions.map(str::to_owned),
        defaults: defaults.iter().map(|(k, v)| (k.clone(), serde_json::to_vec(v).expect("JSON serialises"))).collect(),
        max_tokens_cap,
        price,
        memory,
    })
}
