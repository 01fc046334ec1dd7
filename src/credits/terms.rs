//! A workspace's terms — its plan's allowances and limits, its time zone —
//! cached so the request path makes no store call for them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::{MeterError, MICRO};
use crate::config::{PlanConfig, DEFAULT_PLAN};
use crate::store::WorkspaceStore;

/// How long a workspace's terms are trusted before they are read again: the
/// bound on how long a plan or time-zone change takes to reach every replica.
pub const TERMS_TTL: Duration = Duration::from_secs(30);

/// What a workspace's plan grants, ready for the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    pub workspace: Arc<str>,
    /// Monthly allowance per [`super::Kind`], micro-credits; `None` = not metered.
    pub allowance: [Option<u64>; 2],
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub key_rpm: Option<u32>,
    pub key_tpm: Option<u32>,
    pub time_zone: Tz,
    /// The workspace's own `credits.low` threshold (micro-credits).
    pub low_credits_threshold: Option<u64>,
}

impl Terms {
    pub fn new(workspace: &str, plan: &PlanConfig, time_zone: Option<&str>) -> Terms {
        Terms {
            workspace: workspace.into(),
            allowance: [plan.message_credits.map(|c| c * MICRO), plan.integration_credits.map(|c| c * MICRO)],
            rpm: plan.rpm,
            tpm: plan.tpm,
            key_rpm: plan.key_rpm,
            key_tpm: plan.key_tpm,
            time_zone: time_zone.and_then(crate::clock::parse_time_zone).unwrap_or(Tz::UTC),
            low_credits_threshold: None,
        }
    }
}

pub struct TermsCache {
    workspaces: Arc<dyn WorkspaceStore>,
    /// The config's plans; swapped whole by a config reload.
    plans: arc_swap::ArcSwap<BTreeMap<String, PlanConfig>>,
    /// `None` caches "no such workspace" too.
    cache: moka::future::Cache<Arc<str>, Option<Arc<Terms>>>,
}

impl TermsCache {
    pub fn new(workspaces: Arc<dyn WorkspaceStore>, plans: BTreeMap<String, PlanConfig>, ttl: Duration) -> Self {
        let cache = moka::future::Cache::builder().max_capacity(100_000).time_to_live(ttl).build();
        TermsCache { workspaces, plans: arc_swap::ArcSwap::from_pointee(plans), cache }
    }

    /// A reloaded config's plans: every workspace's terms are read again.
    pub fn replace_plans(&self, plans: BTreeMap<String, PlanConfig>) {
        self.plans.store(Arc::new(plans));
        self.cache.invalidate_all();
    }

    /// The terms of a key's workspace; a workspace missing from the store
    /// (keys outlive nothing, but be safe) gets the default plan.
    pub async fn get(&self, workspace: &Arc<str>) -> Result<Arc<Terms>, MeterError> {
        Ok(match self.lookup(workspace).await? {
            Some(terms) => terms,
            None => Arc::new(Terms::new(workspace, &self.plans.load()[DEFAULT_PLAN], None)),
        })
    }

    /// The terms of a workspace that must exist (management calls).
    pub async fn get_existing(&self, workspace: &str) -> Result<Arc<Terms>, MeterError> {
        self.lookup(&Arc::from(workspace)).await?.ok_or_else(|| MeterError::UnknownWorkspace(workspace.into()))
    }

    async fn lookup(&self, workspace: &Arc<str>) -> Result<Option<Arc<Terms>>, MeterError> {
        let load = async {
            let record = self.workspaces.workspace(workspace).await?;
            Ok::<_, MeterError>(record.map(|w| {
                let plans = self.plans.load();
                let plan = plans.get(&w.plan).unwrap_or(&plans[DEFAULT_PLAN]);
                let mut terms = Terms::new(&w.id, plan, w.time_zone.as_deref());
                terms.low_credits_threshold = w.low_credits_threshold;
                Arc::new(terms)
            }))
        };
        self.cache.try_get_with(workspace.clone(), load).await.map_err(|e| (*e).clone())
    }

    /// Forgets a workspace's terms (after this replica changed them).
    pub async fn forget(&self, workspace: &str) {
        self.cache.invalidate(workspace).await;
    }
}
