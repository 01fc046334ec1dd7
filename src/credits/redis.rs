//! The Redis ledger: balances, reservations and rate limits in Redis, shared
//! by every replica, each operation one Lua script (`src/credits/redis/`).
//!
//! - **admit**: the four GCRA limits and the reservation in one call — the
//!   request path's only round trip. Either everything passes and is written,
//!   or nothing is.
//! - **settle**: queued in memory and applied by a background task (`queue`),
//!   so the response never waits for it; settles that gathered meanwhile go
//!   in one script call per workspace. Retried with backoff until Redis
//!   answers and idempotent by reservation id (the reservation record is
//!   deleted by the settle that applies it), so a retry after a timeout never
//!   charges twice. A clean shutdown drains the queue. The queue is bounded by
//!   the calls in flight: a settle follows an admit, and admits fail while
//!   Redis is unreachable.
//! - **cancel**: when the admit call fails or times out (the caller is
//!   answered 503), the admission may still run later — a Redis that hung
//!   and resumes runs what was sent to it. So the gateway queues a cancel for
//!   that reservation id on the settle queue (retried the same way): it
//!   undoes the admission if it ran, or leaves a tombstone that makes a late
//!   one write nothing. An admission given up on never holds credits.
//! - **reap**: every `credits.reaper_interval_ms`, each replica releases
//!   reservations older than `credits.reservation_ttl_ms` whose settle never
//!   came (their replica died). Reaping is one script per workspace, safe to
//!   run on many replicas at once.
//!
//! All of a workspace's names share the hash tag `{<workspace>}`, so each
//! script touches one Redis Cluster slot.
//!
//! When Redis is unreachable, admission fails with 503 (fail-closed: a balance
//! that cannot be checked cannot be spent), bounded by the command timeout.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;
use futures_util::{stream, StreamExt};
use tokio::sync::mpsc;

use super::{Admit, Balance, Balances, Kind, Ledger, MeterError, Settlement, Terms, Ticket, UsageRow, MAX_BALANCE};
use crate::credits::Period;
use crate::limits::{Dimension, LimitError, RateHeaders, Window};
use crate::store::redis::RedisStore;
use crate::store::WorkspaceStore;

mod lease;
mod queue;

pub use lease::LeaseUse;
use lease::{Leases, Return};
use queue::{Job, Pending};

const PRELUDE: &str = include_str!("redis/refresh.lua");
/// Versions: each script's header comment. v2: one HGETALL and one HSET of
/// the credits hash per call instead of a command per field; v3 (admit,
/// settle, reap): the expiry lives in the reservation record, no sorted-set
/// index to add to and remove from on every call; settle v5: a batch per call.
const ADMIT: &str = include_str!("redis/admit.lua");
const SETTLE: &str = include_str!("redis/settle.lua");
const REAP: &str = include_str!("redis/reap.lua");
const BALANCES: &str = include_str!("redis/balances.lua");
/// v1; see its header.
const CANCEL: &str = include_str!("redis/cancel.lua");

/// Daily usage totals are kept this long.
const USAGE_TTL_S: u64 = 400 * 86_400;
/// How many leases of its key a request waits for before it goes to Redis
/// on its own: each serves up to `credits.lease_requests` of the waiters.
const LEASE_WAITS: u32 = 3;
/// Reservations released per workspace per reaper call.
const REAP_BATCH: u64 = 1000;

struct Scripts {
    admit: Script,
    settle: Script,
    reap: Script,
    balances: Script,
    cancel: Script,
}

pub struct RedisLedger {
    store: Arc<RedisStore>,
    scripts: Arc<Scripts>,
    queue: mpsc::UnboundedSender<Job>,
    pending: Arc<Pending>,
    leases: Arc<Leases>,
}

impl RedisLedger {
    /// Creates the ledger without leases (every admission one round trip);
    /// its settle queue's worker runs on `tasks`.
    pub fn new(store: Arc<RedisStore>, tasks: &crate::tasks::Tasks) -> Arc<RedisLedger> {
        RedisLedger::with_leases(store, tasks, 1, Duration::from_secs(1))
    }

