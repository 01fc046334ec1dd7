//! `targets = [...]` on a model or agent, and `[routing]`: where a call may
//! go and when a target is left alone. Separate from `providers` because it
//! is policy over the catalogue (weights, limits, breaker thresholds), not
//! the catalogue itself.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, ProviderConfig, Validator};

/// Most targets one model or agent may list (attempts are tracked in a bit set).
pub const MAX_TARGETS: usize = 16;

/// One place a model or agent may be served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub provider: String,
    pub upstream_model: String,
    /// Share of traffic among the healthy targets; 0: a fallback only, tried
    /// in order once every weighted target has failed.
    pub weight: u32,
    /// Most calls in flight on this target at once; a full target is skipped.
    pub max_concurrent: Option<u32>,
    /// Overrides the provider's `first_byte_timeout_ms` for this target.
    pub first_byte_timeout: Option<Duration>,
}

/// `[routing]`: when a target's circuit breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingConfig {
    /// Failures in a row that open the breaker.
    pub consecutive_failures: u32,
    /// Share of failed calls in a window that opens the breaker...
    pub error_rate: f64,
    /// ...once the window holds at least this many calls.
    pub min_calls: u32,
    pub window: Duration,
    /// How long an open breaker skips its target before one probe is let through.
    pub open_for: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub provider: String,
    pub upstream_model: String,
    pub weight: Option<u32>,
    pub max_concurrent: Option<u32>,
    pub first_byte_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub breaker_failures: Option<u32>,
    pub breaker_error_rate: Option<f64>,
    pub breaker_min_calls: Option<u32>,
    pub breaker_window_ms: Option<u64>,
    pub breaker_open_ms: Option<u64>,
}

