//! Rate limits: requests and tokens per minute, per key and per workspace.
//!
//! The algorithm is GCRA (the generic cell rate algorithm) on both backends:
//! governor in the embedded one ([`local`]), the same arithmetic in a Lua script
//! on Redis (`src/credits/redis/admit.lua`). GCRA over a sliding window because
//! it keeps one number per limiter (the theoretical arrival time), smooths
//! bursts without a window edge where twice the limit gets through, and is
//! exact across replicas when that number lives in Redis and is changed by one
//! script. A limit of N per minute allows a burst of N, then one unit every
//! 60/N seconds.
//!
//! Tokens are charged before the call from the request's estimate (prompt
//! estimate plus `max_tokens` when bounded) and corrected after it from the
//! real usage, which moves the arrival time forward or back.

pub mod local;

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The limits that apply to one request; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSet {
    pub key_rpm: Option<u32>,
    pub key_tpm: Option<u32>,
    pub workspace_rpm: Option<u32>,
    pub workspace_tpm: Option<u32>,
}

impl LimitSet {
    pub fn is_unlimited(&self) -> bool {
        *self == LimitSet::default()
    }
}

/// Which budget a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Requests,
    Tokens,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
        }
    }
}

/// One limiter's state right after a decision, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u32,
    pub remaining: u64,
    /// Until the limiter is back to its full burst.
    pub reset: Duration,
}

impl Window {
    /// The tighter of two windows (fewer remaining).
    pub fn tighter(a: Option<Window>, b: Option<Window>) -> Option<Window> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

// Built once, not parsed from a string on every response.
const REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// OpenAI's `x-ratelimit-*` headers for one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

impl RateHeaders {
    /// Adds the headers of each limited dimension (none when unlimited).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (window, [limit, remaining, reset]) in [(self.requests, REQUESTS), (self.tokens, TOKENS)] {
            let Some(w) = window else { continue };
            headers.insert(limit, HeaderValue::from(w.limit));
            headers.insert(remaining, HeaderValue::from(w.remaining));
            let value = HeaderValue::try_from(format_duration(w.reset)).expect("a duration is a valid header");
            headers.insert(reset, value);
        }
    }
}

/// Why a request was refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("Rate limit reached for {} per min ({scope}): limit {limit}. Retry after {}.", .dimension.as_str(), format_duration(*.retry_after))]
    Exceeded { dimension: Dimension, scope: &'static str, limit: u32, retry_after: Duration, headers: RateHeaders },
    /// More tokens than the limit allows in a minute: waiting will not help.
    #[error("Request too large for tokens per min ({scope}): limit {limit}, requested {requested}. Lower max_tokens or the prompt.")]
    TooLarge { scope: &'static str, limit: u32, requested: u64 },
}

/// Formats a duration the way OpenAI's reset headers do (Go's style):
/// `12ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`. Rounded up to the millisecond.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_micros().div_ceil(1000) as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_look_like_openais() {
        let f = |ms| format_duration(Duration::from_millis(ms));
        assert_eq!(f(0), "0ms");
        assert_eq!(f(12), "12ms");
        assert_eq!(f(1000), "1s");
        assert_eq!(f(1500), "1.5s");
        assert_eq!(f(360_000), "6m0s");
        assert_eq!(f(3_723_250), "1h2m3.25s");
        assert_eq!(format_duration(Duration::from_micros(1)), "1ms");
    }

    #[test]
    fn headers_name_both_dimensions() {
        let mut h = HeaderMap::new();
        let w = |limit, remaining, ms| Some(Window { limit, remaining, reset: Duration::from_millis(ms) });
        RateHeaders { requests: w(60, 59, 1000), tokens: w(1000, 900, 6000) }.apply(&mut h);
        assert_eq!(h["x-ratelimit-limit-requests"], "60");
        assert_eq!(h["x-ratelimit-remaining-requests"], "59");
        assert_eq!(h["x-ratelimit-reset-requests"], "1s");
        assert_eq!(h["x-ratelimit-remaining-tokens"], "900");
        assert_eq!(h["x-ratelimit-reset-tokens"], "6s");
    }
}
