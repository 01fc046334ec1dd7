//! Credential extraction and key lookup.
//!
//! A key arrives as `Authorization: Bearer <key>` or `X-API-Key: <key>`. It is
//! hashed with SHA-256 at once and only the hash is looked up, so neither the
//! lookup's timing nor any stored value reveals the plaintext; a static key's
//! match is still confirmed with a constant-time comparison.
//!
//! Keys come from two places, checked in order: the static keys of the config
//! file (read-only), then the key store. Store lookups go through a moka cache
//! keyed by hash, so a request with a known key makes no store round trip. An
//! entry lives `store.key_cache_ttl_ms`: that is the bound on how long another
//! replica keeps accepting a revoked key (the replica that revokes forgets the
//! key at once). Unknown keys are cached as unknown for the same time.
//!
//! When the store cannot answer, a key read from it within
//! `store.key_stale_if_error_ms` (10 minutes) keeps working past its TTL —
//! stale-if-error, logged — and every other key is refused with 503
//! (fail-closed: an unverifiable key is not a valid key, but the caller is
//! told to retry rather than that the key is wrong). A key revoked or expired
//! in its last known record stays refused, a key this replica revoked is
//! forgotten at once, and as soon as the store answers again its answer wins.
//! After a failed lookup the store is left alone for [`STORE_RETRY`], so an
//! outage costs one command timeout per second, not one per request.

pub mod keys;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::KeyConfig;
use crate::scope::Scope;
use crate::store::{KeyRecord, KeyStore};

/// SHA-256 of a key's plaintext.
pub type KeyHash = [u8; 32];

/// Most store keys kept in the cache; beyond it, the least used are evicted.
const KEY_CACHE_CAPACITY: u64 = 100_000;

/// After a failed key lookup, lookups answer from the last known records for
/// this long before the store is tried again.
pub const STORE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("You didn't provide an API key. Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`.")]
    Missing,
    #[error("Incorrect API key provided.")]
    Invalid,
    #[error("The API key has expired.")]
    Expired,
    #[error("The key store is unavailable; retry shortly.")]
    Unavailable,
}

/// Who is calling: what the rest of the pipeline knows about a key.
#[derive(Debug)]
pub struct Principal {
    /// The store key's id (`key_...`); `None` for static config keys.
    pub key_id: Option<Arc<str>>,
    /// The key's display name, used in logs and usage records (never the key).
    pub name: Arc<str>,
    /// The key's workspace; `None` for static config keys.
    pub workspace: Option<Arc<str>>,
    pub scope: Scope,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    /// Models and agents the key may use; `None` means all.
    pub models: Option<Vec<String>>,
    /// The key's own rate limits; `None` takes its workspace plan's.
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

impl Principal {
    /// The caller of a public route: no key, no workspace, no model.
    pub fn anonymous() -> Arc<Principal> {
        static ANONYMOUS: std::sync::OnceLock<Arc<Principal>> = std::sync::OnceLock::new();
        ANONYMOUS
            .get_or_init(|| {
                Arc::new(Principal {
                    key_id: None,
                    name: Arc::from("anonymous"),
                    workspace: None,
                    scope: Scope::Chat,
                    expires_at: None,
                    revoked: false,
                    models: Some(Vec::new()),
                    rpm: None,
                    tpm: None,
                })
            })
            .clone()
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|list| list.iter().any(|m| m == model))
    }

    fn from_record(r: KeyRecord) -> Principal {
        Principal {
            name: r.name.as_str().into(),
            key_id: Some(r.id.as_str().into()),
            workspace: Some(r.workspace.as_str().into()),
            scope: r.scope,
            expires_at: r.expires_at,
            revoked: r.revoked_at.is_some(),
            models: r.models,
            rpm: r.rpm,
            tpm: r.tpm,
        }
    }

    /// Static config keys cannot be changed through the API; a `chat` one has
    /// no workspace, an `admin` one acts in the `admin` workspace.
    fn from_config(k: &KeyConfig) -> Principal {
        Principal {
            key_id: None,
            name: k.name.as_str().into(),
            workspace: (k.scope == Scope::Admin).then(|| crate::scope::ADMIN_WORKSPACE.into()),
            scope: k.scope,
            expires_at: None,
            revoked: false,
            models: k.models.clone(),
            rpm: None,
            tpm: None,
        }
    }
}