impl Validator<'_> {
    /// The targets of model or agent `at` (`models.x`): either `provider` and
    /// `upstream_model` (one target) or `targets`, never both.
    pub(super) fn targets(
        &self,
        at: &str,
        single: (Option<String>, Option<String>),
        targets: Option<Vec<RawTarget>>,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<Vec<TargetConfig>, ConfigError> {
        let (listed, raw) = match (single, targets) {
            ((None, None), Some(list)) => (true, list),
            ((Some(provider), Some(upstream_model)), None) => (
                false,
                vec![RawTarget {
                    provider,
                    upstream_model,
                    weight: None,
                    max_concurrent: None,
                    first_byte_timeout_ms: None,
                }],
            ),
            ((_, _), Some(_)) => {
                return Err(self.err(format!("{at}.targets"), "give either targets, or provider and upstream_model"))
            }
            ((None, _), None) => return Err(self.err(format!("{at}.provider"), "missing (or give targets)")),
            ((_, None), None) => return Err(self.err(format!("{at}.upstream_model"), "missing (or give targets)")),
        };
        if raw.is_empty() || raw.len() > MAX_TARGETS {
            return Err(self.err(format!("{at}.targets"), format!("must list 1 to {MAX_TARGETS} targets")));
        }
        let mut out: Vec<TargetConfig> = Vec::with_capacity(raw.len());
        for (i, t) in raw.into_iter().enumerate() {
            let path = if listed { format!("{at}.targets[{i}]") } else { at.to_owned() };
            self.provider_ref(&format!("{path}.provider"), &t.provider, providers)?;
            self.upstream_model(&format!("{path}.upstream_model"), &t.upstream_model)?;
            if out.iter().any(|o| o.provider == t.provider && o.upstream_model == t.upstream_model) {
                return Err(self.err(format!("{at}.targets[{i}]"), "the same provider and upstream_model twice"));
            }
            if t.max_concurrent == Some(0) {
                return Err(self.err(format!("{path}.max_concurrent"), "must be greater than 0"));
            }
            let first_byte_timeout = match t.first_byte_timeout_ms {
                None => None,
                Some(ms) => Some(self.millis(&format!("{path}.first_byte_timeout_ms"), Some(ms), 1)?),
            };
            out.push(TargetConfig {
                provider: t.provider,
                upstream_model: t.upstream_model,
                weight: t.weight.unwrap_or(1).min(1_000),
                max_concurrent: t.max_concurrent,
                first_byte_timeout,
            });
        }
        if out.iter().all(|t| t.weight == 0) {
            return Err(self.err(format!("{at}.targets"), "at least one target needs a weight above 0"));
        }
        let native =
            |t: &TargetConfig| matches!(&providers[&t.provider], ProviderConfig::OpenAi(o) if o.native_responses);
        if out.iter().any(native) && !out.iter().all(native) {
            return Err(self.err(
                format!("{at}.targets"),
                "mixes providers with responses = \"native\" and without; a call must read the same on every target",
            ));
        }
        Ok(out)
    }

    pub(super) fn routing(&self, r: RawRouting) -> Result<RoutingConfig, ConfigError> {
        let d = RoutingConfig::default();
        let rate = r.breaker_error_rate.unwrap_or(d.error_rate);
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(self.err("routing.breaker_error_rate", "must be above 0 and at most 1"));
        }
        let count = |path: &str, v: Option<u32>, default: u32| {
            self.positive(path, v.map(u64::from), u64::from(default)).map(|v| v as u32)
        };
        Ok(RoutingConfig {
            consecutive_failures: count("routing.breaker_failures", r.breaker_failures, d.consecutive_failures)?,
            error_rate: rate,
            min_calls: count("routing.breaker_min_calls", r.breaker_min_calls, d.min_calls)?,
            window: self.millis("routing.breaker_window_ms", r.breaker_window_ms, d.window.as_millis() as u64)?,
            open_for: self.millis("routing.breaker_open_ms", r.breaker_open_ms, d.open_for.as_millis() as u64)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load_extra;

    const SECOND: &str = r#"
        [providers.vllm]
        kind = "openai"
        base_url = "http://127.0.0.1:10/v1"
    "#;

    #[test]
    fn targets_load_in_order_with_their_options() {
        let c = load_extra(&format!(
            r#"{SECOND}
            [models.duo]
            targets = [
              {{ provider = "up", upstream_model = "gpt-4o", weight = 3, max_concurrent = 8 }},
              {{ provider = "vllm", upstream_model = "llama", weight = 0, first_byte_timeout_ms = 1500 }},
            ]
            [routing]
            breaker_failures = 2
            breaker_open_ms = 500
            "#
        ))
        .unwrap();
        let t = &c.models["duo"].targets;
        assert_eq!((t[0].provider.as_str(), t[0].weight, t[0].max_concurrent), ("up", 3, Some(8)));
        assert_eq!((t[1].upstream_model.as_str(), t[1].weight), ("llama", 0));
        assert_eq!(t[1].first_byte_timeout, Some(std::time::Duration::from_millis(1500)));
        assert_eq!(c.routing.consecutive_failures, 2);
        assert_eq!(c.routing.open_for, std::time::Duration::from_millis(500));
        assert_eq!(c.agents["a"].targets.len(), 1, "provider + upstream_model is one target");
    }

    #[test]
    fn bad_targets_are_refused_with_their_path() {
        let cases = [
            (
                r#"provider = "up"
                upstream_model = "m"
                targets = [{ provider = "up", upstream_model = "n" }]"#,
                "models.x.targets: give either targets, or provider and upstream_model",
            ),
            ("targets = []", "models.x.targets: must list 1 to 16 targets"),
            (
                r#"targets = [{ provider = "nope", upstream_model = "m" }]"#,
                "models.x.targets[0].provider: unknown provider",
            ),
            (
                r#"targets = [{ provider = "up", upstream_model = "m" }, { provider = "up", upstream_model = "m" }]"#,
                "models.x.targets[1]: the same provider and upstream_model twice",
            ),
            (
                r#"targets = [{ provider = "up", upstream_model = "m", weight = 0 }]"#,
                "at least one target needs a weight",
            ),
            (
                r#"targets = [{ provider = "up", upstream_model = "m", max_concurrent = 0 }]"#,
                "models.x.targets[0].max_concurrent: must be greater than 0",
            ),
            (r#"provider = "up""#, "models.x.upstream_model: missing"),
        ];
        for (body, want) in cases {
            let e = load_extra(&format!("[models.x]\n{body}")).unwrap_err();
            assert!(e.contains(want), "{body}\n→ {e}");
        }
        let e = load_extra("[routing]\nbreaker_error_rate = 1.5").unwrap_err();
        assert!(e.contains("routing.breaker_error_rate"), "{e}");
    }

    #[test]
    fn a_route_may_not_mix_native_and_translated_responses() {
        let e = load_extra(&format!(
            r#"{SECOND}
            responses = "native"
            [models.x]
            targets = [{{ provider = "up", upstream_model = "m" }}, {{ provider = "vllm", upstream_model = "m" }}]
            "#
        ))
        .unwrap_err();
        assert!(e.contains("models.x.targets: mixes providers"), "{e}");
    }
}
