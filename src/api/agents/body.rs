//! The body of `POST` and `PATCH /v1/agents`, and the rules a workspace
//! agent must satisfy — the same as a config agent's (`config::providers`),
//! each refusal naming its field in `param`.

use serde::{Deserialize, Deserializer};

use crate::admin::ManagementError;
use crate::agents::store::{AgentRecord, Caps};
use crate::agents::Catalog;
use crate::config::{Price, RESERVED_FIELDS};
use crate::memory::MemoryPolicy;

/// Longest agent id (the character set is `[A-Za-z0-9._-]`).
pub const MAX_ID_LEN: usize = 128;
/// Longest upstream model name.
const MAX_UPSTREAM_MODEL_LEN: usize = 256;
/// Instructions are sent with every call: bounded so one agent cannot make
/// every request huge (and its record a large store value).
const MAX_INSTRUCTIONS_BYTES: usize = 32 * 1024;
/// `defaults` as JSON.
const MAX_DEFAULTS_BYTES: usize = 8 * 1024;

/// Every field optional: `POST` checks what it requires itself (so a
/// missing one is `missing_required_parameter` naming it), `PATCH` changes
/// what is present. `null` clears `instructions` and `memory`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    pub id: Option<String>,
    /// The workspace (admin keys, on create).
    pub workspace: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    /// A config model alias to take the provider and upstream model from.
    pub model: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub instructions: Option<Option<String>>,
    pub defaults: Option<serde_json::Map<String, serde_json::Value>>,
    pub caps: Option<Caps>,
    pub price: Option<Price>,
    #[serde(default, deserialize_with = "present")]
    pub memory: Option<Option<MemoryPolicy>>,
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn invalid(param: &'static str, message: impl Into<String>) -> ManagementError {
    ManagementError::Invalid { param, message: message.into() }
}

/// Whether `id` is a valid agent id (also for ids in a path).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl AgentBody {
    /// A new agent of `workspace` from a `POST` body, fully checked.
    pub fn create(self, catalog: &Catalog, workspace: String, now: i64) -> Result<AgentRecord, ManagementError> {
        let Some(id) = self.id.clone() else {
            return Err(ManagementError::Missing { param: "id", message: "name the agent".into() });
        };
        if self.model.is_none() && self.provider.is_none() && self.upstream_model.is_none() {
            let message = "give provider and upstream_model, or model (a configured model alias)".into();
            return Err(ManagementError::Missing { param: "provider", message });
        }
        let blank = AgentRecord {
            id,
            workspace,
            provider: String::new(),
            upstream_model: String::new(),
            model: None,
            instructions: None,
            defaults: Default::default(),
            caps: Caps::default(),
            price: Price::default(),
            memory: None,
            created_at: now,
            updated_at: now,
        };
        self.apply(catalog, blank, true)
    }

    /// `record` with this `PATCH` body's changes, fully checked.
    pub fn update(self, catalog: &Catalog, record: AgentRecord, now: i64) -> Result<AgentRecord, ManagementError> {
        if self.id.as_ref().is_some_and(|id| *id != record.id) {
            return Err(invalid("id", "an agent's id cannot be changed (create a new agent)"));
        }
        if self.workspace.as_ref().is_some_and(|ws| *ws != record.workspace) {
            return Err(invalid("workspace", "an agent cannot move to another workspace"));
        }
        let mut updated = self.apply(catalog, record, false)?;
        updated.updated_at = now;
        Ok(updated)
    }

    fn apply(self, catalog: &Catalog, mut r: AgentRecord, new: bool) -> Result<AgentRecord, ManagementError> {
        if !valid_id(&r.id) {
            let message = format!("agent ids are 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_' and '-'");
            return Err(invalid("id", message));
        }
        match (self.model, self.provider, self.upstream_model) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(invalid("model", "give either model, or provider and upstream_model, not both"))
            }
            (Some(alias), None, None) => {
                let target = catalog
                    .get(&alias)
                    .filter(|t| !t.is_agent)
                    .ok_or_else(|| invalid("model", format!("{alias:?} is not a configured model alias")))?;
                // Stored for the record; the agent follows the alias's route
                // (all its targets) while the alias is configured.
                let primary = target.route.primary();
                r.provider = primary.provider_name.to_string();
                r.upstream_model = primary.upstream_model.to_string();
                // A model's price stays its price unless the agent sets one.
                if self.price.is_none() && new {
                    r.price = target.price;
                }
                r.model = Some(alias);
            }
            (None, provider, upstream_model) => {
                if let Some(provider) = provider {
                    r.provider = provider;
                    r.model = None;
                }
                if let Some(upstream_model) = upstream_model {
                    r.upstream_model = upstream_model;
                    r.model = None;
                }
            }
        }
        if r.provider.is_empty() {
            return Err(ManagementError::Missing { param: "provider", message: "name a configured provider".into() });
        }
        if !catalog.has_provider(&r.provider) {
            return Err(invalid("provider", format!("{:?} is not a configured provider", r.provider)));
        }
        if r.upstream_model.trim().is_empty() {
            let message = "name the provider's model".into();
            return Err(ManagementError::Missing { param: "upstream_model", message });
        }
        if r.upstream_model.len() > MAX_UPSTREAM_MODEL_LEN || r.upstream_model.chars().any(char::is_control) {
            let message = format!("at most {MAX_UPSTREAM_MODEL_LEN} bytes, without control characters");
            return Err(invalid("upstream_model", message));
        }
        if let Some(instructions) = self.instructions {
            r.instructions = instructions.filter(|i| !i.trim().is_empty());
        }
        if r.instructions.as_ref().is_some_and(|i| i.len() > MAX_INSTRUCTIONS_BYTES) {
            return Err(invalid("instructions", format!("at most {MAX_INSTRUCTIONS_BYTES} bytes")));
        }
        if let Some(defaults) = self.defaults {
            r.defaults = defaults;
        }
        if let Some(reserved) = r.defaults.keys().find(|k| RESERVED_FIELDS.contains(&k.as_str())) {
            return Err(invalid("defaults", format!("{reserved:?} is part of the request, not a default")));
        }
        if serde_json::to_vec(&r.defaults).expect("JSON serialises").len() > MAX_DEFAULTS_BYTES {
            return Err(invalid("defaults", format!("at most {MAX_DEFAULTS_BYTES} bytes of JSON")));
        }
        if let Some(caps) = self.caps {
            r.caps = caps;
        }
        if r.caps.max_tokens == Some(0) {
            return Err(invalid("caps.max_tokens", "must be greater than 0"));
        }
        if let Some(price) = self.price {
            r.price = price;
        }
        let max = crate::units::MAX_CHARGE;
        if [r.price.request, r.price.input_per_1k, r.price.output_per_1k].iter().any(|&p| p > max) {
            return Err(invalid("price", format!("each price is at most {max} micro-credits")));
        }
        if let Some(memory) = self.memory {
            r.memory = memory;
        }
        if let Some(Err((field, e))) = r.memory.as_ref().map(MemoryPolicy::validate) {
            let param = if field == "max_messages" { "memory.max_messages" } else { "memory.max_input_tokens" };
            return Err(invalid(param, e.to_string()));
        }
        Ok(r)
    }
}
