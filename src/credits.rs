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

pub mod embedded;
pub mod period;
pub mod redis;
mod terms;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

pub use period::{days, Period};
pub use terms::{Terms, TermsCache};

use crate::clock::Clock;
use crate::config::{CreditsConfig, Price};
use crate::limits::{LimitError, LimitSet, RateHeaders};
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
/// failed upstream call that delivered nothing costs only the per-request
/// price. A cut stream pays for what it got (the usage seen, or the estimate).
pub fn charge(price: &Price, outcome: Outcome, usage: &Usage) -> u64 {
    match outcome {
        Outcome::UpstreamFailed if usage.completion_tokens == 0 => price.request,
        _ => cost(price, usage.prompt_tokens, usage.completion_tokens),
    }
}

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

/// What the request path holds: the ledger, the workspace terms and a clock.
pub struct Meter {
    pub ledger: Arc<dyn Ledger>,
    pub terms: TermsCache,
    pub clock: Arc<dyn Clock>,
    pub config: CreditsConfig,
    ids: crate::ids::Sequence,
    /// Workspaces whose balance changed since [`Meter::take_touched`]; read
    /// by the credit events' watcher off the request path.
    touched: std::sync::Mutex<std::collections::HashSet<Arc<str>>>,
}

/// The request-side facts admission needs.
pub struct Request<'a> {
    pub key_id: &'a Arc<str>,
    pub workspace: &'a Arc<str>,
    pub key_rpm: Option<u32>,
    pub key_tpm: Option<u32>,
    pub price: &'a Price,
    pub prompt_estimate: u64,
    pub max_tokens: Option<u64>,
}

impl Meter {
    pub fn new(ledger: Arc<dyn Ledger>, terms: TermsCache, clock: Arc<dyn Clock>, config: CreditsConfig) -> Meter {
        Meter { ledger, terms, clock, config, ids: crate::ids::Sequence::new("rsv"), touched: Default::default() }
    }

    /// The meter on the stores' backend. Call it inside the runtime that lives
    /// as long as the process: the Redis ledger spawns its settle task there.
    pub fn open(
        stores: &crate::store::Stores,
        config: &crate::config::Config,
        clock: Arc<dyn Clock>,
        tasks: &crate::tasks::Tasks,
    ) -> Meter {
        use crate::store::Backend;
        let ledger: Arc<dyn Ledger> = match &stores.backend {
            Backend::Embedded(store) => Arc::new(embedded::EmbeddedLedger::new(store.clone())),
            Backend::Redis(store) => Arc::new(redis::RedisLedger::new(store.clone(), tasks)),
        };
        let terms = TermsCache::new(stores.workspaces.clone(), config.plans.clone(), terms::TERMS_TTL);
        Meter::new(ledger, terms, clock, config.credits.clone())
    }

    /// Checks the limits and reserves the worst case of one model call.
    pub async fn admit(&self, r: Request<'_>) -> Result<(Ticket, RateHeaders), MeterError> {
        let terms = self.terms.get(r.workspace).await?;
        let output = r.max_tokens.unwrap_or(self.config.reserve_output_tokens);
        let limits = LimitSet {
            key_rpm: r.key_rpm.or(terms.key_rpm),
            key_tpm: r.key_tpm.or(terms.key_tpm),
            workspace_rpm: terms.rpm,
            workspace_tpm: terms.tpm,
        };
        let now_ms = self.clock.now_ms();
        let kind = Kind::Message;
        let metered = terms.allowance[kind.index()].is_some();
        let admit = Admit {
            id: self.ids.next().into(),
            workspace: r.workspace.clone(),
            key: r.key_id.clone(),
            limits,
            // The tokens limits count the prompt and the bounded output; an
            // unbounded output is counted when its usage is known.
            tokens: r.prompt_estimate.saturating_add(r.max_tokens.unwrap_or(0)).min(MAX_CHARGE),
            kind,
            amount: if metered { cost(r.price, r.prompt_estimate, output).min(MAX_CHARGE) } else { 0 },
            period: Period::at(now_ms, terms.time_zone),
            allowance: terms.allowance,
            now_ms,
            expires_at_ms: now_ms.saturating_add(self.config.reservation_ttl.as_millis() as i64),
        };
        if admit.amount == 0 && admit.limits.is_unlimited() {
            // Nothing to check or hold: no ledger call on the request path.
            let period = admit.period.id.clone();
            return Ok((Ticket { admit, parts: (0, 0), local: None, recorded: false, period }, RateHeaders::default()));
        }
        let workspace = admit.workspace.clone();
        let admitted = self.ledger.admit(admit).await;
        if let Err(MeterError::InsufficientQuota { .. }) = &admitted {
            self.touch(&workspace);
        }
        admitted
    }

    /// Settles a call (never blocks); what it was charged, in micro-credits.
    pub fn settle(&self, ticket: Ticket, agent: Arc<str>, price: &Price, outcome: Outcome, usage: &Usage) -> u64 {
        let used = usage.prompt_tokens.saturating_add(usage.completion_tokens).min(MAX_CHARGE);
        if let Some(local) = &ticket.local {
            local.correct_tokens(used);
        }
        let a = ticket.admit;
        if a.amount > 0 {
            self.touch(&a.workspace);
        }
        let day = Period::utc_day(self.clock.now_ms());
        let cost = charge(price, outcome, usage).min(MAX_CHARGE);
        self.ledger.settle(Settlement {
            ticket_id: a.id,
            workspace: a.workspace,
            key: a.key,
            agent,
            kind: a.kind,
            period: ticket.period,
            parts: ticket.parts,
            limits: a.limits,
            tokens_charged: a.tokens,
            tokens_used: used,
            cost,
            input_tokens: usage.prompt_tokens.min(MAX_CHARGE),
            output_tokens: usage.completion_tokens.min(MAX_CHARGE),
            day,
            expires_at_ms: a.expires_at_ms,
            recorded: ticket.recorded,
        });
        cost
    }