    /// Creates the ledger with leases of up to `lease_requests` requests,
    /// each admitting for at most `lease_ttl` (see `lease`).
    pub fn with_leases(
        store: Arc<RedisStore>,
        tasks: &crate::tasks::Tasks,
        lease_requests: u64,
        lease_ttl: Duration,
    ) -> Arc<RedisLedger> {
        let with_prelude = |s: &str| Script::new(&format!("{PRELUDE}\n{s}"));
        let scripts = Arc::new(Scripts {
            admit: with_prelude(ADMIT),
            settle: with_prelude(SETTLE),
            reap: with_prelude(REAP),
            balances: with_prelude(BALANCES),
            cancel: with_prelude(CANCEL),
        });
        let (queue, settles) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending::default());
        tasks
            .spawn_loop("credit settle queue", queue::worker(store.clone(), scripts.clone(), settles, pending.clone()));
        let leases = Arc::new(Leases::new(lease_requests, lease_ttl));
        let ledger = Arc::new(RedisLedger { store, scripts, queue, pending, leases });
        if ledger.leases.size > 1 {
            // Leases past their time retire even when no request comes to
            // retire them (the ledger owns no task handle: the loop holds a
            // weak reference and ends with the ledger).
            let weak = Arc::downgrade(&ledger);
            tasks.spawn_loop("credit lease sweeper", async move {
                let every = sweep_every(lease_ttl);
                loop {
                    tokio::time::sleep(every).await;
                    let Some(ledger) = weak.upgrade() else { return };
                    let mut returns = Vec::new();
                    ledger.leases.retire_expired(&mut returns);
                    ledger.send_returns(returns);
                }
            });
        }
        ledger
    }

    fn send_returns(&self, returns: Vec<Return>) {
        for r in returns {
            self.enqueue(Job::Return(r));
        }
    }

    fn enqueue(&self, job: Job) {
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(job).is_err() {
            // Only after the worker stopped, i.e. the runtime is going away.
            self.pending.done(1);
            tracing::error!("a settle or cancel arrived after the ledger stopped; it was not applied");
        }
    }

    fn name(&self, what: &str, workspace: &str) -> String {
        format!("{}:{what}:{{{workspace}}}", self.store.prefix())
    }
}

/// How often the sweeper looks for leases past `ttl`: a lease admits for at
/// most `ttl` and is returned at most half of it later.
fn sweep_every(ttl: Duration) -> Duration {
    (ttl / 2).max(Duration::from_millis(10))
}

/// Names of one workspace's ledger keys.
fn names(store: &RedisStore, workspace: &str) -> [String; 4] {
    let p = store.prefix();
    [
        format!("{p}:credits:{{{workspace}}}"),
        format!("{p}:resv:{{{workspace}}}"),
        format!("{p}:resvexp:{{{workspace}}}"),
        format!("{p}:reaped:{{{workspace}}}"),
    ]
}

fn limiter_names(store: &RedisStore, workspace: &str, key: &str) -> [String; 4] {
    let base = format!("{}:rl:{{{workspace}}}", store.prefix());
    [format!("{base}:k:{key}:r"), format!("{base}:w:r"), format!("{base}:k:{key}:t"), format!("{base}:w:t")]
}

fn allowance_arg(a: Option<u64>) -> String {
    a.map_or("-1".into(), |a| a.to_string())
}

const SCOPES: [&str; 4] = ["key", "workspace", "key", "workspace"];
const DIMENSIONS: [Dimension; 4] = [Dimension::Requests, Dimension::Requests, Dimension::Tokens, Dimension::Tokens];

/// The four limiters' windows from the script's answer (`limit, remaining,
/// reset µs` each, from offset 3), combined per dimension.
fn headers(answer: &[i64]) -> RateHeaders {
    let mut h = RateHeaders::default();
    for (i, dimension) in DIMENSIONS.iter().enumerate() {
        let at = 3 + i * 3;
        let (limit, remaining, reset) = (answer[at], answer[at + 1], answer[at + 2]);
        if limit <= 0 {
            continue;
        }
        let w = Some(Window {
            limit: limit as u32,
            remaining: remaining.max(0) as u64,
            reset: Duration::from_micros(reset.max(0) as u64),
        });
        match dimension {
            Dimension::Requests => h.requests = Window::tighter(h.requests, w),
            Dimension::Tokens => h.tokens = Window::tighter(h.tokens, w),
        }
    }
    h
}

