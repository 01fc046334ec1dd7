//! Credential extraction and key lookup.
//!
//! A key arrives as `Authorization: Bearer <key>` or `X-API-Key: <key>`. It is
//! hashed with SHA-256 at once and only the hash is looked up, so neither the
//! lookup's timing nor any stored value reveals the plaintext; the final match
//! is still confirmed with a constant-time comparison. [`KeySource`] is the seam
//! where the store-backed keys of a later stage replace the static config keys.

pub mod keys;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::KeyConfig;

/// SHA-256 of a key's plaintext.
pub type KeyHash = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("You didn't provide an API key. Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`.")]
    Missing,
    #[error("Incorrect API key provided.")]
    Invalid,
}

/// Who is calling: what the rest of the pipeline knows about a key.
#[derive(Debug)]
pub struct Principal {
    /// The key's display name, used in logs and usage records (never the key).
    pub name: Arc<str>,
    /// Models and agents the key may use; `None` means all.
    pub models: Option<Vec<String>>,
}

impl Principal {
    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|list| list.iter().any(|m| m == model))
    }
}

/// Where keys come from. Lookups must not block: they run on the request path.
pub trait KeySource: Send + Sync + 'static {
    fn lookup(&self, hash: &KeyHash) -> Option<Arc<Principal>>;
}

/// Keys listed in the config file, by hash.
pub struct StaticKeys {
    by_hash: HashMap<KeyHash, Arc<Principal>>,
}

impl StaticKeys {
    pub fn new(keys: &[KeyConfig]) -> Self {
        let by_hash = keys
            .iter()
            .map(|k| (k.sha256, Arc::new(Principal { name: k.name.as_str().into(), models: k.models.clone() })))
            .collect();
        StaticKeys { by_hash }
    }
}

impl KeySource for StaticKeys {
    fn lookup(&self, hash: &KeyHash) -> Option<Arc<Principal>> {
        let (stored, principal) = self.by_hash.get_key_value(hash)?;
        bool::from(stored.ct_eq(hash)).then(|| principal.clone())
    }
}

/// The key presented by the request, if any. `Authorization` wins over `X-API-Key`.
pub fn extract_key(headers: &HeaderMap) -> Result<&[u8], AuthError> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        let key = bytes
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| trim(&bytes[7..]))
            .ok_or(AuthError::Invalid)?;
        return if key.is_empty() { Err(AuthError::Missing) } else { Ok(key) };
    }
    match headers.get("x-api-key").map(|v| trim(v.as_bytes())) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(AuthError::Missing),
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

pub fn hash_key(key: &[u8]) -> KeyHash {
    Sha256::digest(key).into()
}

/// Checks the request's credentials against a key source.
pub fn authenticate(headers: &HeaderMap, keys: &dyn KeySource) -> Result<Arc<Principal>, AuthError> {
    let key = extract_key(headers)?;
    keys.lookup(&hash_key(key)).ok_or(AuthError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn keys() -> StaticKeys {
        StaticKeys::new(&[KeyConfig { name: "k".into(), sha256: hash_key(b"tg_secret"), models: None }])
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn accepts_both_headers() {
        assert!(authenticate(&headers("authorization", "Bearer tg_secret"), &keys()).is_ok());
        assert!(authenticate(&headers("authorization", "bearer  tg_secret "), &keys()).is_ok());
        assert!(authenticate(&headers("x-api-key", "tg_secret"), &keys()).is_ok());
    }

    #[test]
    fn refuses_missing_wrong_and_malformed() {
        assert_eq!(authenticate(&HeaderMap::new(), &keys()).unwrap_err(), AuthError::Missing);
        assert_eq!(authenticate(&headers("authorization", "Bearer "), &keys()).unwrap_err(), AuthError::Missing);
        assert_eq!(authenticate(&headers("authorization", "Bearer nope"), &keys()).unwrap_err(), AuthError::Invalid);
        assert_eq!(authenticate(&headers("authorization", "Basic abc"), &keys()).unwrap_err(), AuthError::Invalid);
        assert_eq!(authenticate(&headers("x-api-key", "nope"), &keys()).unwrap_err(), AuthError::Invalid);
    }
}
