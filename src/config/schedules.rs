//! `[schedules]`: the scheduler of scheduled prompts, tasks and missions
//! (see `schedules`): how often a replica looks for due runs, how long a
//! run's lease holds it, how many run at once and how long their tasks and
//! notes are kept.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Validator};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulesConfig {
    /// Whether this replica runs due schedules and background tasks (the
    /// API works either way): a replica that only serves traffic says no.
    pub run: bool,
    /// How often a replica asks the store for due runs. A schedule created
    /// on this replica wakes it at once; one created on another replica is
    /// seen within this.
    pub poll: Duration,
    /// How long a run holds its claim without a renewal: a replica killed
    /// mid-run frees its run for another replica after this.
    pub lease: Duration,
    /// Runs in progress at once on one replica; the rest wait their turn.
    /// High by default: a run is an await on the upstream, a few KiB of
    /// memory, and a burst of due times should start together.
    pub max_concurrent_runs: usize,
    /// How long tasks and notes are kept after they were created.
    pub retention: Duration,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        SchedulesConfig {
            run: true,
            poll: Duration::from_millis(250),
            lease: Duration::from_secs(60),
            max_concurrent_runs: 1000,
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

impl SchedulesConfig {
    /// When a task or note created at `created_at` (Unix s) expires.
    pub fn expires_at(&self, created_at: i64) -> i64 {
        created_at.saturating_add(self.retention.as_secs() as i64)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSchedules {
    pub run: Option<bool>,
    pub poll_ms: Option<u64>,
    pub lease_ms: Option<u64>,
    pub max_concurrent_runs: Option<u64>,
    pub retention_days: Option<u64>,
}

/// Ten years, as for stored responses.
const MAX_RETENTION_DAYS: u64 = 3650;

impl Validator<'_> {
    pub(super) fn schedules(&self, r: RawSchedules) -> Result<SchedulesConfig, ConfigError> {
        let d = SchedulesConfig::default();
        let poll = self.millis("schedules.poll_ms", r.poll_ms, d.poll.as_millis() as u64)?;
        if poll > Duration::from_secs(60) {
            return Err(self.err("schedules.poll_ms", "must be at most 60000 (a due run starts within it)"));
        }
        let lease = self.millis("schedules.lease_ms", r.lease_ms, d.lease.as_millis() as u64)?;
        if lease < Duration::from_millis(500) {
            return Err(self.err("schedules.lease_ms", "must be at least 500 (it is renewed a third of the way)"));
        }
        let max =
            self.positive("schedules.max_concurrent_runs", r.max_concurrent_runs, d.max_concurrent_runs as u64)?;
        if max > 10_000 {
            return Err(self.err("schedules.max_concurrent_runs", "must be at most 10000"));
        }
        let days = self.positive("schedules.retention_days", r.retention_days, d.retention.as_secs() / 86_400)?;
        if days > MAX_RETENTION_DAYS {
            return Err(self.err("schedules.retention_days", format!("must be at most {MAX_RETENTION_DAYS}")));
        }
        Ok(SchedulesConfig {
            run: r.run.unwrap_or(d.run),
            poll,
            lease,
            max_concurrent_runs: max as usize,
            retention: Duration::from_secs(days * 86_400),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load_extra as load;

    #[test]
    fn schedule_settings_have_defaults_and_bounds() {
        let c = load("").unwrap();
        assert_eq!(c.schedules, super::SchedulesConfig::default());
        let c = load("[schedules]\nrun = false\npoll_ms = 1000\nlease_ms = 2000\nretention_days = 7").unwrap();
        assert!(!c.schedules.run);
        assert_eq!(c.schedules.poll.as_millis(), 1000);
        assert_eq!(c.schedules.lease.as_millis(), 2000);
        assert_eq!(c.schedules.expires_at(10), 10 + 7 * 86_400);
        for (extra, error) in [
            ("[schedules]\npoll_ms = 0", "schedules.poll_ms: must be greater than 0"),
            ("[schedules]\npoll_ms = 60001", "schedules.poll_ms: must be at most 60000"),
            ("[schedules]\nlease_ms = 100", "schedules.lease_ms: must be at least 500"),
            ("[schedules]\nretention_days = 3651", "schedules.retention_days: must be at most 3650"),
            ("[schedules]\nevery = 5", "unknown field `every`"),
        ] {
            let got = load(extra).unwrap_err();
            assert!(got.contains(error), "{extra}: {got}");
        }
    }
}
