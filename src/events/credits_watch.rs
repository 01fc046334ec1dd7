//! `credits.low` and `credits.exhausted`: emitted when a workspace's balance
//! crosses its threshold or reaches zero, once per crossing.
//!
//! The request path only marks a workspace as touched (`Meter::touched`:
//! one insert into a small set); this watcher reads the balances of touched
//! workspaces once per [`CHECK_EVERY`] on the control runtime, so a burst of
//! requests costs one balance read, not one per request. The level is
//! remembered per replica: with N replicas a crossing may be reported up to
//! N times (receivers deduplicate by the event's content, not its id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::{EventType, Events};
use crate::credits::{Balance, Kind, Meter};

/// How often touched workspaces' balances are read.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Low,
    Exhausted,
}

pub struct CreditsWatch {
    percent: u64,
    levels: Mutex<HashMap<(Arc<str>, Kind), Level>>,
}

#[derive(Serialize)]
struct CreditsData<'a> {
    workspace: &'a str,
    #[serde(rename = "type")]
    kind: Kind,
    /// Micro-credits.
    available: i64,
    threshold: u64,
    plan_allowance: Option<u64>,
    period: &'a str,
}

/// Where a balance stands against its threshold.
fn level_of(balance: &Balance, threshold: u64) -> Level {
    if balance.available <= 0 {
        Level::Exhausted
    } else if (balance.available as u64) < threshold {
        Level::Low
    } else {
        Level::Ok
    }
}

/// The event a move from `previous` (`None`: first seen by this replica) to
/// `level` makes. A balance first seen at zero that never had credits (no
/// allowance, no top-up, nothing owed) did not *reach* zero: no
/// `credits.exhausted` for it; once it held credits, spending them fires it.
fn crossing(previous: Option<Level>, level: Level, balance: &Balance) -> Option<EventType> {
    let never_had = balance.plan_allowance.unwrap_or(0) == 0 && balance.top_up <= 0 && balance.uncollected <= 0;
    match (previous, level) {
        (None, Level::Exhausted) if never_had => None,
        (p, Level::Exhausted) if p != Some(Level::Exhausted) => Some(EventType::CreditsExhausted),
        (None | Some(Level::Ok), Level::Low) => Some(EventType::CreditsLow),
        _ => None,
    }
}

impl CreditsWatch {
    pub fn new(percent: u64) -> CreditsWatch {
        CreditsWatch { percent, levels: Mutex::default() }
    }

    /// The workspace's own threshold, else a share of the plan allowance.
    fn threshold(&self, own: Option<u64>, balance: &Balance) -> u64 {
        own.unwrap_or_else(|| balance.plan_allowance.map_or(0, |a| a / 100 * self.percent))
    }

    /// Reads touched workspaces' balances and emits what crossed a level.
    pub async fn check(&self, meter: &Meter, events: &Events) {
        for workspace in meter.take_touched() {
            let balances = match meter.balances(&workspace).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(error = %e, %workspace, "cannot read balances for credit events");
                    continue;
                }
            };
            let own = meter.terms.get(&workspace).await.ok().and_then(|t| t.low_credits_threshold);
            for (kind, balance) in [(Kind::Message, &balances.message), (Kind::Integration, &balances.integration)] {
                if !balance.metered {
                    continue;
                }
                let threshold = self.threshold(own, balance);
                let level = level_of(balance, threshold);
                let previous = self.levels.lock().expect("levels lock").insert((workspace.clone(), kind), level);
                let Some(event) = crossing(previous, level, balance) else { continue };
                let data = CreditsData {
                    workspace: &workspace,
                    kind,
                    available: balance.available,
                    threshold,
                    plan_allowance: balance.plan_allowance,
                    period: &balances.period,
                };
                events.emit(&workspace, event, &data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(allowance: Option<u64>, top_up: i64, available: i64) -> Balance {
        Balance {
            metered: true,
            plan_allowance: allowance,
            plan_remaining: available - top_up,
            top_up,
            reserved: 0,
            available,
            uncollected: 0,
        }
    }

    #[test]
    fn exhausted_means_a_balance_reached_zero() {
        let never = balance(Some(0), 0, 0);
        assert_eq!(crossing(None, level_of(&never, 0), &never), None, "a balance that never had credits");
        let spent = balance(Some(1_000_000), 0, 0);
        assert_eq!(crossing(None, Level::Exhausted, &spent), Some(EventType::CreditsExhausted));
        let topped_then_spent = balance(Some(0), 0, 0);
        assert_eq!(
            crossing(Some(Level::Ok), Level::Exhausted, &topped_then_spent),
            Some(EventType::CreditsExhausted),
            "it held credits (seen above zero) and spent them"
        );
        assert_eq!(crossing(Some(Level::Exhausted), Level::Exhausted, &spent), None, "once per crossing");
        let low = balance(Some(1_000_000), 0, 10);
        assert_eq!(crossing(None, level_of(&low, 100), &low), Some(EventType::CreditsLow));
        assert_eq!(crossing(Some(Level::Low), Level::Low, &low), None);
        assert_eq!(
            crossing(Some(Level::Exhausted), Level::Low, &low),
            None,
            "a top-up that leaves it low is no new low"
        );
    }
}
