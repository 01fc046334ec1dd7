//! The Redis backend: standalone Redis or Redis Cluster, shared by N stateless
//! replicas (DESIGN.md, "Deployment shapes").
//!
//! # Schema
//!
//! Every name starts with the prefix `P` given to [`RedisStore::connect`], so
//! several deployments can share one Redis. A workspace's id is the hash tag (`{...}`) of all its keys, so
//! in a Cluster one workspace's data lives in one slot, where later stages'
//! multi-key scripts (balances, limits) can reach it atomically.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:ws:{W}` | string | the workspace `W`, as JSON |
//! | `P:workspaces` | set | every workspace id |
//! | `P:key:{W}:K` | hash | key `K` of workspace `W`: one field per [`KeyRecord`] field, absent when `None`; `models` as a JSON array, numbers in decimal |
//! | `P:ws:{W}:keys` | sorted set | the ids of `W`'s keys, scored by `created_at` (ties by id) |
//! | `P:keyid:K` | string | `W`: the unique index of key ids |
//! | `P:keyhash:H` | string | `["W","K"]` (JSON): the unique index of key hashes |
//!
//! Keys are hashes rather than JSON so the two updates — revocation and
//! last-used — are single-field writes inside a Lua script; a script that
//! decoded and re-encoded JSON (cjson) would turn `[]` into `{}` and round
//! large numbers.
//!
//! # Writes and crashes
//!
//! A record is written last, in one command: it is the commit point. Inserting
//! a key first claims its id and then its hash with `SET NX` (a taken claim is
//! [`StoreError::Conflict`], and the id claim is released again when the hash
//! is taken), then adds the id to the workspace's list, then writes the
//! record. Inserting a workspace adds its id to the set, then writes it with
//! `SET NX`. Every read goes from an index to the record and treats an index
//! without a record as absent, so a crash (or a timeout) mid-insert never
//! yields a half-written key; its only trace is a claimed id and hash, which
//! later inserts of the same id or hash see as taken (ids and hashes are random,
//! so a retry makes new ones). Revocation and last-used times are Lua scripts on
//! the record alone (one key, so they run in a Cluster too): `revoke_key.lua`
//! sets `revoked_at` only if unset, `touch_key.lua` only moves `last_used_at`
//! forward. No command spans two keys, so nothing depends on slots.
//!
//! # When Redis is unreachable
//!
//! Calls fail fast: every command is bounded by the response timeout (also
//! while a reconnection is in progress), then returns
//! [`StoreError::Unavailable`]. Nothing hangs and nothing is retried here. The
//! auth layer then serves the keys it has cached and refuses the ones it has
//! not (fail-closed: an unverifiable key is not a valid key). The connection
//! reconnects by itself in the background — the connection manager for
//! standalone Redis, the cluster connection (which also re-reads the slot map)
//! for a Cluster — so a Redis that comes back is used again without a restart.
//!
//! The key and workspace records themselves are in [`records`].

use std::future::Future;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Script, ScriptInvocation, Value,
};

use super::StoreError;

mod records;

/// Sets `revoked_at` once; see `src/store/redis/revoke_key.lua` (version 1).
const REVOKE_KEY: &str = include_str!("redis/revoke_key.lua");
/// Moves `last_used_at` forward; see `src/store/redis/touch_key.lua` (version 1).
const TOUCH_KEY: &str = include_str!("redis/touch_key.lua");

/// Reconnection attempts after the first one fails, before a command sees the
/// error (the next command starts a new round).
const RECONNECT_RETRIES: usize = 2;
/// The longest pause between reconnection attempts. Set explicitly: redis 0.32's
/// default backoff would wait up to 60 s between attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// How long the store waits for Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One attempt to open a connection, handshake included.
    pub connect: Duration,
    /// One command, from sending it to its answer, including any wait for a
    /// reconnection in progress; after it, the call fails with `Unavailable`.
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { connect: Duration::from_secs(2), response: Duration::from_secs(1) }
    }
}

/// A handle to Redis; every call clones the (multiplexed) connection, so share
/// one store behind an `Arc`.
pub struct RedisStore {
    conn: Conn,
    /// The first part of every key name; holds no `{` or `}`.
    prefix: String,
    /// The bound on every command (`Timeouts::response`).
    timeout: Duration,
    revoke_key: Script,
    touch_key: Script,
    /// Every command's, script's and pipeline's round trip.
    pub stats: std::sync::Arc<super::stats::OpStats>,
}

