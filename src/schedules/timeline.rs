//! The scheduler's two timelines, shared by every replica: when each
//! schedule is next due (`Due`), and until when each run in progress holds
//! its claim (`Runs`). Both are sorted sets of `workspace/id` members scored
//! in Unix milliseconds, and every claim is one compare-and-set on a score
//! ([`Timeline::advance`]): of the replicas that saw a schedule due at `t`,
//! only the one that moves its score from `t` runs it — exactly once per due
//! time, on Redis (one script) and on the embedded store (one transaction).

pub mod embedded;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use crate::store::StoreError;

/// Which timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Schedules, at their next due time.
    Due,
    /// Runs in progress, at the end of their claim's lease.
    Runs,
}

impl Line {
    pub fn as_str(self) -> &'static str {
        match self {
            Line::Due => "due",
            Line::Runs => "runs",
        }
    }
}

#[async_trait]
pub trait Timeline: Send + Sync + 'static {
    /// Puts `member` on `line` at `at`, or takes it off (`None`), whatever
    /// was there (a schedule created, changed, disabled or deleted).
    async fn put(&self, line: Line, member: &str, at: Option<i64>) -> Result<(), StoreError>;
    /// The members of `line` at or before `upto`, earliest first, at most `limit`.
    async fn upto(&self, line: Line, upto: i64, limit: usize) -> Result<Vec<(String, i64)>, StoreError>;
    /// In one atomic step: if `member` is on `line` at exactly `expected`,
    /// moves it to `next` (`None`: takes it off) and, with `run`, puts
    /// `run.0` on [`Line::Runs`] at `run.1`. Whether it moved.
    async fn advance(
        &self,
        line: Line,
        member: &str,
        expected: i64,
        next: Option<i64>,
        run: Option<(&str, i64)>,
    ) -> Result<bool, StoreError>;
}

/// The timeline of the configured backend.
pub fn open(stores: &crate::store::Stores) -> Arc<dyn Timeline> {
    match &stores.backend {
        crate::store::Backend::Embedded(s) => Arc::new(embedded::EmbeddedTimeline::new(s.clone())),
        crate::store::Backend::Redis(s) => Arc::new(redis::RedisTimeline::new(s.clone())),
    }
}
