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
use std::future::Future;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

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

/// Descriptors one client connection can hold: its socket and, while it is
/// relayed, the upstream connection's.
const FDS_PER_CONNECTION: u64 = 2;
/// Descriptors beside the connections: listeners, the store, logs, the
/// runtimes' event fds, webhook and Redis connections.
const FDS_SPARE: u64 = 256;

/// The open-files limit the process runs with, after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub limit: u64,
    /// What `max_connections` connections can need at most.
    pub wanted: u64,
}

impl OpenFiles {
    /// Whether `max_connections` relayed connections fit under the limit.
    pub fn enough(&self) -> bool {
        self.limit >= self.wanted
    }
}

/// Raises the soft open-files limit to the hard one, as nginx's
/// `worker_rlimit_nofile` or Go's runtime do: the soft default (often 1024)
/// would turn the 1025th connection into an `EMFILE` at `accept`, long before
/// `server.max_connections`. Never lowers it; the hard limit is the
/// operator's (systemd `LimitNOFILE=`, `ulimit -Hn`).
pub fn raise_open_files_limit(max_connections: usize) -> std::io::Result<OpenFiles> {
    let wanted = (max_connections as u64).saturating_mul(FDS_PER_CONNECTION).saturating_add(FDS_SPARE);
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(OpenFiles { limit, wanted })
}

/// The worker threads, each serving its listener on its own runtime.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
    stop: watch::Sender<bool>,
    exited: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl Workers {
    /// Starts one thread per listener running `serve(listener, stopped)`,
    /// where `stopped` resolves when [`Workers::stop_and_join`] is called.
    pub fn start<F, Fut>(listeners: Vec<std::net::TcpListener>, serve: F) -> std::io::Result<Workers>
    where
        F: Fn(tokio::net::TcpListener, Stopped) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = std::io::Result<()>>,
    {
        let (stop, stop_rx) = watch::channel(false);
        // A worker that ends on its own (it failed) stops the whole process.
        let (exited_tx, exited) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut threads = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            let (serve, stopped, exited) = (serve.clone(), stopped(stop_rx.clone()), exited_tx.clone());
            let thread = std::thread::Builder::new().name(format!("tollgate-worker-{index}")).spawn(move || {
                WORKER.with(|w| w.set(index));
                crate::telemetry::batch_this_thread();
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let result = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let flushing = async {
                        let mut every = tokio::time::interval(crate::telemetry::FLUSH_EVERY);
                        loop {
                            every.tick().await;
                            crate::telemetry::flush_this_thread();
                        }
                    };
                    tokio::select! {
                        result = serve(listener, stopped) => result,
                        never = flushing => never,
                    }
                });
                crate::telemetry::flush_this_thread();
                let _ = exited.send(());
                result
            })?;
            threads.push(thread);
        }
        Ok(Workers { threads, stop, exited })
    }

    /// Resolves when a worker ended before it was told to stop.
    pub async fn exited(&mut self) {
        let _ = self.exited.recv().await;
    }

    /// Tells every worker to drain and waits for them all.
    pub fn stop_and_join(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let mut result = Ok(());
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(std::io::Error::other("a worker thread panicked")),
            }
        }
        result
    }
}

/// Resolves when the workers are told to stop.
pub type Stopped = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

fn stopped(mut rx: watch::Receiver<bool>) -> Stopped {
    Box::pin(async move {
        // An error means the sender is gone: nobody can stop us any more, so stop now.
        let _ = rx.wait_for(|stop| *stop).await;
    })
}
