//! Cron expressions as schedules read them (issue 13, DESIGN.md "Scheduled
//! prompts"): five fields (`minute hour day-of-month month day-of-week`) or
//! a shorthand (`@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`,
//! `@yearly`/`@annually`), evaluated in an IANA time zone. Parsing and the
//! calendar arithmetic are the `croner` crate's; this module fixes the
//! dialect (no seconds field, no year field) and the error shape, and turns
//! due times into Unix milliseconds.
//!
//! **Daylight saving time**, as croner implements it and the tests below pin:
//! - *Spring forward* (the clock skips an hour): a job whose time falls in
//!   the skipped hour — `30 2 * * *` on the day 02:00 becomes 03:00 — runs
//!   once, at the first minute after the gap (03:00 local); a job of every
//!   minute or every few minutes just has no runs inside the gap.
//! - *Fall back* (an hour repeats): every wall-clock due time in the
//!   repeated hour runs once, in its first pass (daylight time) — `30 1 * * *`
//!   on the day 02:00 becomes 01:00 again runs at the first 01:30 only, and
//!   `*/30 * * * *` runs 01:00 and 01:30 daylight time, then 02:00 standard
//!   time: no wall time is run twice, so that hour has no runs in its second
//!   pass.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// Why a schedule's expression or zone is refused; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("'{expression}' is not a cron expression of 5 fields (minute hour day month weekday) or a shorthand such as @hourly: {reason}")]
    Expression { expression: String, reason: String },
    #[error("'{0}' is not an IANA time zone name (such as Europe/Berlin or UTC)")]
    Zone(String),
}

