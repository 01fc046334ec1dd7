//! `on_both_backends!(a, b, ...)`: for each scenario `a(Backend)` of the
//! including test file, a test `on_embedded::a` and a test `on_redis::a`, so
//! every storage-dependent scenario runs on the embedded store and on Redis.
//! Include with `#[macro_use] #[path = "support/backends.rs"] mod backends;`
//! before the first use; the file must define `Backend::{Embedded, Redis}`.
//! Also: [`fresh_store`], the `[store]` section of such a test.

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Embedded).await
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Redis).await
                }
            )*
        }
    };
}

/// A fresh test directory under the system temp dir (`tollgate-<what>-<pid>-<n>`)
/// and the `[store]` section for it: an embedded file inside it, or the test's
/// own Redis at `redis_url` under `prefix`.
pub fn fresh_store(what: &str, n: usize, redis_url: Option<&str>, prefix: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("tollgate-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = match redis_url {
        None => format!("[store]\nbackend = \"embedded\"\npath = \"{}\"\n", dir.join("t.db").display()),
        Some(url) => format!("[store]\nbackend = \"redis\"\nurls = [\"{url}\"]\nprefix = \"{prefix}\"\n"),
    };
    (dir, store)
}
