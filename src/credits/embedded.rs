//! The embedded ledger: balances in memory, written behind to the store file.
//!
//! Admission and settle are one short critical section each on a per-process
//! map (a `std` mutex, never held across an `.await`), so concurrent requests
//! can never overspend. Every `credits.flush_interval_ms` (default 1 s) the
//! changed balances and the new usage totals are written in one transaction.
//!
//! Durability: a clean shutdown flushes last, so nothing is lost. After a
//! kill -9 the charges of at most the last flush interval are lost (the
//! workspace is under-charged, never over-charged), and reservations of calls
//! in flight vanish with the process: the file holds balances *including* what
//! those calls held, so they are released by the restart itself — the embedded
//! backend's reaper. Top-ups are written before the API answers.

mod ledger;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{
    take, Admit, Balance, Balances, Kind, Ledger, MeterError, Settlement, Terms, Ticket, UsageRow, MAX_BALANCE,
};
use crate::credits::Period;
use crate::limits::local::LocalLimiter;
use crate::limits::RateHeaders;
use crate::store::embedded::EmbeddedStore;
use ledger::StoredBalance;

/// One kind of one workspace.
#[derive(Debug, Clone, Copy, Default)]
struct Purse {
    /// Net of reservations.
    plan: i64,
    top_up: i64,
    /// What calls in flight took from each part in the current period.
    held_plan: i64,
    held_top_up: i64,
    uncollected: i64,
    metered: bool,
    allowance: Option<u64>,
}