#[async_trait]
impl Ledger for RedisLedger {
    async fn admit(&self, a: Admit) -> Result<(Ticket, RateHeaders), MeterError> {
        let mut a = a;
        let mut waits = 0;
        loop {
            let mut returns = Vec::new();
            let local = self.leases.admit_local(a, &mut returns);
            self.send_returns(returns);
            a = match local {
                lease::Local::Admitted(ticket, headers) => return Ok((ticket, headers)),
                lease::Local::Redis(a) => a,
            };
            match self.leases.next(&a, waits < LEASE_WAITS) {
                lease::Next::Redis(wanted, _acquiring) => return self.admit_in_redis(a, wanted).await,
                lease::Next::Wait(taken) => {
                    // Bounded like a Redis call: the taker's own call is.
                    let _ = tokio::time::timeout(self.store.timeout(), taken).await;
                    waits += 1;
                }
            }
        }
    }

    fn settle(&self, mut s: Settlement) {
        let Some(used) = s.lease.take() else {
            self.enqueue(Job::Settle(s));
            return;
        };
        // The call's usage, credits and tokens go with the lease's return.
        let returned = self.leases.settle(&used, &s);
        self.send_returns(returned.into_iter().collect());
    }

    async fn balances(&self, terms: &Terms, now_ms: i64) -> Result<Balances, MeterError> {
        self.return_leases_of(&terms.workspace).await;
        self.balances_with_top_up(terms, Kind::Message, 0, now_ms).await
    }

    async fn top_up(&self, terms: &Terms, kind: Kind, amount: u64, now_ms: i64) -> Result<Balances, MeterError> {
        self.return_leases_of(&terms.workspace).await;
        self.balances_with_top_up(terms, kind, amount, now_ms).await
    }

    async fn usage(&self, workspace: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, MeterError> {
        // Leased calls' usage reaches Redis with their lease's return.
        self.return_leases_of(workspace).await;
        self.usage_rows(workspace, from, to).await
    }

    async fn flush(&self) -> Result<(), MeterError> {
        let mut returns = Vec::new();
        self.leases.retire(|_| true, &mut returns);
        self.send_returns(returns);
        loop {
            let idle = self.pending.idle.notified();
            if self.pending.count.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            idle.await;
        }
    }

    async fn reap(&self, now_ms: i64) -> Result<u64, MeterError> {
        self.reap_all(now_ms).await
    }
}

impl RedisLedger {
    /// Retires a workspace's leases and waits (within the lease time) until
    /// the idle ones are back in Redis, so a balance or usage read on this
    /// replica shows what its calls spent. Leases with calls in flight return when
    /// their last call settles.
    async fn return_leases_of(&self, workspace: &str) {
        let mut returns = Vec::new();
        let returning = self.leases.retire_workspace(workspace, &mut returns);
        if returning.is_empty() {
            return;
        }
        self.send_returns(returns);
        let _ = tokio::time::timeout(self.leases.ttl(), lease::returned(returning)).await;
    }

    /// One admission in Redis, asking for `wanted` requests (a lease when more than one).
    async fn admit_in_redis(&self, a: Admit, wanted: u64) -> Result<(Ticket, RateHeaders), MeterError> {
        let [credits, resv, exp, _] = names(&self.store, &a.workspace);
        let mut keys = vec![credits, resv, exp];
        keys.extend(limiter_names(&self.store, &a.workspace, &a.key));
        let l = &a.limits;
        let limits = [l.key_rpm, l.workspace_rpm, l.key_tpm, l.workspace_tpm];
        let mut args = vec![
            a.id.to_string(),
            a.kind.as_str().to_owned(),
            a.amount.to_string(),
            a.period.id.clone(),
            allowance_arg(a.allowance[0]),
            allowance_arg(a.allowance[1]),
            a.expires_at_ms.to_string(),
        ];
        args.extend(limits.iter().map(|l| l.unwrap_or(0).to_string()));
        args.push(a.tokens.to_string());
        args.push(wanted.to_string());
        let answer: Vec<i64> = match self.store.eval(&self.scripts.admit, &keys, &args).await {
            Ok(answer) => answer,
            Err(e) => {
                // The script may still run (see the module doc): undo it.
                self.enqueue(Job::Cancel(a));
                return Err(e.into());
            }
        };
        let field = |i: usize| answer.get(i).copied().unwrap_or(0);
        let limiter = (field(1).clamp(1, 4) - 1) as usize;
        match field(0) {
            0 if answer.len() == 16 => {
                let parts = (field(1) as u64, field(2) as u64);
                // Redis keeps the month it reserved in in the record itself.
                let period = a.period.id.clone();
                let headers = headers(&answer);
                let mut returns = Vec::new();
                let lease = self.leases.hold(&a, parts, &period, field(15).max(1) as u64, headers, &mut returns);
                self.send_returns(returns);
                // A lease's first call holds its own share; the lease holds the reservation.
                let (parts, recorded) = if lease.is_some() { ((0, 0), false) } else { (parts, true) };
                Ok((Ticket { admit: a, parts, local: None, recorded, period, lease }, headers))
            }
            1 if answer.len() == 15 => Err(LimitError::Exceeded {
                dimension: DIMENSIONS[limiter],
                scope: SCOPES[limiter],
                limit: limits[limiter].unwrap_or(0),
                retry_after: Duration::from_micros(field(2).max(0) as u64),
                headers: headers(&answer),
            }
            .into()),
            2 => Err(LimitError::TooLarge {
                scope: SCOPES[limiter],
                limit: limits[limiter].unwrap_or(0),
                requested: field(2) as u64,
            }
            .into()),
            3 if answer.len() == 15 => Err(MeterError::InsufficientQuota {
                kind: a.kind,
                needed: a.amount,
                available: field(1),
                headers: headers(&answer),
            }),
            _ => Err(MeterError::Unavailable(format!("unexpected admit answer {answer:?}"))),
        }
    }