/// Checks credentials against the static keys and the key store.
pub struct Authenticator {
    /// The config's keys; swapped whole by a config reload.
    static_keys: arc_swap::ArcSwap<HashMap<KeyHash, Arc<Principal>>>,
    store: Option<Arc<dyn KeyStore>>,
    /// hash → the key as last read from the store (`None`: no such key),
    /// trusted for the cache TTL.
    cache: moka::future::Cache<KeyHash, Option<Arc<Principal>>>,
    /// The same records, kept for the stale-if-error bound: what a lookup
    /// answers while the store cannot (`None` when stale-if-error is off).
    last_known: Option<moka::sync::Cache<KeyHash, Option<Arc<Principal>>>>,
    /// Until when (ms after `epoch`) lookups skip the store after a failure;
    /// an atomic, read on every cache miss.
    store_down_until_ms: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
    /// Store keys used since the last flush, with the latest time. A mutex,
    /// not a lock-free map: one short insert per request, never held across
    /// an await, and emptied in one swap by [`flush_last_used`](Self::flush_last_used).
    used: std::sync::Mutex<HashMap<Arc<str>, i64>>,
    /// Store-key lookups answered by the cache, and those that were not
    /// (`/metrics`; static keys need no cache and are not counted).
    pub cache_hits: std::sync::atomic::AtomicU64,
    pub cache_misses: std::sync::atomic::AtomicU64,
}

fn static_principals(keys: &[KeyConfig]) -> HashMap<KeyHash, Arc<Principal>> {
    keys.iter().map(|k| (k.sha256, Arc::new(Principal::from_config(k)))).collect()
}

/// How often last-used times are written to the store.
pub const LAST_USED_FLUSH: Duration = Duration::from_secs(10);

impl Authenticator {
    /// Static keys only, until [`with_store`](Self::with_store) adds a store.
    pub fn new(keys: &[KeyConfig], cache_ttl: Duration) -> Authenticator {
        let static_keys = arc_swap::ArcSwap::from_pointee(static_principals(keys));
        let cache = moka::future::Cache::builder().max_capacity(KEY_CACHE_CAPACITY).time_to_live(cache_ttl).build();
        Authenticator {
            static_keys,
            store: None,
            cache,
            last_known: None,
            store_down_until_ms: Default::default(),
            epoch: std::time::Instant::now(),
            used: Default::default(),
            cache_hits: Default::default(),
            cache_misses: Default::default(),
        }
    }

    /// A reloaded config's static keys: a removed key is refused from the
    /// next request on.
    pub fn replace_static_keys(&self, keys: &[KeyConfig]) {
        self.static_keys.store(Arc::new(static_principals(keys)));
    }

    /// Serves keys read from the store within `bound` while it cannot answer.
    pub fn with_stale_if_error(mut self, bound: Duration) -> Authenticator {
        self.last_known = (!bound.is_zero())
            .then(|| moka::sync::Cache::builder().max_capacity(KEY_CACHE_CAPACITY).time_to_live(bound).build());
        self
    }

    pub fn with_store(mut self, store: Arc<dyn KeyStore>) -> Authenticator {
        self.store = Some(store);
        self
    }

