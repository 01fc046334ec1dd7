//! The credit ledger's tables: balances per workspace and kind, usage totals
//! per workspace, day, key and agent. Written in batches by the embedded
//! ledger's write-behind flush (see `credits::embedded`).

use rusqlite::params;

use crate::credits::{Kind, UsageRow};
use crate::store::embedded::{sql, EmbeddedStore};
use crate::store::StoreError;

/// One kind's persisted balance; `plan` and `top_up` include what calls in
/// flight hold, so a crash releases their reservations by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBalance {
    pub kind: Kind,
    pub period: String,
    pub plan: i64,
    pub top_up: i64,
    pub uncollected: i64,
}

impl EmbeddedStore {
    pub async fn load_balances(&self, workspace: &str) -> Result<Vec<StoredBalance>, StoreError> {
        let workspace = workspace.to_owned();
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT kind, period, plan, top_up, uncollected FROM credit_balances WHERE workspace = ?1",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![workspace], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(sql)?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, period, plan, top_up, uncollected) = row.map_err(sql)?;
                let kind = Kind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("credit kind {kind:?}")))?;
                out.push(StoredBalance { kind, period, plan, top_up, uncollected });
            }
            Ok(out)
        })
        .await
    }

    /// Writes balances (replacing) and adds usage totals, in one transaction.
    pub async fn save_ledger(
        &self,
        balances: Vec<(String, StoredBalance)>,
        usage: Vec<(String, UsageRow)>,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sql)?;
            {
                let mut put = tx
                    .prepare_cached(
                        "INSERT INTO credit_balances (workspace, kind, period, plan, top_up, uncollected)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (workspace, kind) DO UPDATE SET period = ?3, plan = ?4, top_up = ?5,
                             uncollected = ?6",
                    )
                    .map_err(sql)?;
                for (ws, b) in &balances {
                    put.execute(params![ws, b.kind.as_str(), b.period, b.plan, b.top_up, b.uncollected])
                        .map_err(sql)?;
                }
                let mut add = tx
                    .prepare_cached(
                        "INSERT INTO usage_daily (workspace, day, key_id, agent, requests, input_tokens,
                             output_tokens, credits) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (workspace, day, key_id, agent) DO UPDATE SET
                             requests = requests + ?5, input_tokens = input_tokens + ?6,
                             output_tokens = output_tokens + ?7, credits = credits + ?8",
                    )
                    .map_err(sql)?;
                for (ws, u) in &usage {
                    add.execute(params![
                        ws,
                        u.day,
                        u.key_id,
                        u.agent,
                        u.requests as i64,
                        u.input_tokens as i64,
                        u.output_tokens as i64,
                        u.credits as i64
                    ])
                    .map_err(sql)?;
                }
            }
            tx.commit().map_err(sql)
        })
        .await
    }

    /// Usage totals for the days `from..=to`, by day, key and agent.
    pub async fn usage_rows(&self, workspace: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, StoreError> {
        let (workspace, from, to) = (workspace.to_owned(), from.to_owned(), to.to_owned());
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT day, key_id, agent, requests, input_tokens, output_tokens, credits FROM usage_daily
                     WHERE workspace = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day, key_id, agent",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![workspace, from, to], |r| {
                    Ok(UsageRow {
                        day: r.get(0)?,
                        key_id: r.get(1)?,
                        agent: r.get(2)?,
                        requests: r.get::<_, i64>(3)? as u64,
                        input_tokens: r.get::<_, i64>(4)? as u64,
                        output_tokens: r.get::<_, i64>(5)? as u64,
                        credits: r.get::<_, i64>(6)? as u64,
                    })
                })
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
        })
        .await
    }
}
