//! The label sets of every family, and the rules that keep their values
//! bounded: fixed sets (route patterns, status classes, outcomes) or
//! [`Bounded`] for the free-form ones (model ids, targets, error codes).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Distinct values a free-form label keeps before the rest count as `other`.
pub const MAX_LABEL_VALUES: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HttpLabels {
    pub(super) route: &'static str,
    pub(super) status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabel {
    pub(super) route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelLabels {
    pub(super) model: Arc<str>,
    pub(super) endpoint: &'static str,
    pub(super) status: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelLabel {
    pub(super) model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TokenLabels {
    pub(super) model: Arc<str>,
    pub(super) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TargetLabel {
    pub(super) target: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AttemptLabels {
    pub(super) target: Arc<str>,
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CodeLabel {
    pub(super) code: Arc<str>,
}

/// Latency buckets in seconds: 0.5 ms to ~65 s, doubling.
pub(super) fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// A label's values, bounded: the first [`MAX_LABEL_VALUES`] keep their name.
#[derive(Default)]
pub struct Bounded {
    seen: RwLock<HashSet<Arc<str>>>,
}

impl Bounded {
    /// `value` itself while the set has room or already holds it, else `other`.
    pub fn label(&self, value: &Arc<str>) -> Arc<str> {
        if self.seen.read().expect("not poisoned").contains(value) {
            return value.clone();
        }
        let mut seen = self.seen.write().expect("not poisoned");
        if seen.len() < MAX_LABEL_VALUES {
            seen.insert(value.clone());
            return value.clone();
        }
        if seen.contains(value) {
            return value.clone();
        }
        Arc::from("other")
    }
}

/// `2xx`, `4xx`, ...: the status label (five values).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=498 => "4xx",
        499 => "499",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_keeps_its_first_values_then_says_other() {
        let b = Bounded::default();
        for i in 0..MAX_LABEL_VALUES {
            let v: Arc<str> = Arc::from(format!("m{i}"));
            assert_eq!(b.label(&v), v);
        }
        assert_eq!(&*b.label(&Arc::from("new")), "other");
        assert_eq!(&*b.label(&Arc::from("m0")), "m0", "a value seen before keeps its name");
    }

    #[test]
    fn status_classes() {
        assert_eq!([200, 404, 429, 499, 502].map(status_class), ["2xx", "4xx", "4xx", "499", "5xx"]);
    }
}
