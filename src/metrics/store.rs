//! The store's operation latency and failures as metric families, encoded
//! at scrape time from the atomics the store counts into
//! ([`crate::store::stats`]), so counting costs a store call no lock.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// The store's latency histogram, encoded from its atomics at scrape time.
#[derive(Debug)]
pub(super) struct StoreLatency(pub(super) Arc<crate::store::stats::OpStats>);

impl EncodeMetric for StoreLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        encoder.encode_histogram::<NoLabelSet>(s.sum_seconds, s.count, &s.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[derive(Debug)]
pub(super) struct StoreErrors(pub(super) Arc<crate::store::stats::OpStats>);

impl EncodeMetric for StoreErrors {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.0.snapshot().errors, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}
