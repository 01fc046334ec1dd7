//! The timelines on Redis: two sorted sets, `P:timeline:{sched}:due` and
//! `P:timeline:{sched}:runs`, under one hash tag so the claim script
//! (`advance.lua`) reaches both in one Cluster slot. They hold one member per
//! schedule and per run in progress, so one slot is no hot spot.

use std::sync::Arc;

use ::redis::Script;
use async_trait::async_trait;

use super::{Line, Timeline};
use crate::store::redis::RedisStore;
use crate::store::StoreError;

/// See `src/schedules/timeline/redis/advance.lua` (version 1).
const ADVANCE: &str = include_str!("redis/advance.lua");

pub struct RedisTimeline {
    store: Arc<RedisStore>,
    advance: Script,
}

impl RedisTimeline {
    pub fn new(store: Arc<RedisStore>) -> Self {
        RedisTimeline { store, advance: Script::new(ADVANCE) }
    }

    fn key(&self, line: Line) -> String {
        format!("{}:timeline:{{sched}}:{}", self.store.prefix(), line.as_str())
    }
}

#[async_trait]
impl Timeline for RedisTimeline {
    async fn put(&self, line: Line, member: &str, at: Option<i64>) -> Result<(), StoreError> {
        let cmd = match at {
            Some(at) => ::redis::cmd("ZADD").arg(self.key(line)).arg(at).arg(member).to_owned(),
            None => ::redis::cmd("ZREM").arg(self.key(line)).arg(member).to_owned(),
        };
        self.store.query::<i64>(cmd).await.map(drop)
    }

    async fn upto(&self, line: Line, upto: i64, limit: usize) -> Result<Vec<(String, i64)>, StoreError> {
        let cmd = ::redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(line))
            .arg("-inf")
            .arg(upto)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .to_owned();
        let flat: Vec<(String, f64)> = self.store.query(cmd).await?;
        Ok(flat.into_iter().map(|(m, at)| (m, at as i64)).collect())
    }

    async fn advance(
        &self,
        line: Line,
        member: &str,
        expected: i64,
        next: Option<i64>,
        run: Option<(&str, i64)>,
    ) -> Result<bool, StoreError> {
        let keys = [self.key(line), self.key(Line::Runs)];
        let (run_member, run_at) = run.map_or((String::new(), String::new()), |(m, at)| (m.to_owned(), at.to_string()));
        let next = next.map(|n| n.to_string()).unwrap_or_default();
        let args = [member.to_owned(), expected.to_string(), next, run_member, run_at];
        Ok(self.store.eval::<i64>(&self.advance, &keys, &args).await? == 1)
    }
}
