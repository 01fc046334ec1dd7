//! Calendar months in a workspace's time zone: when plan credits refresh.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// One calendar month in one time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `YYYY-MM`; ids of later months compare greater as strings, which is how
    /// the ledgers refresh exactly once: a refresh happens only when the stored
    /// id is older than the caller's.
    pub id: String,
    /// The month's first instant, Unix milliseconds.
    pub start_ms: i64,
    /// The next month's first instant: the next refresh.
    pub next_ms: i64,
}

impl Period {
    /// The month holding `now_ms` in `tz`.
    pub fn at(now_ms: i64, tz: Tz) -> Period {
        let utc = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
        let local = utc.with_timezone(&tz);
        let (year, month) = (local.year(), local.month());
        let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
        Period {
            id: format!("{year:04}-{month:02}"),
            start_ms: month_start(tz, year, month),
            next_ms: month_start(tz, next_year, next_month),
        }
    }

    /// The UTC day of `now_ms`, `YYYY-MM-DD` (usage totals are per UTC day).
    pub fn utc_day(now_ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default().format("%Y-%m-%d").to_string()
    }
}

/// Midnight of the month's first day in `tz` (the earliest such instant if a
/// DST change makes it ambiguous or skips it).
fn month_start(tz: Tz, year: i32, month: u32) -> i64 {
    let midnight = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default().and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&midnight).earliest() {
        Some(t) => t.timestamp_millis(),
        // Midnight skipped by a DST jump: the month starts an hour later.
        None => tz
            .from_local_datetime(&(midnight + chrono::Duration::hours(1)))
            .earliest()
            .map_or(0, |t| t.timestamp_millis()),
    }
}

/// The days `from..=to` (`YYYY-MM-DD`), at most [`MAX_DAYS`]; empty when
/// either does not parse or `to` is before `from`.
pub fn days(from: &str, to: &str) -> Vec<String> {
    let parse = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
    let (Some(from), Some(to)) = (parse(from), parse(to)) else { return Vec::new() };
    from.iter_days().take_while(|d| *d <= to).take(MAX_DAYS).map(|d| d.format("%Y-%m-%d").to_string()).collect()
}

/// The longest range `GET /v1/usage` answers at once.
pub const MAX_DAYS: usize = 366;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_time_zone;

    const NOV_30_2330_UTC: i64 = 1_796_081_400_000; // 2026-11-30T23:30:00Z

    #[test]
    fn months_are_calendar_months_in_the_zone() {
        let utc = Period::at(NOV_30_2330_UTC, Tz::UTC);
        assert_eq!(utc.id, "2026-11");
        assert_eq!(utc.next_ms, 1_796_083_200_000, "2026-12-01T00:00Z");
        // Berlin is UTC+1 in winter: it is already December there.
        let berlin = Period::at(NOV_30_2330_UTC, parse_time_zone("Europe/Berlin").unwrap());
        assert_eq!(berlin.id, "2026-12");
        assert_eq!(berlin.start_ms, 1_796_079_600_000, "2026-11-30T23:00Z");
        let december = Period::at(utc.next_ms, Tz::UTC);
        assert!(december.id > utc.id && december.start_ms == utc.next_ms);
        assert_eq!(Period::at(1_798_761_600_000, Tz::UTC).id, "2027-01", "year boundary");
        assert_eq!(Period::utc_day(NOV_30_2330_UTC), "2026-11-30");
        assert!(parse_time_zone("Mars/Olympus").is_none());
    }
}
