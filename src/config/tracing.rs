//! `[tracing]`: OpenTelemetry traces over OTLP/HTTP, off unless an endpoint
//! is set. Separate from `[log]` because traces leave the process (to a
//! collector) and have their own sampling.

use serde::Deserialize;

use super::{ConfigError, Validator};

/// How spans are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` (the OTLP default).
    Protobuf,
    /// `http/json`.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The traces URL, `.../v1/traces` (appended to a bare collector URL).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    /// Share of new traces kept (a client's sampled `traceparent` is always
    /// followed: parent-based sampling).
    pub sample_ratio: f64,
}

/// `None`: traces are off (the default), and the request path makes no span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracingConfig {
    pub otlp: Option<OtlpConfig>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
}

impl Validator<'_> {
    pub(super) fn tracing(&self, r: RawTracing) -> Result<TracingConfig, ConfigError> {
        let Some(endpoint) =
            r.otlp_endpoint.map(|e| e.trim().trim_end_matches('/').to_owned()).filter(|e| !e.is_empty())
        else {
            return Ok(TracingConfig::default());
        };
        let uri: http::Uri =
            endpoint.parse().map_err(|e| self.err("tracing.otlp_endpoint", format!("{endpoint:?}: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            // The exporter is built without a TLS stack: send to a local
            // collector (or agent), which forwards over TLS.
            return Err(self.err("tracing.otlp_endpoint", "must be an http:// URL of a collector"));
        }
        let endpoint = if endpoint.ends_with("/v1/traces") { endpoint } else { format!("{endpoint}/v1/traces") };
        let protocol = match r.protocol.as_deref() {
            None | Some("http/protobuf") => OtlpProtocol::Protobuf,
            Some("http/json") => OtlpProtocol::Json,
            Some(other) => {
                return Err(self.err("tracing.protocol", format!("{other:?} is not \"http/protobuf\" or \"http/json\"")))
            }
        };
        let sample_ratio = r.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(self.err("tracing.sample_ratio", "must be between 0 and 1"));
        }
        let service_name = r.service_name.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "tollgate".into());
        Ok(TracingConfig { otlp: Some(OtlpConfig { endpoint, protocol, service_name, sample_ratio }) })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load_extra;

    #[test]
    fn off_by_default_and_a_bare_collector_url_gets_the_traces_path() {
        assert_eq!(load_extra("").unwrap().tracing.otlp, None);
        let c = load_extra("[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/\"\nprotocol = \"http/json\"").unwrap();
        let otlp = c.tracing.otlp.unwrap();
        assert_eq!(otlp.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!((otlp.service_name.as_str(), otlp.sample_ratio), ("tollgate", 1.0));
    }

    #[test]
    fn bad_values_name_their_field() {
        for (extra, want) in [
            ("otlp_endpoint = \"https://collector:4318\"", "tracing.otlp_endpoint: must be an http:// URL"),
            ("otlp_endpoint = \"http://c:4318\"\nprotocol = \"grpc\"", "tracing.protocol"),
            ("otlp_endpoint = \"http://c:4318\"\nsample_ratio = 2.0", "tracing.sample_ratio"),
        ] {
            let e = load_extra(&format!("[tracing]\n{extra}")).unwrap_err();
            assert!(e.contains(want), "{extra} → {e}");
        }
    }
}
