//! Webhook secrets and the two signatures every delivery carries.
//!
//! A secret is `whsec_` + base64 of 24–64 random bytes; the HMAC key is the
//! decoded bytes (the Standard Webhooks convention, so receivers can use the
//! stock `standardwebhooks` libraries). Each delivery is signed twice with it:
//! - `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`
//!   (Standard Webhooks; during a rotation, one `v1,` entry per live secret,
//!   space-separated), and
//! - `X-Tollgate-Signature: sha256=<hex HMAC-SHA256(body)>` (seed 001's style,
//!   with the newest secret).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// Random bytes in a secret the gateway generates.
const GENERATED_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret is `whsec_` followed by base64 of 24 to 64 bytes")]
    Malformed,
}

/// A fresh secret from the OS's random source.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; GENERATED_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", BASE64.encode(bytes))
}

/// The HMAC key of a secret; accepts it with or without the `whsec_` prefix.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, SecretError> {
    let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
    let bytes = BASE64.decode(encoded).map_err(|_| SecretError::Malformed)?;
    if (24..=64).contains(&bytes.len()) {
        Ok(bytes)
    } else {
        Err(SecretError::Malformed)
    }
}

/// A client-supplied secret in its stored form (with the prefix).
pub fn normalize_secret(secret: &str) -> Result<String, SecretError> {
    secret_key(secret)?;
    Ok(if secret.starts_with(PREFIX) { secret.to_owned() } else { format!("{PREFIX}{secret}") })
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// `v1,<base64>` for one key.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1,{}", BASE64.encode(m.finalize().into_bytes()))
}

/// `sha256=<hex>` for one key.
pub fn tollgate_signature(key: &[u8], body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// The two signature header values for `keys` (newest first).
pub fn signature_headers(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> (String, String) {
    let standard = keys.iter().map(|k| standard_signature(k, id, timestamp, body)).collect::<Vec<_>>().join(" ");
    let tollgate = keys.first().map(|k| tollgate_signature(k, body)).unwrap_or_default();
    (standard, tollgate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector() {
        let key = secret_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            standard_signature(&key, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn secrets_are_checked_and_generated_well_formed() {
        let s = generate_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        assert_eq!(secret_key("whsec_dG9vc2hvcnQ="), Err(SecretError::Malformed), "too short");
        assert_eq!(secret_key("whsec_!!notbase64!!"), Err(SecretError::Malformed));
        let bare = "C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        assert_eq!(normalize_secret(bare).unwrap(), format!("whsec_{bare}"));
    }

    #[test]
    fn rotation_signs_with_every_live_key_and_tollgate_with_the_newest() {
        let (a, b) = (vec![1u8; 24], vec![2u8; 24]);
        let (standard, tollgate) = signature_headers(&[a.clone(), b.clone()], "evt_1", 5, b"{}");
        let parts: Vec<_> = standard.split(' ').collect();
        assert_eq!(parts, [standard_signature(&a, "evt_1", 5, b"{}"), standard_signature(&b, "evt_1", 5, b"{}")]);
        assert_eq!(tollgate, tollgate_signature(&a, b"{}"));
        assert!(tollgate.starts_with("sha256=") && tollgate.len() == 7 + 64);
    }
}
