//! `server.tls_cert` / `server.tls_key`: TLS on the listener with rustls.
//! Both PEM files or neither; read and checked when the config loads (so
//! `tollgate check-config` catches a wrong path or a key that does not match
//! the certificate), and read again with the config. ALPN offers `h2` and
//! `http/1.1`; TLS 1.2 and 1.3 with rustls's safe defaults (ring).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{ConfigError, Validator};

/// The listener's certificate and the rustls config built from it.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

/// A rustls server config from a PEM certificate chain and a PEM private key.
pub fn load(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificates of a PEM file of CA certificates (at least one).
pub fn ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

impl Validator<'_> {
    pub(super) fn tls(&self, cert: Option<String>, key: Option<String>) -> Result<Option<TlsConfig>, ConfigError> {
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
            (Some(_), None) => return Err(self.err("server.tls_key", "is needed with server.tls_cert")),
            (None, Some(_)) => return Err(self.err("server.tls_cert", "is needed with server.tls_key")),
        };
        let server = load(&cert, &key).map_err(|e| self.err("server.tls_cert", e))?;
        Ok(Some(TlsConfig { cert, key, server: Arc::new(server) }))
    }
}
