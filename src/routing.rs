//! Where one model call goes: a [`Route`] is the ordered list of targets of
//! a model or agent (`targets = [...]`, or the single `provider` +
//! `upstream_model`), and [`Attempts`] walks it for one call.
//!
//! **Choosing.** The first attempt goes to one of the weighted targets that
//! can take a call, by *power of two choices* over a cost: two targets drawn
//! at random (in proportion to their weights), the cheaper one taken, where
//! cost = (first-byte latency EWMA) × (calls in flight + 1) ÷ weight. Two
//! random choices are enough to steer away from a slow or loaded target
//! without the herd behaviour of always taking the single best (every
//! replica would pile onto it at once), and the cost needs no coordination
//! between replicas — the algorithm of Linkerd and Finagle's balancers. The
//! EWMA is peak-sensitive and decays while a target is idle, so a target that
//! was slow once is tried again.
//!
//! **Falling back.** A connect error, a 429, a 5xx, an upstream that did not
//! send headers in time, a refused credential or a stream that is not SSE
//! moves the call to the next target: the other weighted targets in order,
//! then the `weight = 0` fallbacks in order. Only before a byte reached the
//! client — the pipeline hands the client the first answer that starts, and a
//! stream cut later ends with the documented error event, never a second
//! answer spliced in. A target left for another is left at once; the last
//! one left gets its provider's retries.
//!
//! **Skipping.** A target is skipped, not waited for, while its circuit
//! breaker is open ([`breaker`]), while a 429's `Retry-After` cools it down,
//! or while it holds `max_concurrent` calls. When *every* target is open the
//! breakers are ignored and the targets tried in order (Envoy's "panic
//! mode"): a breaker guesses, and a guess must not turn a struggling
//! provider into a certain outage. When every target is cooling down or
//! full, the call fails at once with 503 and the shortest `Retry-After`.

pub mod breaker;
pub mod health;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

pub use health::{Busy, Health, Lease};

use crate::config::{RoutingConfig, TargetConfig};
use crate::json::push_json_string;
use crate::upstream::{Provider, UpstreamError};

/// One target of a route, ready to call.
pub struct RouteTarget {
    pub provider_name: Arc<str>,
    pub provider: Arc<Provider>,
    pub upstream_model: Arc<str>,
    /// `upstream_model` as a JSON string literal (spliced by the rewrite).
    pub upstream_model_json: Vec<u8>,
    /// `provider/upstream_model`: the metrics label and the log's name for it.
    pub label: Arc<str>,
    weight: u32,
    /// Overrides the provider's time to first byte for this target.
    pub first_byte_timeout: Option<Duration>,
    pub health: Arc<Health>,
}

/// The targets of one model or agent.
pub struct Route {
    /// Weighted targets first (config order), then the fallbacks (config order).
    targets: Box<[RouteTarget]>,
    weighted: usize,
}

/// The health of every configured target, by `(provider, upstream_model)`:
/// routes naming the same target share its breaker and its counts. Built
/// with the catalog; a reload hands the old one in, so a target that stays
/// keeps its open breaker and its latency estimate.
#[derive(Default)]
pub struct Healths {
    config: RoutingConfig,
    by_target: HashMap<(String, String), Arc<Health>>,
}

impl Healths {
    /// One health per configured target; its `max_concurrent` is the
    /// smallest any model or agent naming it sets.
    pub fn new<'a>(
        config: RoutingConfig,
        targets: impl Iterator<Item = &'a TargetConfig>,
        previous: Option<&Healths>,
    ) -> Healths {
        let mut limits: HashMap<(String, String), Option<u32>> = HashMap::new();
        for t in targets {
            let limit = limits.entry((t.provider.clone(), t.upstream_model.clone())).or_insert(t.max_concurrent);
            *limit = match (*limit, t.max_concurrent) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let by_target = limits
            .into_iter()
            .map(|(key, limit)| {
                let kept = previous
                    .filter(|p| p.config == config)
                    .and_then(|p| p.by_target.get(&key))
                    .filter(|h| h.limit() == limit);
                let health = kept.cloned().unwrap_or_else(|| Arc::new(Health::new(config, limit)));
                (key, health)
            })
            .collect();
        Healths { config, by_target }
    }

    /// Every configured target's health by label, for the metrics scrape.
    pub fn snapshot(&self) -> Vec<(String, Arc<Health>)> {
        let mut out: Vec<_> = self.by_target.iter().map(|((p, m), h)| (format!("{p}/{m}"), h.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The route of a configured model or agent.
    pub fn route(&self, targets: &[TargetConfig], providers: &HashMap<String, Arc<Provider>>) -> Route {
        Route::new(targets.iter().map(|t| {
            let health = self.by_target[&(t.provider.clone(), t.upstream_model.clone())].clone();
            (t, providers[&t.provider].clone(), health)
        }))
    }

    /// A route of one target that is data, not config (a workspace agent):
    /// it shares a configured target's health when it names one, else has
    /// its own (not in the metrics, whose labels stay bounded by the config).
    pub fn single(&self, provider_name: &str, provider: Arc<Provider>, model: &str) -> Route {
        let known = self.by_target.get(&(provider_name.into(), model.into())).cloned();
        let health = known.unwrap_or_else(|| Arc::new(Health::new(self.config, None)));
        let t = TargetConfig {
            provider: provider_name.into(),
            upstream_model: model.into(),
            weight: 1,
            max_concurrent: None,
            first_byte_timeout: None,
        };
        Route::new(std::iter::once((&t, provider, health)))
    }
}

impl Route {
    fn new<'a>(targets: impl Iterator<Item = (&'a TargetConfig, Arc<Provider>, Arc<Health>)>) -> Route {
        let mut all: Vec<RouteTarget> = targets
            .map(|(t, provider, health)| {
                let mut json = Vec::with_capacity(t.upstream_model.len() + 2);
                push_json_string(&mut json, &t.upstream_model);
                RouteTarget {
                    provider_name: t.provider.as_str().into(),
                    provider,
                    upstream_model: t.upstream_model.as_str().into(),
                    upstream_model_json: json,
                    label: format!("{}/{}", t.provider, t.upstream_model).into(),
                    weight: t.weight,
                    first_byte_timeout: t.first_byte_timeout,
                    health,
                }
            })
            .collect();
        // Stable: config order within each group.
        all.sort_by_key(|t| t.weight == 0);
        let weighted = all.iter().filter(|t| t.weight > 0).count();
        Route { targets: all.into_boxed_slice(), weighted }
    }

    /// The first target: what a single-target route is, and what a
    /// workspace agent copied from a model alias names.
    pub fn primary(&self) -> &RouteTarget {
        &self.targets[0]
    }

    pub fn targets(&self) -> &[RouteTarget] {
        &self.targets
    }

    /// Whether the route's providers take the Responses API as it is (the
    /// config makes every target of a route agree).
    pub fn speaks_responses(&self) -> bool {
        self.primary().provider.speaks_responses()
    }

    /// The attempts of one call.
    pub fn attempts(&self) -> Attempts<'_> {
        Attempts { route: self, tried: 0, made: 0 }
    }
}

