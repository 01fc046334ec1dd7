//! Thread-per-core: `workers` threads, each with its own single-threaded tokio
//! runtime, its own `SO_REUSEPORT` listener on the same address, and its own
//! upstream connection pool.
//!
//! Why not one multi-threaded runtime: a proxied request hops between the client
//! connection's task, the handler and the upstream connection's task. On a
//! work-stealing runtime those hops wake tasks on other threads (a futex call
//! and a cache miss each); measured with `cargo bench --bench load`, that cost
//! more CPU per request than everything the gateway does to the request. Here a
//! request lives and dies on one thread, like an nginx worker; the kernel spreads
//! connections over the listeners. Shared state (`App`) is read-only or atomic.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::app::App;

thread_local! {
    /// This thread's worker index; 0 off the worker threads (tests, tools).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running the caller, to pick per-worker resources.
pub fn worker_index() -> usize {
    WORKER.with(Cell::get)
}

/// One listening socket per worker, all on `addr` (the first one resolves port 0).
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(workers > 1)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// How long shutdown waits for the event drain's batch in progress.
const EVENTS_STOP: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `app` on `listeners` (one worker thread each) until `shutdown`
/// resolves on `control` (the calling thread's runtime, which also drives the
/// store's background connections), then lets every worker drain.
pub fn run(
    control: tokio::runtime::Runtime,
    app: Arc<App>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop, stopped) = watch::channel(false);
    // A worker that ends on its own (it failed) stops the whole process.
    let (exited, mut exit) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut threads = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        let app = app.clone();
        let mut stopped = stopped.clone();
        let exited = exited.clone();
        let thread = std::thread::Builder::new().name(format!("tollgate-worker-{index}")).spawn(move || {
            WORKER.with(|w| w.set(index));
            crate::telemetry::batch_this_thread();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let result = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let serving = crate::server::serve(listener, app, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                });
                let flushing = async {
                    let mut every = tokio::time::interval(crate::telemetry::FLUSH_EVERY);
                    loop {
                        every.tick().await;
                        crate::telemetry::flush_this_thread();
                    }
                };
                tokio::select! {
                    result = serving => result,
                    never = flushing => never,
                }
            });
            crate::telemetry::flush_this_thread();
            let _ = exited.send(());
            result
        })?;
        threads.push(thread);
    }
    let flushing = async {
        let mut every = tokio::time::interval(crate::auth::LAST_USED_FLUSH);
        loop {
            every.tick().await;
            app.auth.flush_last_used().await;
        }
    };
    let metering = async {
        match &app.meter {
            Some(meter) => crate::credits::upkeep(meter).await,
            None => std::future::pending::<std::convert::Infallible>().await,
        }
    };
    // Expired stored responses leave the embedded file (Redis expires its own).
    let pruning = async {
        match &app.stores {
            Some(stores) => crate::responses::run_pruner(stores.responses.clone(), crate::responses::PRUNE_EVERY).await,
            None => std::future::pending::<std::convert::Infallible>().await,
        }
    };
    let (stop_events, events_stop) = watch::channel(false);
    let eventing = async {
        match &app.events {
            Some(events) => crate::events::run(events.clone(), app.meter.clone(), events_stop).await,
            None => std::future::pending().await,
        }
    };
    control.block_on(async {
        tokio::pin!(eventing);
        tokio::select! {
            _ = shutdown => {}
            _ = exit.recv() => tracing::error!("a worker stopped; shutting down"),
            never = flushing => never,
            never = metering => match never {},
            never = pruning => match never {},
            () = &mut eventing => tracing::error!("the event subsystem stopped"),
        }
        // The event drain finishes the batch it is writing (never cancelled
        // mid-write); what is still queued is written after the workers drain.
        let _ = stop_events.send(true);
        if tokio::time::timeout(EVENTS_STOP, &mut eventing).await.is_err() {
            tracing::error!("the event drain did not stop within {EVENTS_STOP:?}");
        }
    });
    let _ = stop.send(true);
    for thread in threads {
        match thread.join() {
            Ok(result) => result?,
            Err(_) => return Err(std::io::Error::other("a worker thread panicked")),
        }
    }
    // What the drained requests used, written before the process ends.
    control.block_on(app.auth.flush_last_used());
    if let Some(meter) = &app.meter {
        control.block_on(crate::credits::final_flush(meter));
    }
    // Events of the drained requests, into the log and the delivery queue
    // (delivered by the next start, or another replica).
    if let Some(events) = &app.events {
        control.block_on(events.bus.flush(std::time::Duration::from_secs(10)));
        let stats = &events.bus.stats;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            emitted = load(&stats.emitted),
            spilled = load(&stats.spilled),
            stored = load(&stats.stored),
            "events at shutdown"
        );
    }
    Ok(())
}
