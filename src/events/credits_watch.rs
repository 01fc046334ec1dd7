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
                let level = if balance.available <= 0 {
                    Level::Exhausted
                } else if (balance.available as u64) < threshold {
                    Level::Low
                } else {
                    Level::Ok
                };
                let previous = self
                    .levels
                    .lock()
                    .expect("levels lock")
                    .insert((workspace.clone(), kind), level)
                    .unwrap_or(Level::Ok);
                let event = match (previous, level) {
                    (p, Level::Exhausted) if p != Level::Exhausted => EventType::CreditsExhausted,
                    (Level::Ok, Level::Low) => EventType::CreditsLow,
                    _ => continue,
                };
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