    /// The caller's principal, or why the request is refused. `now` is Unix
    /// seconds, for expiry.
    pub async fn authenticate(&self, headers: &HeaderMap, now: i64) -> Result<Arc<Principal>, AuthError> {
        let key = extract_key(headers)?;
        let hash = hash_key(key);
        if let Some((stored, principal)) = self.static_keys.load().get_key_value(&hash) {
            if bool::from(stored.ct_eq(&hash)) {
                return Ok(principal.clone());
            }
        }
        // Only issued keys can be in the store: anything else is refused
        // without a store round trip.
        let Some(store) = self.store.as_ref().filter(|_| std::str::from_utf8(key).is_ok_and(keys::is_well_formed))
        else {
            return Err(AuthError::Invalid);
        };
        use std::sync::atomic::Ordering::Relaxed;
        let principal = match self.cache.get(&hash).await {
            Some(fresh) => {
                self.cache_hits.fetch_add(1, Relaxed);
                fresh
            }
            None => {
                self.cache_misses.fetch_add(1, Relaxed);
                self.look_up(store, hash).await?
            }
        };
        match principal {
            None => Err(AuthError::Invalid),
            Some(p) if p.revoked => Err(AuthError::Invalid),
            Some(p) if p.expires_at.is_some_and(|at| at <= now) => Err(AuthError::Expired),
            Some(p) => {
                if let Some(id) = &p.key_id {
                    self.used.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), now);
                }
                Ok(p)
            }
        }
    }

    /// A key missing from the cache: read from the store (one read however
    /// many requests wait for it), or its last known record while the store
    /// cannot answer.
    async fn look_up(&self, store: &Arc<dyn KeyStore>, hash: KeyHash) -> Result<Option<Arc<Principal>>, AuthError> {
        use std::sync::atomic::Ordering;
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        if now_ms < self.store_down_until_ms.load(Ordering::Acquire) {
            return self.last_known_record(hash);
        }
        let loaded = self
            .cache
            .try_get_with(hash, async {
                let record = store.key_by_hash(&hex::encode(hash)).await?;
                let principal = record.map(|r| Arc::new(Principal::from_record(r)));
                if let Some(last_known) = &self.last_known {
                    last_known.insert(hash, principal.clone());
                }
                Ok::<_, crate::store::StoreError>(principal)
            })
            .await;
        match loaded {
            Ok(principal) => Ok(principal),
            Err(e) => {
                let retry_at = self.epoch.elapsed() + STORE_RETRY;
                self.store_down_until_ms.store(retry_at.as_millis() as u64, Ordering::Release);
                let bound_s = self.last_known.as_ref().and_then(|c| c.policy().time_to_live()).map(|d| d.as_secs());
                tracing::warn!(
                    error = %e,
                    stale_if_error_s = bound_s,
                    "key lookup failed; serving last known keys, refusing unknown ones with 503"
                );
                self.last_known_record(hash)
            }
        }
    }

    /// The key's last known record, while the store cannot answer.
    fn last_known_record(&self, hash: KeyHash) -> Result<Option<Arc<Principal>>, AuthError> {
        match self.last_known.as_ref().and_then(|c| c.get(&hash)) {
            Some(principal) => {
                tracing::debug!(
                    key = principal.as_ref().map(|p| &*p.name),
                    "store unavailable: a stale key record served"
                );
                Ok(principal)
            }
            None => Err(AuthError::Unavailable),
        }
    }

    /// Writes the last-used times gathered since the previous flush, in one
    /// batch (never one store write per request). On failure they are kept
    /// for the next flush.
    pub async fn flush_last_used(&self) {
        let Some(store) = &self.store else { return };
        let used = std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()));
        if used.is_empty() {
            return;
        }
        let batch: Vec<(String, i64)> = used.iter().map(|(id, at)| (id.to_string(), *at)).collect();
        if let Err(e) = store.touch_keys(&batch).await {
            tracing::warn!(error = %e, keys = batch.len(), "could not record last-used times; will retry");
            let mut pending = self.used.lock().unwrap_or_else(|e| e.into_inner());
            for (id, at) in used {
                let entry = pending.entry(id).or_insert(at);
                *entry = (*entry).max(at);
            }
        }
    }

    /// Drops a key from this replica's cache (after revoking it here).
    pub async fn forget(&self, hash_hex: &str) {
        let mut hash = [0u8; 32];
        if hex::decode_to_slice(hash_hex, &mut hash).is_ok() {
            self.cache.invalidate(&hash).await;
            if let Some(last_known) = &self.last_known {
                last_known.invalidate(&hash);
            }
        }
    }
}