    async fn usage_rows(&self, workspace: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, MeterError> {
        let days = super::days(from, to);
        let answers = futures_util::future::try_join_all(days.iter().map(|day| {
            let name = format!("{}:{day}", self.name("usage", workspace));
            self.store.query::<std::collections::BTreeMap<String, String>>(::redis::cmd("HGETALL").arg(name).to_owned())
        }))
        .await?;
        let mut rows = Vec::new();
        for (day, fields) in days.iter().zip(answers) {
            // Field "<key id>\x1f<agent>", value "requests,input,output,credits" (settle.lua).
            for (field, value) in fields {
                let Some((key, agent)) = field.split_once('\x1f') else { continue };
                let mut totals = value.split(',').map(|n| n.parse::<u64>().unwrap_or(0));
                let mut next = || totals.next().unwrap_or(0);
                rows.push(UsageRow {
                    day: day.clone(),
                    key_id: key.to_owned(),
                    agent: agent.to_owned(),
                    requests: next(),
                    input_tokens: next(),
                    output_tokens: next(),
                    credits: next(),
                });
            }
        }
        Ok(rows)
    }

    async fn reap_all(&self, now_ms: i64) -> Result<u64, MeterError> {
        let workspaces = self.store.list_workspaces().await?;
        let released = stream::iter(workspaces)
            .map(|ws| {
                let keys = names(&self.store, &ws.id).to_vec();
                let args = [now_ms.to_string(), REAP_BATCH.to_string()];
                async move { self.store.eval::<u64>(&self.scripts.reap, &keys, &args).await }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let mut total = 0;
        for r in released {
            total += r?;
        }
        Ok(total)
    }
}

impl RedisLedger {
    async fn balances_with_top_up(
        &self,
        terms: &Terms,
        kind: Kind,
        amount: u64,
        now_ms: i64,
    ) -> Result<Balances, MeterError> {
        let period = Period::at(now_ms, terms.time_zone);
        let keys = [names(&self.store, &terms.workspace)[0].clone()];
        let args = [
            period.id,
            allowance_arg(terms.allowance[0]),
            allowance_arg(terms.allowance[1]),
            kind.as_str().to_owned(),
            amount.to_string(),
            MAX_BALANCE.to_string(),
        ];
        let answer: Vec<String> = self.store.eval(&self.scripts.balances, &keys, &args).await?;
        if answer.len() == 1 {
            return Err(MeterError::TopUpTooLarge);
        }
        let fields: HashMap<&str, i64> =
            answer.chunks(2).filter_map(|kv| Some((kv[0].as_str(), kv.get(1)?.parse().ok()?))).collect();
        let period = answer.chunks(2).find(|kv| kv[0] == "period").and_then(|kv| kv.get(1)).cloned();
        let balance = |kind: Kind| {
            let f = |name: &str| fields.get(format!("{}:{name}", kind.as_str()).as_str()).copied().unwrap_or(0);
            let (plan, top_up) = (f("plan"), f("top_up"));
            Balance {
                metered: f("metered") == 1,
                plan_allowance: terms.allowance[kind.index()],
                plan_remaining: plan,
                top_up,
                reserved: f("held_plan") + f("held_top_up"),
                available: plan + top_up,
                uncollected: f("uncollected"),
            }
        };
        Ok(Balances {
            workspace: terms.workspace.to_string(),
            period: period.unwrap_or_default(),
            message: balance(Kind::Message),
            integration: balance(Kind::Integration),
        })
    }
}