/// The connection, by deployment; both are multiplexed and cheap to clone.
#[derive(Clone)]
enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisStore {
    /// Connects to Redis and returns once the connection is up.
    ///
    /// `urls` are `redis://` (or `rediss://`) URLs: exactly one for standalone
    /// Redis, one or more seed nodes when `cluster` is true. `key_prefix` starts
    /// every key name (non-empty, without `{` or `}`), so several deployments
    /// can share one Redis. Fails with `Unavailable` when Redis cannot be
    /// reached (after a few attempts, each bounded by `timeouts.connect`) or the
    /// arguments are unusable; error messages never repeat a URL, which may hold
    /// a password.
    pub async fn connect(
        urls: &[String],
        cluster: bool,
        key_prefix: &str,
        timeouts: Timeouts,
    ) -> Result<RedisStore, StoreError> {
        if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(format!(
                "the Redis key prefix {key_prefix:?} must be non-empty and hold no braces"
            )));
        }
        let conn = if cluster {
            if urls.is_empty() {
                return Err(StoreError::Unavailable("Redis Cluster needs at least one node URL".into()));
            }
            let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                .connection_timeout(timeouts.connect)
                .response_timeout(timeouts.response)
                .retries(RECONNECT_RETRIES as u32)
                .max_retry_wait(RECONNECT_MAX_DELAY.as_millis() as u64)
                .build()
                .map_err(|e| connect_error("the Redis Cluster URLs", e))?;
            Conn::Cluster(client.get_async_connection().await.map_err(|e| connect_error("Redis Cluster", e))?)
        } else {
            let [url] = urls else {
                return Err(StoreError::Unavailable(format!(
                    "standalone Redis takes exactly one URL, got {}",
                    urls.len()
                )));
            };
            let client = ::redis::Client::open(url.as_str()).map_err(|e| connect_error("the Redis URL", e))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(timeouts.connect)
                .set_response_timeout(timeouts.response)
                .set_number_of_retries(RECONNECT_RETRIES)
                .set_factor(2)
                .set_max_delay(RECONNECT_MAX_DELAY.as_millis() as u64);
            Conn::Standalone(
                ConnectionManager::new_with_config(client, config).await.map_err(|e| connect_error("Redis", e))?,
            )
        };
        Ok(RedisStore {
            conn,
            prefix: key_prefix.to_owned(),
            timeout: timeouts.response,
            revoke_key: Script::new(REVOKE_KEY),
            touch_key: Script::new(TOUCH_KEY),
            stats: Default::default(),
        })
    }

    fn workspace_name(&self, ws: &str) -> String {
        format!("{}:ws:{{{ws}}}", self.prefix)
    }

    fn workspace_keys_name(&self, ws: &str) -> String {
        format!("{}:ws:{{{ws}}}:keys", self.prefix)
    }

    fn workspaces_name(&self) -> String {
        format!("{}:workspaces", self.prefix)
    }

    fn key_name(&self, ws: &str, id: &str) -> String {
        format!("{}:key:{{{ws}}}:{id}", self.prefix)
    }

    fn key_id_name(&self, id: &str) -> String {
        format!("{}:keyid:{id}", self.prefix)
    }

    fn key_hash_name(&self, hash: &str) -> String {
        format!("{}:keyhash:{hash}", self.prefix)
    }

    /// Runs one command, bounded by the response timeout.
    async fn run<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async move { cmd.query_async(&mut conn).await }).await
    }

    /// `PING`, bounded by the response timeout: whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run::<Value>(::redis::cmd("PING").to_owned()).await.map(drop)
    }

    /// `SET name value NX`: whether this call created `name`.
    async fn claim(&self, name: &str, value: &str) -> Result<bool, StoreError> {
        let answer: Value = self.run(::redis::cmd("SET").arg(name).arg(value).arg("NX").to_owned()).await?;
        Ok(!matches!(answer, Value::Nil))
    }

    /// Runs a one-key script with one argument; its integer answer.
    async fn script(&self, script: &Script, key: &str, arg: i64) -> Result<i64, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async move { script.key(key).arg(arg).invoke_async(&mut conn).await }).await
    }

    /// How long one call may take: the response timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The key-name prefix, for other subsystems' names on this Redis.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs a script (EVALSHA, loading it on a miss), bounded by the
    /// response timeout. For the ledger and later subsystems' scripts.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        self.invoke(&invocation).await
    }

    /// Runs a prepared script invocation, bounded by the response timeout:
    /// for arguments too large to copy into `String`s first (stored items).
    pub(crate) async fn invoke<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async move { invocation.invoke_async(&mut conn).await }).await
    }

    /// Runs a pipeline (all its keys in one Cluster slot), bounded by the
    /// response timeout.
    pub(crate) async fn pipeline<T: FromRedisValue>(&self, pipe: Pipeline) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async move { pipe.query_async(&mut conn).await }).await
    }

    /// Runs one command, bounded by the response timeout.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        self.run(cmd).await
    }
}

impl RedisStore {
    /// Awaits a Redis call for at most the response timeout, mapping its
    /// error and counting its latency.
    async fn bounded<T>(&self, call: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = bounded(self.timeout, call).await;
        self.stats.observe_result(started, &result);
        result
    }
}

/// Awaits a Redis call for at most `limit`, mapping its error.
async fn bounded<T>(limit: Duration, call: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(answer) => answer.map_err(redis_error),
        Err(_) => Err(StoreError::Unavailable(format!("Redis did not answer within {} ms", limit.as_millis()))),
    }
}

/// A value of the wrong type is data we cannot read; anything else (I/O,
/// timeouts, cluster down, loading) means Redis is not usable right now.
fn redis_error(e: RedisError) -> StoreError {
    if e.kind() == ErrorKind::TypeError || e.code() == Some("WRONGTYPE") {
        StoreError::Corrupt(e.to_string())
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

fn connect_error(what: &str, e: RedisError) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}
