//! Issuing API keys: `tg_` + 64 lowercase hex characters (256 bits from the
//! operating system's CSPRNG). Only the SHA-256 is stored; the plaintext is
//! handed back once, wrapped in a [`Secret`] so it cannot end up in a log line.

use rand::rngs::OsRng;
use rand::RngCore;

use super::hash_key;
use crate::scope::Scope;
use crate::secret::Secret;
use crate::store::KeyRecord;

/// Every issued key starts with this.
pub const KEY_PREFIX: &str = "tg_";
/// How much of a key is kept for display (`tg_` + 8 hex characters).
const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;
/// Longest key name accepted.
pub const MAX_NAME_LEN: usize = 128;
/// Most models a key's allow-list may name.
pub const MAX_MODELS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key name must be 1 to {MAX_NAME_LEN} characters without control characters")]
    BadName,
    #[error("expires_at must be in the future")]
    ExpiresInPast,
    #[error("rpm and tpm must be greater than 0")]
    ZeroLimit,
    #[error("the models list may name at most {MAX_MODELS} models, each non-empty")]
    BadModels,
}

/// What the caller asks for; the issuer adds the secret parts.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub workspace: String,
    pub scope: Scope,
    pub expires_at: Option<i64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub models: Option<Vec<String>>,
}

/// A freshly issued key: the record to store and the plaintext to show once.
#[derive(Debug)]
pub struct IssuedKey {
    pub plaintext: Secret<String>,
    pub record: KeyRecord,
}

/// Validates `new` and issues a key for it at time `now` (Unix seconds).
pub fn issue(new: NewKey, now: i64) -> Result<IssuedKey, KeyError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(KeyError::BadName);
    }
    if new.expires_at.is_some_and(|at| at <= now) {
        return Err(KeyError::ExpiresInPast);
    }
    if new.rpm == Some(0) || new.tpm == Some(0) {
        return Err(KeyError::ZeroLimit);
    }
    if new.models.as_ref().is_some_and(|m| m.len() > MAX_MODELS || m.iter().any(|id| id.trim().is_empty())) {
        return Err(KeyError::BadModels);
    }
    let plaintext = format!("{KEY_PREFIX}{}", random_hex::<32>());
    let record = KeyRecord {
        id: format!("key_{}", random_hex::<12>()),
        hash: hex::encode(hash_key(plaintext.as_bytes())),
        prefix: plaintext[..DISPLAY_PREFIX_LEN].to_owned(),
        name: name.to_owned(),
        workspace: new.workspace,
        scope: new.scope,
        expires_at: new.expires_at,
        rpm: new.rpm,
        tpm: new.tpm,
        models: new.models,
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    Ok(IssuedKey { plaintext: Secret::new(plaintext), record })
}

/// True for strings shaped like an issued key (`tg_` + 64 lowercase hex).
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_key() -> NewKey {
        NewKey {
            name: "ci deploy".into(),
            workspace: "ws1".into(),
            scope: Scope::Chat,
            expires_at: Some(2_000),
            rpm: Some(60),
            tpm: None,
            models: None,
        }
    }

    #[test]
    fn issues_well_formed_unique_keys_stored_only_as_hashes() {
        let a = issue(new_key(), 1_000).unwrap();
        let b = issue(new_key(), 1_000).unwrap();
        let plaintext = a.plaintext.expose();
        assert!(is_well_formed(plaintext), "{plaintext}");
        assert_ne!(plaintext, b.plaintext.expose());
        assert_ne!(a.record.id, b.record.id);
        assert!(a.record.id.starts_with("key_") && a.record.id.len() == 28);
        assert_eq!(a.record.hash, hex::encode(hash_key(plaintext.as_bytes())));
        assert!(plaintext.starts_with(&a.record.prefix) && a.record.prefix.len() == 11);
        let stored = serde_json::to_string(&a.record).unwrap();
        assert!(!stored.contains(&plaintext[3..]), "the record never holds the plaintext");
        assert_eq!(format!("{:?}", a.plaintext), "*****");
    }

    #[test]
    fn refuses_bad_requests() {
        let bad = |f: fn(&mut NewKey)| {
            let mut k = new_key();
            f(&mut k);
            issue(k, 1_000).unwrap_err()
        };
        assert_eq!(bad(|k| k.name = " ".into()), KeyError::BadName);
        assert_eq!(bad(|k| k.name = "x".repeat(MAX_NAME_LEN + 1)), KeyError::BadName);
        assert_eq!(bad(|k| k.name = "a\nb".into()), KeyError::BadName);
        assert_eq!(bad(|k| k.expires_at = Some(1_000)), KeyError::ExpiresInPast);
        assert_eq!(bad(|k| k.rpm = Some(0)), KeyError::ZeroLimit);
        assert_eq!(bad(|k| k.models = Some(vec![String::new()])), KeyError::BadModels);
    }

    #[test]
    fn recognises_the_key_shape() {
        assert!(is_well_formed(&format!("tg_{}", "ab".repeat(32))));
        assert!(!is_well_formed(&format!("tg_{}", "AB".repeat(32))));
        assert!(!is_well_formed(&format!("sk_{}", "ab".repeat(32))));
        assert!(!is_well_formed("tg_abc"));
    }
}
