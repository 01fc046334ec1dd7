//! `tollgate reload`: asks a running gateway to reload through its admin
//! route, so an operator on another host (or without the process's pid)
//! can do what SIGHUP does, and see the verdict.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;

/// Longest wait for the gateway's answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `http(s)://<server.listen>` of `config`, with an unspecified address
/// (`0.0.0.0`, `[::]`) asked on loopback.
pub fn url_of(config: &Config) -> String {
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let scheme = if config.server.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// `POST <url>/v1/admin/reload` with an admin key; the answer's body, or
/// why there was none (the gateway's error JSON when it refused).
pub async fn ask(url: &str, admin_key: &str) -> Result<String, String> {
    let uri: Uri = format!("{}/v1/admin/reload", url.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let request = Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {admin_key}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("the admin key cannot be sent in a header: {e}"))?;
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("no answer from {url} within {TIMEOUT:?}"))?
        .map_err(|e| format!("cannot reach {url}: {}", crate::telemetry::chain(&e)))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{status}: {text}"))
    }
}
