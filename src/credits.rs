//! Credits: two balances per workspace, reserved before a call and settled
//! after it, with the rate limits checked in the same step.
//!
//! Seed 000's model: a workspace holds `message` credits (model calls,
//! scheduled runs) and `integration` credits (webhook deliveries, tools). Each
//! kind has two parts that combine as follows:
//! - the **plan** part is the plan's monthly allowance; at the start of each
//!   calendar month (UTC, or the workspace's time zone) it is set back to the
//!   allowance — unused plan credits do not roll over;
//! - the **top-up** part is what an admin added; it never expires.
//!
//! Spending takes the plan part first, then the top-up, so top-ups last. The
//! available balance is their sum and never goes below zero.
//!
//! All amounts are integer micro-credits (1 credit = 1,000,000); plans are
//! written in whole credits, prices in micro-credits.
//!
//! The request path ([`Meter::admit`]): the rate limits and the worst-case
//! reservation (prompt estimate + `max_tokens`, or the agent's cap, priced)
//! are one atomic step of the [`Ledger`] — one Lua call on Redis, one in-memory
//! critical section embedded. After the call, [`Meter::settle`] charges what was
//! used and releases the rest; it never blocks the request.
//!
//! This file holds the credit kinds, the errors and the pricing; the
//! [`Ledger`] interface and what passes through it are in `ledger`, the
//! request path's [`Meter`] in `meter`, its background loops in `upkeep`.

pub mod embedded;
mod ledger;
mod meter;
pub mod period;
pub mod redis;
mod terms;
mod upkeep;

use serde::Serialize;

pub(crate) use ledger::take;
pub use ledger::{Admit, Balance, Balances, Ledger, Settlement, Ticket, UsageRow};
pub use meter::{Meter, Request};
pub use period::{days, Period};
pub use terms::{Terms, TermsCache};
pub use upkeep::{final_flush, upkeep};

use crate::config::Price;
use crate::limits::{LimitError, RateHeaders};
use crate::store::StoreError;
use crate::usage::{Outcome, Usage};

pub use crate::units::{MAX_BALANCE, MAX_CHARGE, MICRO};

/// The two balances of a workspace (seed 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Message,
    Integration,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Message, Kind::Integration];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Integration => "integration",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("You exceeded your current quota: the workspace's {} credits cannot cover this request (needs {needed} micro-credits, {available} available). Top up or wait for the monthly refresh.", .kind.as_str())]
    InsufficientQuota { kind: Kind, needed: u64, available: i64, headers: RateHeaders },
    #[error("workspace `{0}` does not exist")]
    UnknownWorkspace(String),
    #[error("the top-up would take the balance past {MAX_BALANCE} micro-credits")]
    TopUpTooLarge,
    #[error("the credit ledger is unavailable; retry shortly")]
    Unavailable(String),
}

impl From<StoreError> for MeterError {
    fn from(e: StoreError) -> Self {
        MeterError::Unavailable(e.to_string())
    }
}

/// What a call costs: the per-request price plus the token prices, rounded up
/// to the micro-credit once over the sum (so 1K tokens split over many calls
/// cost at most one micro-credit more per call).
pub fn cost(price: &Price, input_tokens: u64, output_tokens: u64) -> u64 {
    let input = input_tokens as u128 * price.input_per_1k as u128;
    let tokens = input.saturating_add(output_tokens as u128 * price.output_per_1k as u128);
    let total = (price.request as u128).saturating_add(tokens.div_ceil(1000));
    u64::try_from(total).unwrap_or(u64::MAX)
}

/// What a finished call is charged: its usage at the price, except that a
/// failed upstream call that delivered nothing costs nothing (no answer, no
/// charge: a 502 after retries, an upstream's refusal, a stream that died
/// before its first token). A cut stream pays for what it got (the usage
/// seen, or the estimate).
pub fn charge(price: &Price, outcome: Outcome, usage: &Usage) -> u64 {
    match outcome {
        Outcome::UpstreamFailed if usage.completion_tokens == 0 => 0,
        _ => cost(price, usage.prompt_tokens, usage.completion_tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_integers_rounded_up_once() {
        let p = Price { request: 1000, input_per_1k: 150, output_per_1k: 600 };
        assert_eq!(cost(&p, 0, 0), 1000);
        assert_eq!(cost(&p, 1000, 1000), 1750);
        // 7 * 150 + 3 * 600 = 2850 milli-micro → 2.85 → 3
        assert_eq!(cost(&p, 7, 3), 1003);
        let huge = Price { request: u64::MAX, input_per_1k: u64::MAX, output_per_1k: u64::MAX };
        assert_eq!(cost(&huge, u64::MAX, u64::MAX), u64::MAX, "saturates, never wraps");
    }

    #[test]
    fn a_failed_call_that_delivered_nothing_costs_nothing() {
        let p = Price { request: 500, input_per_1k: 1000, output_per_1k: 1000 };
        let u = |c| Usage { prompt_tokens: 100, completion_tokens: c, estimated: true };
        assert_eq!(charge(&p, Outcome::UpstreamFailed, &u(0)), 0, "no answer, no charge");
        assert_eq!(charge(&p, Outcome::UpstreamFailed, &u(10)), 610, "a stream cut midway pays for what it got");
        assert_eq!(charge(&p, Outcome::ClientCancelled, &u(0)), 600);
    }

    #[test]
    fn spending_takes_the_plan_part_first() {
        let (mut plan, mut top) = (100, 50);
        assert_eq!(take(&mut plan, &mut top, 120), (100, 20));
        assert_eq!((plan, top), (0, 30));
        assert_eq!(take(&mut plan, &mut top, 100), (0, 30), "never below zero");
    }
}