impl Purse {
    fn balance(&self) -> Balance {
        Balance {
            metered: self.metered,
            plan_allowance: self.allowance,
            plan_remaining: self.plan,
            top_up: self.top_up,
            reserved: self.held_plan + self.held_top_up,
            available: self.plan + self.top_up,
            uncollected: self.uncollected,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Wallet {
    period: String,
    purses: [Purse; 2],
}

impl Wallet {
    /// Applies the plan's terms; at a new period, sets the plan parts to the
    /// allowance (held plan parts belonged to the old period and lapse).
    fn refresh(&mut self, period: &str, allowance: [Option<u64>; 2]) -> bool {
        for (purse, allowance) in self.purses.iter_mut().zip(allowance) {
            purse.metered = allowance.is_some();
            purse.allowance = allowance;
        }
        if self.period.as_str() >= period {
            return false;
        }
        self.period = period.to_owned();
        for purse in &mut self.purses {
            purse.plan = purse.allowance.unwrap_or(0) as i64;
            purse.held_plan = 0;
        }
        true
    }

    fn stored(&self) -> Vec<StoredBalance> {
        Kind::ALL
            .iter()
            .zip(&self.purses)
            .map(|(kind, p)| StoredBalance {
                kind: *kind,
                period: self.period.clone(),
                plan: p.plan + p.held_plan,
                top_up: p.top_up + p.held_top_up,
                uncollected: p.uncollected,
            })
            .collect()
    }
}

/// (workspace, UTC day, key id, agent).
type UsageKey = (Arc<str>, String, Arc<str>, Arc<str>);

#[derive(Default)]
struct State {
    wallets: HashMap<Arc<str>, Wallet>,
    dirty: HashSet<Arc<str>>,
    /// Usage not yet written: (workspace, day, key, agent) → totals.
    usage: HashMap<UsageKey, UsageRow>,
}

pub struct EmbeddedLedger {
    store: Arc<EmbeddedStore>,
    limiter: LocalLimiter,
    state: Mutex<State>,
    /// Serialises flushes, so a batch is never written twice or out of order.
    flushing: tokio::sync::Mutex<()>,
    /// Flushes since the limiter's buckets were last swept.
    flushes: std::sync::atomic::AtomicU32,
}

/// The limiter's full buckets are dropped every this many flushes (a minute
/// at the default interval).
const SWEEP_EVERY: u32 = 60;

impl EmbeddedLedger {
    pub fn new(store: Arc<EmbeddedStore>) -> EmbeddedLedger {
        EmbeddedLedger {
            store,
            limiter: LocalLimiter::default(),
            state: Mutex::new(State::default()),
            flushing: tokio::sync::Mutex::new(()),
            flushes: Default::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change:
        // every critical section computes first and writes last.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads a workspace's wallet from the file the first time it is used.
    async fn load(&self, workspace: &Arc<str>) -> Result<(), MeterError> {
        if self.state().wallets.contains_key(workspace) {
            return Ok(());
        }
        let stored = self.store.load_balances(workspace).await?;
        let mut wallet = Wallet::default();
        for b in stored {
            wallet.period = b.period;
            let purse = &mut wallet.purses[b.kind.index()];
            (purse.plan, purse.top_up, purse.uncollected) = (b.plan, b.top_up, b.uncollected);
        }
        // Another request may have loaded it meanwhile: keep the first.
        self.state().wallets.entry(workspace.clone()).or_insert(wallet);
        Ok(())
    }

    fn balances_of(workspace: &str, wallet: &Wallet) -> Balances {
        Balances {
            workspace: workspace.to_owned(),
            period: wallet.period.clone(),
            message: wallet.purses[0].balance(),
            integration: wallet.purses[1].balance(),
        }
    }
}

#[async_trait]
impl Ledger for EmbeddedLedger {
    async fn admit(&self, a: Admit) -> Result<(Ticket, RateHeaders), MeterError> {
        self.load(&a.workspace).await?;
        let (consumed, headers) = self.limiter.check(&a.key, &a.workspace, &a.limits, a.tokens)?;
        let mut state = self.state();
        let State { wallets, dirty, .. } = &mut *state;
        let wallet = wallets.entry(a.workspace.clone()).or_default();
        if wallet.refresh(&a.period.id, a.allowance) {
            dirty.insert(a.workspace.clone());
        }
        let purse = &mut wallet.purses[a.kind.index()];
        let mut parts = (0, 0);
        if purse.metered && a.amount > 0 {
            let available = purse.plan + purse.top_up;
            // Compared wide: `amount` is clamped to MAX_CHARGE, but never trust a cast.
            if a.amount as i128 > available as i128 {
                drop(state);
                consumed.refund_all();
                return Err(MeterError::InsufficientQuota { kind: a.kind, needed: a.amount, available, headers });
            }
            parts = take(&mut purse.plan, &mut purse.top_up, a.amount);
            purse.held_plan += parts.0 as i64;
            purse.held_top_up += parts.1 as i64;
        }
        // The month the money was taken in is the ledger's, which may be
        // ahead of the caller's clock.
        let period = wallet.period.clone();
        Ok((Ticket { admit: a, parts, local: Some(consumed), recorded: true, period, lease: None }, headers))
    }

    fn settle(&self, s: Settlement) {
        let mut state = self.state();
        let State { wallets, dirty, usage } = &mut *state;
        let row = usage.entry((s.workspace.clone(), s.day.clone(), s.key.clone(), s.agent.clone())).or_default();
        row.requests += 1;
        row.input_tokens = row.input_tokens.saturating_add(s.input_tokens);
        row.output_tokens = row.output_tokens.saturating_add(s.output_tokens);
        row.credits = row.credits.saturating_add(s.cost);
        dirty.insert(s.workspace.clone());
        let Some(wallet) = wallets.get_mut(&s.workspace) else { return };
        let same_period = wallet.period == s.period;
        let purse = &mut wallet.purses[s.kind.index()];
        let (plan_part, top_up_part) = (s.parts.0 as i64, s.parts.1 as i64);
        if same_period {
            purse.held_plan -= plan_part;
        }
        purse.held_top_up -= top_up_part;
        // What was held goes back whatever happens; only charging depends on
        // the kind being metered (a plan may have stopped metering meanwhile).
        let cost = if purse.metered { s.cost.min(super::MAX_CHARGE) as i64 } else { 0 };
        let from_plan = cost.min(plan_part);
        let from_top_up = (cost - from_plan).min(top_up_part);
        if same_period {
            purse.plan += plan_part - from_plan;
        }
        purse.top_up += top_up_part - from_top_up;
        let extra = (cost - from_plan - from_top_up) as u64;
        if extra > 0 {
            let (p, t) = take(&mut purse.plan, &mut purse.top_up, extra);
            purse.uncollected = purse.uncollected.saturating_add((extra - p - t) as i64);
        }
    }

    async fn balances(&self, terms: &Terms, now_ms: i64) -> Result<Balances, MeterError> {
        self.load(&terms.workspace).await?;
        let period = Period::at(now_ms, terms.time_zone);
        let mut state = self.state();
        let State { wallets, dirty, .. } = &mut *state;
        let wallet = wallets.entry(terms.workspace.clone()).or_default();
        if wallet.refresh(&period.id, terms.allowance) {
            dirty.insert(terms.workspace.clone());
        }
        Ok(Self::balances_of(&terms.workspace, wallet))
    }

    async fn top_up(&self, terms: &Terms, kind: Kind, amount: u64, now_ms: i64) -> Result<Balances, MeterError> {
        self.balances(terms, now_ms).await?;
        let balances = {
            let mut state = self.state();
            let State { wallets, dirty, .. } = &mut *state;
            let wallet = wallets.entry(terms.workspace.clone()).or_default();
            let purse = &mut wallet.purses[kind.index()];
            if purse.top_up.saturating_add(purse.held_top_up).saturating_add(amount as i64) > MAX_BALANCE as i64 {
                return Err(MeterError::TopUpTooLarge);
            }
            purse.top_up += amount as i64;
            dirty.insert(terms.workspace.clone());
            Self::balances_of(&terms.workspace, wallet)
        };
        self.flush().await?;
        Ok(balances)
    }

    async fn usage(&self, workspace: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, MeterError> {
        self.flush().await?;
        Ok(self.store.usage_rows(workspace, from, to).await?)
    }

    async fn flush(&self) -> Result<(), MeterError> {
        let _one_at_a_time = self.flushing.lock().await;
        if self.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.sweep();
        }
        let (balances, usage) = {
            let mut state = self.state();
            let dirty = std::mem::take(&mut state.dirty);
            let balances: Vec<(String, StoredBalance)> = dirty
                .iter()
                .filter_map(|ws| state.wallets.get(ws).map(|w| (ws, w)))
                .flat_map(|(ws, w)| w.stored().into_iter().map(move |b| (ws.to_string(), b)))
                .collect();
            let usage = std::mem::take(&mut state.usage);
            (balances, usage)
        };
        if balances.is_empty() && usage.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, UsageRow)> = usage
            .iter()
            .map(|((ws, day, key, agent), u)| {
                let row = UsageRow { day: day.clone(), key_id: key.to_string(), agent: agent.to_string(), ..u.clone() };
                (ws.to_string(), row)
            })
            .collect();
        let workspaces: Vec<Arc<str>> = balances.iter().map(|(ws, _)| Arc::from(ws.as_str())).collect();
        if let Err(e) = self.store.save_ledger(balances, rows).await {
            // Nothing is dropped: the totals go back and the wallets stay dirty.
            let mut state = self.state();
            for (k, u) in usage {
                let row = state.usage.entry(k).or_default();
                row.requests += u.requests;
                row.input_tokens += u.input_tokens;
                row.output_tokens += u.output_tokens;
                row.credits += u.credits;
            }
            state.dirty.extend(workspaces);
            return Err(e.into());
        }
        Ok(())
    }

    async fn reap(&self, _now_ms: i64) -> Result<u64, MeterError> {
        // Reservations live in this process's memory and every call settles
        // through its guard, also when cancelled; a crash releases them at the
        // restart (see the module doc). Nothing can expire here.
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlanConfig;
    use crate::limits::LimitSet;
    use chrono_tz::Tz;

    const DEC_1: i64 = 1_796_083_205_000; // 2026-12-01T00:00:05Z

    fn ledger(name: &str) -> EmbeddedLedger {
        let dir = std::env::temp_dir().join(format!("tollgate-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        EmbeddedLedger::new(Arc::new(EmbeddedStore::open(&dir.join("t.db")).unwrap()))
    }

    fn admit(id: &str, ws: &str, amount: u64, now: i64, allowance: [Option<u64>; 2]) -> Admit {
        Admit {
            id: id.into(),
            workspace: ws.into(),
            key: "k".into(),
            limits: LimitSet::default(),
            tokens: 0,
            kind: Kind::Message,
            amount,
            period: Period::at(now, Tz::UTC),
            allowance,
            now_ms: now,
            expires_at_ms: now + 600_000,
        }
    }

    fn settlement(t: &Ticket, cost: u64) -> Settlement {
        Settlement {
            ticket_id: t.admit.id.clone(),
            workspace: t.admit.workspace.clone(),
            key: "k".into(),
            agent: "a".into(),
            kind: Kind::Message,
            period: t.period.clone(),
            parts: t.parts,
            limits: LimitSet::default(),
            tokens_charged: 0,
            tokens_used: 0,
            cost,
            input_tokens: 0,
            output_tokens: 0,
            day: "2026-12-01".into(),
            expires_at_ms: 0,
            recorded: true,
            lease: None,
        }
    }

    /// A caller whose clock is behind the ledger's month (another replica,
    /// or a clock stepped back) must still get its unused plan part back.
    #[tokio::test]
    async fn a_caller_behind_the_ledgers_month_is_refunded_in_the_ledgers_month() {
        let l = ledger("skew");
        let terms = Terms::new("w", &PlanConfig { message_credits: Some(10), ..Default::default() }, None);
        let (first, _) = l.admit(admit("a", "w", 1_000_000, DEC_1, terms.allowance)).await.unwrap();
        l.settle(settlement(&first, 1000));
        let (late, _) = l.admit(admit("b", "w", 1_000_000, DEC_1 - 10_000, terms.allowance)).await.unwrap();
        assert_eq!(late.period, "2026-12", "the ledger's month, not the caller's 2026-11");
        l.settle(settlement(&late, 1000));
        let b = l.balances(&terms, DEC_1).await.unwrap().message;
        assert_eq!((b.plan_remaining, b.reserved), (10_000_000 - 2000, 0), "{b:?}");
    }

    /// A plan that stops metering while a call holds top-up credits must not
    /// swallow them.
    #[tokio::test]
    async fn held_credits_come_back_when_the_plan_stops_metering() {
        let l = ledger("unmetered");
        let metered = Terms::new("w", &PlanConfig { message_credits: Some(0), ..Default::default() }, None);
        l.top_up(&metered, Kind::Message, 5_000_000, DEC_1).await.unwrap();
        let (t, _) = l.admit(admit("c", "w", 1_000_000, DEC_1, metered.allowance)).await.unwrap();
        let unmetered = Terms::new("w", &PlanConfig::default(), None);
        l.balances(&unmetered, DEC_1).await.unwrap();
        l.settle(settlement(&t, 1000));
        let b = l.balances(&unmetered, DEC_1).await.unwrap().message;
        assert_eq!((b.top_up, b.reserved), (5_000_000, 0), "nothing charged, nothing lost: {b:?}");
    }
}