/// The key presented by the request, if any. `Authorization` wins over `X-API-Key`.
pub fn extract_key(headers: &HeaderMap) -> Result<&[u8], AuthError> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        let key = bytes
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| bytes[7..].trim_ascii())
            .ok_or(AuthError::Invalid)?;
        return if key.is_empty() { Err(AuthError::Missing) } else { Ok(key) };
    }
    match headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii()) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(AuthError::Missing),
    }
}

pub fn hash_key(key: &[u8]) -> KeyHash {
    Sha256::digest(key).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use http::HeaderValue;

    fn static_only() -> Authenticator {
        Authenticator::new(
            &[KeyConfig { name: "k".into(), sha256: hash_key(b"tg_secret"), scope: Scope::Chat, models: None }],
            Duration::from_secs(60),
        )
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    async fn check(auth: &Authenticator, name: &'static str, value: &str) -> Result<Arc<Principal>, AuthError> {
        auth.authenticate(&headers(name, value), 1_000).await
    }

    #[tokio::test]
    async fn static_keys_by_both_headers() {
        let auth = static_only();
        assert!(check(&auth, "authorization", "Bearer tg_secret").await.is_ok());
        assert!(check(&auth, "authorization", "bearer  tg_secret ").await.is_ok());
        assert!(check(&auth, "x-api-key", "tg_secret").await.is_ok());
        assert_eq!(check(&auth, "x-api-key", "tg_secret").await.unwrap().scope, Scope::Chat);
    }

    #[tokio::test]
    async fn refuses_missing_wrong_and_malformed() {
        let auth = static_only();
        assert_eq!(auth.authenticate(&HeaderMap::new(), 0).await.unwrap_err(), AuthError::Missing);
        assert_eq!(check(&auth, "authorization", "Bearer ").await.unwrap_err(), AuthError::Missing);
        assert_eq!(check(&auth, "authorization", "Bearer nope").await.unwrap_err(), AuthError::Invalid);
        assert_eq!(check(&auth, "authorization", "Basic abc").await.unwrap_err(), AuthError::Invalid);
        assert_eq!(check(&auth, "x-api-key", "nope").await.unwrap_err(), AuthError::Invalid);
    }

    #[tokio::test]
    async fn store_keys_expire_revoke_and_are_cached() {
        let dir = std::env::temp_dir().join(format!("tollgate-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(EmbeddedStore::open(&dir.join("t.db")).unwrap());
        let issue = |expires_at| {
            keys::issue(
                keys::NewKey {
                    name: "n".into(),
                    workspace: "ws".into(),
                    scope: Scope::Full,
                    expires_at,
                    rpm: None,
                    tpm: None,
                    models: None,
                },
                500,
            )
            .unwrap()
        };
        let live = issue(None);
        let expiring = issue(Some(900));
        store.insert_key(&live.record).await.unwrap();
        store.insert_key(&expiring.record).await.unwrap();
        let auth = static_only().with_store(store.clone());

        let p = check(&auth, "x-api-key", live.plaintext.expose()).await.unwrap();
        assert_eq!((p.scope, p.workspace.as_deref()), (Scope::Full, Some("ws")));
        assert_eq!(check(&auth, "x-api-key", expiring.plaintext.expose()).await.unwrap_err(), AuthError::Expired);

        store.revoke_key(&live.record.id, 950).await.unwrap();
        assert!(check(&auth, "x-api-key", live.plaintext.expose()).await.is_ok(), "cached until the TTL or forget");
        auth.forget(&live.record.hash).await;
        assert_eq!(check(&auth, "x-api-key", live.plaintext.expose()).await.unwrap_err(), AuthError::Invalid);
        let unknown = format!("tg_{}", "0".repeat(64));
        assert_eq!(check(&auth, "x-api-key", &unknown).await.unwrap_err(), AuthError::Invalid);

        // Last-used times reach the store in a batch, at flush time only.
        assert_eq!(store.key_by_id(&live.record.id).await.unwrap().unwrap().last_used_at, None);
        auth.flush_last_used().await;
        assert_eq!(store.key_by_id(&live.record.id).await.unwrap().unwrap().last_used_at, Some(1_000));
    }
}
