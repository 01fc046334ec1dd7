//! The harness of the storage suites that run on all three backends — the
//! embedded file, a standalone `redis-server` and a one-node Redis Cluster
//! (which refuses keys of two slots in one command or script), each its own
//! on a free port: [`Backend`], `store_suite!(a, b, ...)` (tests
//! `on_embedded::a`, `on_redis::a`, `on_redis_cluster::a` for each scenario
//! `a(Backend)`), and [`StoreEnv`], a fresh `[store]` config on one backend.
//!
//! Include after `backends.rs` (with `#[macro_use]`), `redis_server.rs` and
//! `tools.rs`: `#[macro_use] #[path = "support/store_suite.rs"] mod store_suite;`
//! and `use store_suite::Backend;`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::redis_server::{Options, RedisServer};
use crate::{backends, tools};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
    RedisCluster,
}

/// `on_both_backends!` (embedded, standalone Redis) plus `on_redis_cluster`.
macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        on_both_backends!($($name),*);
        mod on_redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::RedisCluster).await
                }
            )*
        }
    };
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One backend with fresh, empty storage; its directory goes when dropped.
pub struct StoreEnv {
    pub config: tollgate::config::Config,
    pub dir: PathBuf,
    /// The test's own Redis (`None` on the embedded backend); kept alive by
    /// holding it, stopped by the suites that test an outage.
    #[allow(dead_code)]
    pub server: Option<RedisServer>,
}

impl Drop for StoreEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl StoreEnv {
    /// `None` (after a loud skip) when Redis cannot run here outside CI.
    /// `what` names the directory and `prefix` the Redis key prefix.
    pub async fn start(backend: Backend, what: &str, prefix: &str) -> Option<StoreEnv> {
        let server = match backend {
            Backend::Embedded => None,
            Backend::Redis | Backend::RedisCluster => {
                let options = Options { cluster: backend == Backend::RedisCluster, ..Options::default() };
                match RedisServer::start_with(options) {
                    Some(server) => Some(server),
                    None => {
                        tools::skip(&format!("{what} on {backend:?}"), tools::NO_REDIS);
                        return None;
                    }
                }
            }
        };
        let url = server.as_ref().map(RedisServer::url);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let (dir, mut store) = backends::fresh_store(what, n, url.as_deref(), prefix);
        if backend == Backend::RedisCluster {
            store.push_str("cluster = true\n");
        }
        let config = tollgate::config::Config::from_toml(&store, "test.toml").expect("the test config is valid");
        Some(StoreEnv { config, dir, server })
    }
}
