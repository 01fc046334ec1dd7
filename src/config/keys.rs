//! `[[keys]]`: API keys written in the config (their SHA-256, never the
//! key), their scope and the models they may use. Separate because a key is
//! access, not catalogue: it only refers to the models and agents by id.

use std::collections::BTreeMap;

use super::raw::RawKey;
use super::{AgentConfig, ConfigError, ModelConfig, Validator};

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

impl Validator<'_> {
    pub(super) fn key(
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
}
