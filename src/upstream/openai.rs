//! Kind `openai`: any OpenAI-compatible HTTP API (OpenAI, vLLM, Ollama, Groq,
//! Together...), over a pooled hyper client with rustls.
//!
//! Connections are kept alive and reused (HTTP/1.1), and HTTP/2 is used where
//! the upstream offers it through ALPN. Retries happen only here, before any
//! byte reached the client: on connect errors, 429 and 5xx, with exponential
//! backoff and full jitter, honouring `Retry-After` up to `max_retry_after`.
//! A timeout waiting for the first byte is not retried: the upstream may still
//! be working on (and billing) the first attempt.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rand::Rng;
use serde::Deserialize;

use super::{UpstreamError, UpstreamRequest, UpstreamResponse};
use crate::config::OpenAiConfig;
use crate::request::Endpoint;
use crate::secret::Secret;

/// Largest upstream error body read to build a pass-through error.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct OpenAiProvider {
    /// One pool per worker thread: a pooled connection's task runs on the
    /// runtime that opened it, so each worker keeps to its own (see `runtime`).
    clients: Vec<HttpClient>,
    /// Full URL per endpoint, built once.
    chat_url: Uri,
    completions_url: Uri,
    embeddings_url: Uri,
    responses_url: Uri,
    /// `Bearer <key>`, marked sensitive so hyper never logs it.
    authorization: Option<HeaderValue>,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Strings that must never reach a client: the upstream's host and key.
    scrub: Vec<Secret<String>>,
    config: OpenAiConfig,
}

impl OpenAiProvider {
    pub fn new(name: &str, config: &OpenAiConfig, workers: usize) -> Result<OpenAiProvider, String> {
        let clients = (0..workers.max(1)).map(|_| client(name, config)).collect::<Result<Vec<_>, _>>()?;
        let url = |endpoint: Endpoint| -> Result<Uri, String> {
            format!("{}{}", config.base_url, endpoint.path()).parse().map_err(|e| format!("provider {name}: {e}"))
        };
        let authorization = config.api_key.as_ref().map(|key| {
            let mut v = HeaderValue::try_from(format!("Bearer {}", key.expose())).expect("validated in config");
            v.set_sensitive(true);
            v
        });
        let base: Uri = config.base_url.parse().map_err(|e| format!("provider {name}: {e}"))?;
        // Longest first, so `host:port` goes before the bare host.
        let mut scrub = vec![Secret::new(config.base_url.clone())];
        if let Some(authority) = base.authority() {
            scrub.push(Secret::new(authority.as_str().to_owned()));
        }
        if let Some(host) = base.host() {
            scrub.push(Secret::new(host.to_owned()));
        }
        if let Some(key) = &config.api_key {
            scrub.push(key.clone());
        }
        Ok(OpenAiProvider {
            clients,
            chat_url: url(Endpoint::Chat)?,
            completions_url: url(Endpoint::Completions)?,
            embeddings_url: url(Endpoint::Embeddings)?,
            responses_url: url(Endpoint::Responses)?,
            authorization,
            extra_headers: config.headers.clone(),
            scrub,
            config: config.clone(),
        })
    }

    fn client(&self) -> &HttpClient {
        &self.clients[crate::runtime::worker_index() % self.clients.len()]
    }

    fn url(&self, endpoint: Endpoint) -> &Uri {
        match endpoint {
            Endpoint::Chat => &self.chat_url,
            Endpoint::Completions => &self.completions_url,
            Endpoint::Embeddings => &self.embeddings_url,
            Endpoint::Responses => &self.responses_url,
        }
    }

    /// Whether the provider serves the Responses API itself.
    pub fn native_responses(&self) -> bool {
        self.config.native_responses
    }

