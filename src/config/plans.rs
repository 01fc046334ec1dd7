//! `[plans]`, `[workspaces]` and `[credits]`: what each plan grants, the
//! workspaces created at start and the plan each is on, and how the credit
//! ledger runs. Separate because together they are the metering terms, which
//! the ledger reads and nothing in the catalogue does.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::{RawCredits, RawPlan, RawWorkspace};
use super::{ConfigError, Validator};

/// How the credit ledger runs (see `credits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditsConfig {
    /// Embedded store: how often balances and usage are written behind; the
    /// most a kill -9 can lose.
    pub flush_interval: Duration,
    /// A reservation whose settle never comes (its replica died) is released
    /// after this long.
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    pub reaper_interval: Duration,
    /// Output tokens reserved when neither the request nor the agent bounds
    /// them (`max_tokens`); the settle charges what was really used.
    pub reserve_output_tokens: u64,
    /// Redis: the most requests one lease grants a replica to admit without
    /// a round trip (see `credits::redis::lease`); 1 turns leases off.
    pub lease_requests: u64,
}

impl Default for CreditsConfig {
    fn default() -> Self {
        CreditsConfig {
            flush_interval: Duration::from_secs(1),
            reservation_ttl: Duration::from_secs(600),
            reaper_interval: Duration::from_secs(10),
            reserve_output_tokens: 4096,
            lease_requests: 64,
        }
    }
}

/// What a workspace's plan grants: monthly credit allowances (seed 000's two
/// kinds, in whole credits) and rate limits. `None` means not metered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanConfig {
    pub message_credits: Option<u64>,
    pub integration_credits: Option<u64>,
    /// Requests and tokens per minute for the whole workspace.
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Per-key limits for keys that set none of their own.
    pub key_rpm: Option<u32>,
    pub key_tpm: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    pub name: Option<String>,
    pub plan: String,
    /// IANA name for the monthly refresh; `None` is UTC.
    pub time_zone: Option<String>,
    /// Micro-credits below which `credits.low` fires.
    pub low_credits_threshold: Option<u64>,
}

/// The plan every workspace gets unless told otherwise.
pub const DEFAULT_PLAN: &str = "default";

impl Validator<'_> {
    /// Every plan of the file, and `default`.
    pub(super) fn plans(&self, raw: BTreeMap<String, RawPlan>) -> Result<BTreeMap<String, PlanConfig>, ConfigError> {
        let mut plans = BTreeMap::new();
        plans.insert(DEFAULT_PLAN.to_owned(), PlanConfig::default());
        for (name, plan) in raw {
            plans.insert(name.clone(), self.plan(&name, plan)?);
        }
        Ok(plans)
    }

    fn plan(&self, name: &str, p: RawPlan) -> Result<PlanConfig, ConfigError> {
        self.id(&format!("plans.{name}"), name)?;
        if [p.rpm, p.tpm, p.key_rpm, p.key_tpm].contains(&Some(0)) {
            return Err(self.err(format!("plans.{name}"), "rpm, tpm, key_rpm and key_tpm must be greater than 0"));
        }
        // Whole credits, stored as micro-credits within what Lua counts exactly.
        const MAX_CREDITS: u64 = crate::units::MAX_BALANCE / crate::units::MICRO;
        if p.message_credits.max(p.integration_credits).is_some_and(|c| c > MAX_CREDITS) {
            return Err(self.err(format!("plans.{name}"), format!("credit allowances must be at most {MAX_CREDITS}")));
        }
        Ok(PlanConfig {
            message_credits: p.message_credits,
            integration_credits: p.integration_credits,
            rpm: p.rpm,
            tpm: p.tpm,
            key_rpm: p.key_rpm,
            key_tpm: p.key_tpm,
        })
    }

    /// The workspaces of the file, each on a plan of `plans`.
    pub(super) fn workspaces(
        &self,
        raw: BTreeMap<String, RawWorkspace>,
        plans: &BTreeMap<String, PlanConfig>,
    ) -> Result<BTreeMap<String, WorkspaceConfig>, ConfigError> {
        let mut workspaces = BTreeMap::new();
        for (id, ws) in raw {
            let plan = ws.plan.unwrap_or_else(|| DEFAULT_PLAN.into());
            if !plans.contains_key(&plan) {
                return Err(self.err(format!("workspaces.{id}.plan"), format!("unknown plan {plan:?}")));
            }
            if let Some(tz) = ws.time_zone.as_deref().filter(|tz| crate::clock::parse_time_zone(tz).is_none()) {
                return Err(self.err(format!("workspaces.{id}.time_zone"), format!("{tz:?} is not an IANA time zone")));
            }
            workspaces.insert(
                id,
                WorkspaceConfig {
                    name: ws.name,
                    plan,
                    time_zone: ws.time_zone,
                    low_credits_threshold: ws.low_credits_threshold,
                },
            );
        }
        Ok(workspaces)
    }

    pub(super) fn credits(&self, c: RawCredits) -> Result<CreditsConfig, ConfigError> {
        let d = CreditsConfig::default();
        let ms = |d: Duration| d.as_millis() as u64;
        Ok(CreditsConfig {
            flush_interval: self.millis("credits.flush_interval_ms", c.flush_interval_ms, ms(d.flush_interval))?,
            reservation_ttl: self.millis("credits.reservation_ttl_ms", c.reservation_ttl_ms, ms(d.reservation_ttl))?,
            reaper_interval: self.millis("credits.reaper_interval_ms", c.reaper_interval_ms, ms(d.reaper_interval))?,
            reserve_output_tokens: self.positive(
                "credits.reserve_output_tokens",
                c.reserve_output_tokens,
                d.reserve_output_tokens,
            )?,
            lease_requests: self.positive("credits.lease_requests", c.lease_requests, d.lease_requests)?,
        })
    }
}
