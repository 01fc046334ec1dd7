//! `[cors]`: which browser origins may call the gateway (a web app using the
//! Vercel AI SDK, or `openai` with `dangerouslyAllowBrowser`). Off unless
//! `allowed_origins` names at least one origin; then tower-http's CORS layer
//! answers preflight `OPTIONS` requests itself — without a key, as browsers
//! send none on a preflight — and adds the `Access-Control-*` headers to
//! every answer for an allowed origin.
//!
//! Credentials mode (cookies) is never allowed: the gateway authenticates by
//! key header, so `Access-Control-Allow-Credentials` is never sent and `"*"`
//! is a valid origin list.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

use super::{ConfigError, Validator};

/// Methods a browser may use by default: every verb the routes table serves.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PATCH", "DELETE"];
/// Response headers a browser's script may read by default: the request id
/// and the rate-limit and retry headers the SDKs look at.
const EXPOSED: &[&str] = &[
    "x-request-id",
    "retry-after",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-session-id",
    "x-chat-id",
    "x-vercel-ai-ui-message-stream",
];
/// How long a browser may cache a preflight's answer by default.
const MAX_AGE_S: u64 = 600;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_methods: Option<Vec<String>>,
    pub allowed_headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub max_age_s: Option<u64>,
}

/// The CORS layer to put in front of the routes, `None` when CORS is off.
#[derive(Debug, Clone, Default)]
pub struct CorsConfig {
    pub layer: Option<CorsLayer>,
}

impl Validator<'_> {
    pub(super) fn cors(&self, r: RawCors) -> Result<CorsConfig, ConfigError> {
        let origins = r.allowed_origins.unwrap_or_default();
        if origins.is_empty() {
            return Ok(CorsConfig::default());
        }
        let allow_origin = if origins.iter().any(|o| o == "*") {
            if origins.len() > 1 {
                return Err(self.err("cors.allowed_origins", "\"*\" allows every origin: list it alone"));
            }
            AllowOrigin::any()
        } else {
            let parsed = origins.iter().map(|o| self.origin_value(o)).collect::<Result<Vec<_>, _>>()?;
            AllowOrigin::list(parsed)
        };
        let methods = match r.allowed_methods {
            Some(methods) => methods,
            None => METHODS.iter().map(|m| (*m).to_owned()).collect(),
        };
        let methods = methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| self.err("cors.allowed_methods", format!("{m:?} is not an HTTP method")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The OpenAI SDKs send their own headers (`x-stainless-*`): by
        // default a preflight is allowed whatever headers it asks for, since
        // the key, not the header list, is what authorises a call.
        let allow_headers = match r.allowed_headers {
            None => AllowHeaders::mirror_request(),
            Some(names) => AllowHeaders::list(self.header_names("cors.allowed_headers", &names)?),
        };
        let exposed = match r.expose_headers {
            Some(names) => self.header_names("cors.expose_headers", &names)?,
            None => EXPOSED.iter().map(|h| HeaderName::from_static(h)).collect(),
        };
        let max_age = r.max_age_s.unwrap_or(MAX_AGE_S);
        if max_age > 86_400 {
            return Err(self.err("cors.max_age_s", "must be at most 86400 (browsers cap it lower still)"));
        }
        let layer = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(AllowMethods::list(methods))
            .allow_headers(allow_headers)
            .expose_headers(ExposeHeaders::list(exposed))
            .max_age(Duration::from_secs(max_age));
        Ok(CorsConfig { layer: Some(layer) })
    }

    /// An origin as a browser sends it: `scheme://host[:port]`, nothing after.
    fn origin_value(&self, origin: &str) -> Result<HeaderValue, ConfigError> {
        let bad = |why: &str| self.err("cors.allowed_origins", format!("{origin:?} {why}"));
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or_else(|| bad("must start with https:// or http://"))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(bad("must be scheme://host[:port], without a path or a trailing slash"));
        }
        HeaderValue::from_str(origin).map_err(|_| bad("is not a valid header value"))
    }

    fn header_names(&self, path: &str, names: &[String]) -> Result<Vec<HeaderName>, ConfigError> {
        names
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes()).map_err(|_| self.err(path, format!("{n:?} is not a header name")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load_extra as load;

    #[test]
    fn cors_is_off_by_default_and_with_no_origins() {
        assert!(load("").unwrap().cors.layer.is_none());
        assert!(load("[cors]\nallowed_origins = []").unwrap().cors.layer.is_none());
    }

    #[test]
    fn origins_methods_and_headers_are_checked_by_name() {
        assert!(load("[cors]\nallowed_origins = [\"https://app.example.com\", \"http://localhost:3000\"]")
            .unwrap()
            .cors
            .layer
            .is_some());
        assert!(load("[cors]\nallowed_origins = [\"*\"]").unwrap().cors.layer.is_some());
        for (extra, field) in [
            ("allowed_origins = [\"app.example.com\"]", "cors.allowed_origins"),
            ("allowed_origins = [\"https://app.example.com/\"]", "cors.allowed_origins"),
            ("allowed_origins = [\"*\", \"https://a.example\"]", "cors.allowed_origins"),
            ("allowed_origins = [\"*\"]\nallowed_methods = [\"G ET\"]", "cors.allowed_methods"),
            ("allowed_origins = [\"*\"]\nallowed_headers = [\"bad header\"]", "cors.allowed_headers"),
            ("allowed_origins = [\"*\"]\nexpose_headers = [\"bad:header\"]", "cors.expose_headers"),
            ("allowed_origins = [\"*\"]\nmax_age_s = 100000", "cors.max_age_s"),
            ("allowed_origins = [\"*\"]\nallow_credentials = true", "allow_credentials"),
        ] {
            let e = load(&format!("[cors]\n{extra}")).unwrap_err();
            assert!(e.contains(field), "{extra}: {e}");
        }
    }
}