    /// Reserves a fixed `amount` of `kind` for work that is not a model call
    /// (a webhook delivery): no rate limits, no tokens. `payer` names who
    /// spends it in the usage totals (a webhook id).
    pub async fn reserve(
        &self,
        workspace: &Arc<str>,
        payer: &Arc<str>,
        kind: Kind,
        amount: u64,
    ) -> Result<Ticket, MeterError> {
        let terms = self.terms.get(workspace).await?;
        let now_ms = self.clock.now_ms();
        let metered = terms.allowance[kind.index()].is_some();
        let admit = Admit {
            id: self.ids.next().into(),
            workspace: workspace.clone(),
            key: payer.clone(),
            limits: LimitSet::default(),
            tokens: 0,
            kind,
            amount: if metered { amount.min(MAX_CHARGE) } else { 0 },
            period: Period::at(now_ms, terms.time_zone),
            allowance: terms.allowance,
            now_ms,
            expires_at_ms: now_ms.saturating_add(self.config.reservation_ttl.as_millis() as i64),
        };
        if admit.amount == 0 {
            let period = admit.period.id.clone();
            return Ok(Ticket { admit, parts: (0, 0), local: None, recorded: false, period });
        }
        let admitted = self.ledger.admit(admit).await;
        if let Err(MeterError::InsufficientQuota { .. }) = &admitted {
            self.touch(workspace);
        }
        admitted.map(|(ticket, _)| ticket)
    }

    /// Settles a [`Meter::reserve`] with what the work cost (0 when it failed).
    pub fn settle_flat(&self, ticket: Ticket, label: Arc<str>, cost: u64) {
        let a = ticket.admit;
        if a.amount > 0 {
            self.touch(&a.workspace);
        }
        self.ledger.settle(Settlement {
            ticket_id: a.id,
            workspace: a.workspace,
            key: a.key,
            agent: label,
            kind: a.kind,
            period: ticket.period,
            parts: ticket.parts,
            limits: a.limits,
            tokens_charged: 0,
            tokens_used: 0,
            cost: cost.min(MAX_CHARGE),
            input_tokens: 0,
            output_tokens: 0,
            day: Period::utc_day(self.clock.now_ms()),
            expires_at_ms: a.expires_at_ms,
            recorded: ticket.recorded,
        });
    }

    /// Marks a workspace's balance as changed (one short lock, no await).
    pub fn touch(&self, workspace: &Arc<str>) {
        let mut touched = self.touched.lock().expect("touched lock");
        if !touched.contains(workspace) {
            touched.insert(workspace.clone());
        }
    }

    /// The workspaces touched since the last call.
    pub fn take_touched(&self) -> Vec<Arc<str>> {
        self.touched.lock().expect("touched lock").drain().collect()
    }

    pub async fn balances(&self, workspace: &str) -> Result<Balances, MeterError> {
        let terms = self.terms.get_existing(workspace).await?;
        self.ledger.balances(&terms, self.clock.now_ms()).await
    }

    pub async fn top_up(&self, workspace: &str, kind: Kind, amount: u64) -> Result<Balances, MeterError> {
        let terms = self.terms.get_existing(workspace).await?;
        let balances = self.ledger.top_up(&terms, kind, amount, self.clock.now_ms()).await?;
        self.touch(&Arc::from(workspace));
        Ok(balances)
    }

    pub async fn usage(&self, workspace: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, MeterError> {
        self.ledger.usage(workspace, from, to).await
    }
}

/// The ledger's background work, forever: the write-behind flush every
/// `credits.flush_interval_ms` and the reaper every `credits.reaper_interval_ms`.
/// Runs on the control runtime beside the other periodic tasks.
pub async fn upkeep(meter: &Meter) -> std::convert::Infallible {
    // Two loops, polled side by side: a flush that waits (Redis: for queued
    // settles to land) never holds up the reaper.
    let flushing = async {
        let mut every = tokio::time::interval(meter.config.flush_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = meter.ledger.flush().await {
                tracing::warn!(error = %e, "credit ledger flush failed; will retry");
            }
        }
    };
    let reaping = async {
        let mut every = tokio::time::interval(meter.config.reaper_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match meter.ledger.reap(meter.clock.now_ms()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(released = n, "released expired credit reservations (a replica died mid-call?)")
                }
                Err(e) => tracing::warn!(error = %e, "credit reservation reaper failed; will retry"),
            }
        }
    };
    tokio::join!(flushing, reaping);
    unreachable!("both upkeep loops run forever")
}

/// How long shutdown waits for the ledger's last writes.
const FINAL_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes everything pending before the process exits (bounded).
pub async fn final_flush(meter: &Meter) {
    match tokio::time::timeout(FINAL_FLUSH, meter.ledger.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the credit ledger's last flush failed"),
        Err(_) => tracing::error!("the credit ledger's last flush did not finish in {FINAL_FLUSH:?}"),
    }
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
    fn a_failed_call_that_delivered_nothing_costs_the_request_price() {
        let p = Price { request: 500, input_per_1k: 1000, output_per_1k: 1000 };
        let u = |c| Usage { prompt_tokens: 100, completion_tokens: c, estimated: true };
        assert_eq!(charge(&p, Outcome::UpstreamFailed, &u(0)), 500);
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