    fn build(&self, r: &UpstreamRequest) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(r.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.url(r.endpoint).clone();
        let h = req.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(if r.stream { "text/event-stream" } else { "application/json" }),
        );
        h.insert("x-request-id", r.request_id.clone());
        if let Some(auth) = &self.authorization {
            h.insert(header::AUTHORIZATION, auth.clone());
        }
        for (k, v) in &self.extra_headers {
            h.insert(k.clone(), v.clone());
        }
        for (k, v) in &r.trace {
            h.insert(k.clone(), v.clone());
        }
        req
    }

    pub async fn send(&self, r: &UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let mut attempt = 0;
        loop {
            let first_byte = r.first_byte_timeout.unwrap_or(self.config.first_byte_timeout);
            let retry_in = match tokio::time::timeout(first_byte, self.client().request(self.build(r))).await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Err(e)) if e.is_connect() => {
                    let err = UpstreamError::Unreachable { detail: crate::telemetry::chain(&e) };
                    self.retry_delay(r, attempt, None).ok_or(err)?
                }
                Ok(Err(e)) => return Err(UpstreamError::Unreachable { detail: crate::telemetry::chain(&e) }),
                Ok(Ok(response)) => {
                    let status = response.status();
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        let retry_after = retry_after(response.headers());
                        let err = if status == StatusCode::TOO_MANY_REQUESTS {
                            UpstreamError::Overloaded { retry_after }
                        } else {
                            UpstreamError::Status { status: status.as_u16() }
                        };
                        self.retry_delay(r, attempt, retry_after).ok_or(err)?
                    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(UpstreamError::Auth { status: status.as_u16() });
                    } else if status.is_client_error() {
                        return Err(self.rejection(status, response.into_body(), r).await);
                    } else {
                        let idle = self.config.idle_timeout;
                        let event_stream = response
                            .headers()
                            .get(header::CONTENT_TYPE)
                            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                        let body = response
                            .into_body()
                            .map_err(|e| UpstreamError::Body { detail: crate::telemetry::chain(&e) });
                        return Ok(UpstreamResponse {
                            status,
                            event_stream,
                            body: body.boxed_unsync(),
                            idle_timeout: idle,
                        });
                    }
                }
            };
            tracing::debug!(attempt, delay_ms = retry_in.as_millis() as u64, "retrying upstream request");
            tokio::time::sleep(retry_in).await;
            attempt += 1;
        }
    }

    /// How long to wait before the next attempt, or `None` to give up.
    fn retry_delay(&self, r: &UpstreamRequest, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if !r.retry || attempt >= self.config.max_retries {
            return None;
        }
        match retry_after {
            Some(d) if d > self.config.max_retry_after => None,
            Some(d) => Some(d),
            None => {
                let ceiling = self.config.retry_base.saturating_mul(1 << attempt.min(16));
                Some(rand::thread_rng().gen_range(ceiling / 2..=ceiling))
            }
        }
    }

    /// Builds the pass-through error for an upstream 4xx: the upstream's own
    /// message, type and code, with its host, key and model name scrubbed.
    async fn rejection(&self, status: StatusCode, body: hyper::body::Incoming, r: &UpstreamRequest) -> UpstreamError {
        #[derive(Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            message: Option<String>,
            #[serde(rename = "type")]
            kind: Option<String>,
            code: Option<serde_json::Value>,
            param: Option<String>,
        }
        let read = tokio::time::timeout(self.config.idle_timeout, Limited::new(body, MAX_ERROR_BODY).collect()).await;
        let parsed = read
            .ok()
            .and_then(Result::ok)
            .and_then(|collected| serde_json::from_slice::<Envelope>(&collected.to_bytes()).ok());
        let fallback = || format!("The upstream provider rejected the request (status {}).", status.as_u16());
        let (message, kind, code, param) = match parsed {
            Some(Envelope { error }) => (
                error.message.unwrap_or_else(fallback),
                error.kind.unwrap_or_else(|| "invalid_request_error".into()),
                error.code.and_then(|c| match c {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
                error.param,
            ),
            None => (fallback(), "invalid_request_error".into(), None, None),
        };
        UpstreamError::Rejected { status, message: self.scrubbed(&message, r), kind, code, param }
    }

    fn scrubbed(&self, text: &str, r: &UpstreamRequest) -> String {
        let mut out = text.to_owned();
        for secret in &self.scrub {
            out = out.replace(secret.expose().as_str(), "[upstream]");
        }
        if r.upstream_model != r.client_model {
            out = out.replace(&*r.upstream_model, &r.client_model);
        }
        out
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A keep-alive pool over TCP (+ rustls, ALPN h2/http1.1).
fn client(name: &str, config: &OpenAiConfig) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_failed = |e: rustls::Error| format!("provider {name}: TLS setup failed: {e}");
    let builder = if config.ca_certs.is_empty() {
        hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider).map_err(tls_failed)?
    } else {
        // The public roots and the configured CAs: a private CA adds trust,
        // it does not take the public roots away.
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &config.ca_certs {
            roots.add(cert.clone()).map_err(tls_failed)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_failed)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
    };
    let https = builder.https_or_http().enable_http1().enable_http2().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}

/// `Retry-After` (seconds) or `retry-after-ms`, as OpenAI sends them.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let parse = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    if let Some(ms) = parse("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    parse("retry-after").map(|s| Duration::from_secs_f64(s.max(0.0)))
}
