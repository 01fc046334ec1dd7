//! The request path's side of the credits: [`Meter`] turns a request (or a
//! webhook delivery) into one atomic admission and settles it after the
//! call, without blocking, and answers the balance and usage reads. Separate
//! from the ledger's interface it calls and from the background upkeep.

use std::sync::Arc;

use super::{
    charge, cost, embedded, redis, terms, Admit, Balances, Kind, Ledger, MeterError, Period, Settlement, TermsCache,
    Ticket, UsageRow, MAX_CHARGE,
};
use crate::clock::Clock;
use crate::config::{CreditsConfig, Price};
use crate::limits::{LimitSet, RateHeaders};
use crate::usage::{Outcome, Usage};

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
            Backend::Redis(store) => redis::RedisLedger::with_leases(
                store.clone(),
                tasks,
                config.credits.lease_requests,
                config.credits.flush_interval,
            ),
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
            return Ok((
                Ticket { admit, parts: (0, 0), local: None, recorded: false, period, lease: None },
                RateHeaders::default(),
            ));
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
            lease: ticket.lease,
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
            return Ok(Ticket { admit, parts: (0, 0), local: None, recorded: false, period, lease: None });
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
            lease: ticket.lease,
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