/// Walks a route for one call; see the module doc.
pub struct Attempts<'r> {
    route: &'r Route,
    /// Bit `i`: target `i` was tried or found unable to take the call.
    tried: u32,
    made: u32,
}

impl<'r> Attempts<'r> {
    /// Attempts started so far.
    pub fn made(&self) -> u32 {
        self.made
    }

    /// The next target to call with its lease; `Ok(None)` when every target
    /// was tried; an error when none could even be tried.
    pub fn next_target(&mut self) -> Result<Option<(&'r RouteTarget, Lease)>, UpstreamError> {
        let now = Instant::now();
        if self.made == 0 {
            while let Some(i) = self.choose(now) {
                self.tried |= 1 << i;
                if let Some(lease) = self.route.targets[i].health.lease(now, true) {
                    return Ok(Some(self.started(i, lease)));
                }
            }
        }
        for (i, t) in self.route.targets.iter().enumerate() {
            if self.tried & (1 << i) == 0 {
                if let Some(lease) = t.health.lease(now, true) {
                    self.tried |= 1 << i;
                    return Ok(Some(self.started(i, lease)));
                }
            }
        }
        if self.made > 0 {
            return Ok(None);
        }
        // Nothing could take the call: every breaker open (try anyway, in
        // order) or every target cooling down or full (fail at once).
        for (i, t) in self.route.targets.iter().enumerate() {
            if let Some(lease) = t.health.lease(now, false) {
                self.tried = 1 << i;
                return Ok(Some(self.started(i, lease)));
            }
        }
        let retry_after = self
            .route
            .targets
            .iter()
            .filter_map(|t| match t.health.busy(now, false) {
                Some(Busy::CoolingFor(d)) => Some(d),
                _ => None,
            })
            .min()
            .or(Some(Duration::from_secs(1)));
        Err(UpstreamError::Unavailable { retry_after })
    }

    /// Whether a target not yet tried could take a call now (when not, the
    /// one being tried is the last and gets its provider's retries).
    pub fn has_more(&self) -> bool {
        let now = Instant::now();
        let all = (1u32 << self.route.targets.len()) - 1;
        self.tried != all
            && self
                .route
                .targets
                .iter()
                .enumerate()
                .any(|(i, t)| self.tried & (1 << i) == 0 && t.health.busy(now, true).is_none())
    }

    fn started(&mut self, i: usize, lease: Lease) -> (&'r RouteTarget, Lease) {
        self.made += 1;
        (&self.route.targets[i], lease)
    }

    /// Power of two choices among the weighted targets not yet tried that
    /// can take a call.
    fn choose(&self, now: Instant) -> Option<usize> {
        let weighted = &self.route.targets[..self.route.weighted];
        let ready = |i: usize| self.tried & (1 << i) == 0 && weighted[i].health.busy(now, true).is_none();
        if weighted.len() == 1 {
            return ready(0).then_some(0);
        }
        let candidates: Vec<usize> = (0..weighted.len()).filter(|&i| ready(i)).collect();
        let mut rng = rand::thread_rng();
        let draw = |rng: &mut rand::rngs::ThreadRng, except: Option<usize>| {
            let total: u64 =
                candidates.iter().filter(|&&i| Some(i) != except).map(|&i| u64::from(weighted[i].weight)).sum();
            if total == 0 {
                return None;
            }
            let mut pick = rng.gen_range(0..total);
            for &i in candidates.iter().filter(|&&i| Some(i) != except) {
                let w = u64::from(weighted[i].weight);
                if pick < w {
                    return Some(i);
                }
                pick -= w;
            }
            None
        };
        let a = draw(&mut rng, None)?;
        let Some(b) = draw(&mut rng, Some(a)) else { return Some(a) };
        let cost = |i: usize| {
            let t = &weighted[i];
            (t.health.latency_us(now) + 1.0) * f64::from(t.health.in_flight() + 1) / f64::from(t.weight)
        };
        Some(if cost(b) < cost(a) { b } else { a })
    }
}
