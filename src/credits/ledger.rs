//! The ledger's interface: what one admission asks for ([`Admit`]), what a
//! passed one holds ([`Ticket`]), how a call ended ([`Settlement`]), the
//! balances and usage totals read back, and the [`Ledger`] trait each
//! backend (embedded, Redis) implements. Separate from the [`super::Meter`]
//! that drives it: this is the contract between the request path and the
//! stores.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use super::{Kind, MeterError, Period, Terms, MAX_CHARGE};
use crate::limits::{LimitSet, RateHeaders};

/// The input to one atomic admission: limits, then the reservation.
#[derive(Debug, Clone)]
pub struct Admit {
    /// Unique per request, across replicas: settles are idempotent by it.
    pub id: Arc<str>,
    pub workspace: Arc<str>,
    pub key: Arc<str>,
    pub limits: LimitSet,
    /// Tokens charged to the tokens-per-minute limits now (corrected later).
    pub tokens: u64,
    pub kind: Kind,
    /// The worst case, in micro-credits; 0 reserves nothing.
    pub amount: u64,
    /// The current period and what the plan grants in it.
    pub period: Period,
    pub allowance: [Option<u64>; 2],
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

/// A passed admission: what the settle needs to undo or complete it.
pub struct Ticket {
    pub admit: Admit,
    /// Where the reservation came from: (plan part, top-up part).
    pub parts: (u64, u64),
    /// The embedded limiter's handle for token corrections.
    pub local: Option<crate::limits::local::Consumed>,
    /// Whether the ledger recorded the admission (false when nothing was
    /// limited or reserved: the settle then only adds the usage totals).
    pub recorded: bool,
    /// The ledger's month when it reserved (may be ahead of the caller's
    /// clock): the plan part is refunded only within that month.
    pub period: String,
    /// The Redis ledger's lease this admission came from, if any: its
    /// settle is then applied to the lease in memory.
    pub lease: Option<super::redis::LeaseUse>,
}

/// How a call ended, for its settle.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub ticket_id: Arc<str>,
    pub workspace: Arc<str>,
    pub key: Arc<str>,
    pub agent: Arc<str>,
    pub kind: Kind,
    pub period: String,
    pub parts: (u64, u64),
    pub limits: LimitSet,
    pub tokens_charged: u64,
    pub tokens_used: u64,
    /// Micro-credits owed.
    pub cost: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// UTC day the usage counts for, `YYYY-MM-DD`.
    pub day: String,
    pub expires_at_ms: i64,
    /// See [`Ticket::recorded`].
    pub recorded: bool,
    /// See [`Ticket::lease`].
    pub lease: Option<super::redis::LeaseUse>,
}

/// One kind's balance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// False when the plan does not meter this kind (no allowance): calls are
    /// not refused for it.
    pub metered: bool,
    /// What the plan grants each month, in micro-credits.
    pub plan_allowance: Option<u64>,
    /// What is left of this month's allowance (reservations deducted).
    pub plan_remaining: i64,
    /// Top-ups: never expire, spent after the plan part.
    pub top_up: i64,
    /// Held by calls in flight.
    pub reserved: i64,
    /// `plan_remaining + top_up`: what new calls may reserve.
    pub available: i64,
    /// Charges that exceeded the balance (a call used more than reserved and
    /// the balance ran out): recorded, never taken below zero.
    pub uncollected: i64,
}

/// Both balances of a workspace in its current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Balances {
    pub workspace: String,
    pub period: String,
    pub message: Balance,
    pub integration: Balance,
}

/// Usage totals of one key and agent on one (UTC) day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub day: String,
    pub key_id: String,
    pub agent: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Micro-credits charged.
    pub credits: u64,
}

/// A backend's ledger: balances, reservations, rate limits, usage totals.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Checks the limits and reserves `amount`, atomically: either both pass
    /// and are recorded, or neither is.
    async fn admit(&self, admit: Admit) -> Result<(Ticket, RateHeaders), MeterError>;
    /// Charges the settle's cost and releases the rest of its reservation.
    /// Never blocks the caller; a backend that must talk to a server queues
    /// it, retries it, and applies it at most once (by ticket id).
    fn settle(&self, settlement: Settlement);
    /// The balances after any due refresh.
    async fn balances(&self, terms: &Terms, now_ms: i64) -> Result<Balances, MeterError>;
    /// Adds `amount` to the top-up part; durable when it returns.
    async fn top_up(&self, terms: &Terms, kind: Kind, amount: u64, now_ms: i64) -> Result<Balances, MeterError>;
    /// Usage totals per key and agent for the days `from..=to` (`YYYY-MM-DD`).
    async fn usage(&self, workspace: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, MeterError>;
    /// Writes everything pending (write-behind state, queued settles); called
    /// periodically and at shutdown.
    async fn flush(&self) -> Result<(), MeterError>;
    /// Releases reservations that expired without a settle; how many.
    async fn reap(&self, now_ms: i64) -> Result<u64, MeterError>;
}

/// Takes `amount` from a kind's parts, plan first: the parts taken.
pub(crate) fn take(plan: &mut i64, top_up: &mut i64, amount: u64) -> (u64, u64) {
    let amount = amount.min(MAX_CHARGE) as i64;
    let from_plan = amount.min((*plan).max(0));
    let from_top_up = (amount - from_plan).min((*top_up).max(0));
    *plan -= from_plan;
    *top_up -= from_top_up;
    (from_plan as u64, from_top_up as u64)
}