impl CronError {
    /// The request field the error is about.
    pub fn param(&self) -> &'static str {
        match self {
            CronError::Expression { .. } => "cron",
            CronError::Zone(_) => "time_zone",
        }
    }
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parses `expression` (5 fields or a shorthand) for `zone` (IANA name).
    pub fn parse(expression: &str, zone: &str) -> Result<CronSchedule, CronError> {
        let zone = Tz::from_str(zone).map_err(|_| CronError::Zone(zone.to_owned()))?;
        let bad = |reason: String| CronError::Expression { expression: expression.to_owned(), reason };
        let trimmed = expression.trim();
        if !trimmed.starts_with('@') && trimmed.split_whitespace().count() != 5 {
            return Err(bad(format!("it has {} fields", trimmed.split_whitespace().count())));
        }
        let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
        let cron = parser.parse(trimmed).map_err(|e| bad(e.to_string()))?;
        Ok(CronSchedule { cron, zone })
    }

    /// The first due time strictly after `after_ms` (Unix ms), in Unix ms;
    /// `None` when the expression never matches again (`0 0 30 2 *`).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // Due times are whole minutes: croner keeps the start's fraction of a
        // second in what it finds, so start from the whole second.
        let after = Utc.timestamp_opt(after_ms.div_euclid(1000), 0).single()?.with_timezone(&self.zone);
        self.cron.find_next_occurrence(&after, false).ok().map(|t: DateTime<Tz>| t.timestamp_millis())
    }

    /// `ms` as an RFC 3339 time in the schedule's zone (`2026-03-08T03:00:00-04:00`).
    pub fn local_time(&self, ms: i64) -> String {
        let at = Utc.timestamp_millis_opt(ms).single().unwrap_or_default().with_timezone(&self.zone);
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    }

    /// The next `n` due times after `after_ms`, oldest first (what a
    /// schedule's response shows).
    pub fn next_runs(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut at = after_ms;
        while out.len() < n {
            let Some(next) = self.next_after(at) else { break };
            out.push(next);
            at = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn due_times_are_whole_minutes_whatever_the_start() {
        let cron = super::CronSchedule::parse("0 * * * *", "UTC").unwrap();
        let hour = 1_796_202_000_000; // 2026-12-02T09:00:00Z
        assert_eq!(cron.next_after(hour - 1), Some(hour));
        assert_eq!(cron.next_after(hour), Some(hour + 3_600_000), "strictly after");
        assert_eq!(cron.next_after(hour + 200), Some(hour + 3_600_000), "a fraction of a second is dropped");
    }

    use super::*;

    /// Unix ms of a local wall time in `zone`, the earlier one when ambiguous.
    fn local(zone: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        let tz = Tz::from_str(zone).unwrap();
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap().timestamp_millis()
    }

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn five_fields_and_shorthands_parse_and_others_are_refused() {
        for ok in ["*/5 * * * *", "0 9 * * 1-5", "30 2 * * *", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"] {
            assert!(CronSchedule::parse(ok, "UTC").is_ok(), "{ok}");
        }
        for bad in ["", "* * * *", "0 * * * * *", "61 * * * *", "* 25 * * *", "@often", "x y z a b"] {
            let e = CronSchedule::parse(bad, "UTC").unwrap_err();
            assert_eq!(e.param(), "cron", "{bad}: {e}");
        }
        let e = CronSchedule::parse("@hourly", "Mars/Olympus").unwrap_err();
        assert_eq!((e.param(), e.to_string().contains("Mars/Olympus")), ("time_zone", true));
    }

    #[test]
    fn due_times_follow_the_zone() {
        let s = CronSchedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        // 09:00 in Berlin in winter is 08:00 UTC.
        let next = s.next_after(utc("2026-12-02T10:00:00Z")).unwrap();
        assert_eq!(next, utc("2026-12-03T08:00:00Z"));
        let runs = CronSchedule::parse("@hourly", "UTC").unwrap().next_runs(utc("2026-12-02T10:00:00Z"), 3);
        assert_eq!(runs, [utc("2026-12-02T11:00:00Z"), utc("2026-12-02T12:00:00Z"), utc("2026-12-02T13:00:00Z")]);
        assert!(CronSchedule::parse("0 0 30 2 *", "UTC").unwrap().next_after(0).is_none(), "never due");
    }

    #[test]
    fn spring_forward_runs_a_job_in_the_skipped_hour_once_right_after_it() {
        // America/New_York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
        let s = CronSchedule::parse("30 2 * * *", "America/New_York").unwrap();
        let runs = s.next_runs(local("America/New_York", 2026, 3, 7, 12, 0), 3);
        assert_eq!(runs[0], local("America/New_York", 2026, 3, 8, 3, 0), "the gap's 02:30 runs at 03:00");
        assert_eq!(runs[1], local("America/New_York", 2026, 3, 9, 2, 30), "then 02:30 as usual");
        // An every-15-minutes job has no runs inside the gap, and resumes after it.
        let q = CronSchedule::parse("*/15 * * * *", "America/New_York").unwrap();
        let runs = q.next_runs(local("America/New_York", 2026, 3, 8, 1, 40), 2);
        assert_eq!(runs, [local("America/New_York", 2026, 3, 8, 1, 45), local("America/New_York", 2026, 3, 8, 3, 0)]);
    }

    #[test]
    fn fall_back_runs_each_wall_time_of_the_repeated_hour_once() {
        // America/New_York, 2026-11-01: 02:00 EDT becomes 01:00 EST.
        let s = CronSchedule::parse("30 1 * * *", "America/New_York").unwrap();
        let runs = s.next_runs(local("America/New_York", 2026, 10, 31, 12, 0), 2);
        assert_eq!(runs[0], utc("2026-11-01T05:30:00Z"), "the first 01:30 (EDT, UTC-4)");
        assert_eq!(runs[1], local("America/New_York", 2026, 11, 2, 1, 30), "not again at 01:30 EST the same day");
        // Fixed minute, every hour: the repeated hour's :30 once, then 02:30 EST.
        let h = CronSchedule::parse("30 * * * *", "America/New_York").unwrap();
        let runs = h.next_runs(utc("2026-11-01T05:00:00Z"), 2);
        assert_eq!(runs, [utc("2026-11-01T05:30:00Z"), utc("2026-11-01T07:30:00Z")], "01:30 EDT, then 02:30 EST");
        // Stepped minutes too: the second pass of the hour is not run again.
        let q = CronSchedule::parse("*/30 * * * *", "America/New_York").unwrap();
        let runs = q.next_runs(utc("2026-11-01T05:00:00Z"), 3);
        let expected = ["05:30", "07:00", "07:30"].map(|t| utc(&format!("2026-11-01T{t}:00Z")));
        assert_eq!(runs, expected, "01:30 EDT, then 02:00 and 02:30 EST: no second 01:00 or 01:30");
    }
}
