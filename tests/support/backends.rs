//! `on_both_backends!(a, b, ...)`: for each scenario `a(Backend)` of the
//! including test file, a test `on_embedded::a` and a test `on_redis::a`, so
//! every storage-dependent scenario runs on the embedded store and on Redis.
//! Include with `#[macro_use] #[path = "support/backends.rs"] mod backends;`
//! before the first use; the file must define `Backend::{Embedded, Redis}`.

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
