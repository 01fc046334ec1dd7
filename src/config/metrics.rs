//! `[metrics]`: whether `GET /metrics` answers and whether a scraper must
//! present a token. On by default and open, like most exporters: bind the
//! gateway's port to a private network, or set `token_sha256` so that only
//! a scraper with the token (`Authorization: Bearer <token>`) reads it.

use serde::Deserialize;

use super::{ConfigError, Validator};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// SHA-256 of the scrape token; `None`: no token needed.
    pub token_sha256: Option<[u8; 32]>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, token_sha256: None }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub token_sha256: Option<String>,
}

impl Validator<'_> {
    pub(super) fn metrics(&self, r: RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let token_sha256 = match r.token_sha256.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(hex_digest) => {
                let mut sha256 = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut sha256).map_err(|_| {
                    self.err("metrics.token_sha256", "must be 64 hex characters (`tollgate hash-key <token>`)")
                })?;
                Some(sha256)
            }
        };
        Ok(MetricsConfig { enabled: r.enabled.unwrap_or(true), token_sha256 })
    }
}
