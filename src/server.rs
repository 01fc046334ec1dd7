//! The listener: HTTP/1.1 and h2c on one port, connection bounds, graceful
//! shutdown.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so tests
//! bind port 0 and the binary binds the configured address. Each accepted
//! connection, in order:
//! 1. gets one of the process's `max_connections` slots ([`connections`]),
//!    pushing out the stalest idle connection when none is free;
//! 2. is served by hyper-util's auto builder (HTTP/1.1 or h2, sniffed);
//! 3. is watched: no request in flight for `header_read_timeout` (before its
//!    first request) or `idle_timeout` (after one) closes it, so a socket that
//!    sends nothing, half a preface or headers a byte at a time cannot keep its
//!    slot;
//! 4. at shutdown, is asked to finish ([`drain`] states the whole sequence).

pub mod connections;
pub mod drain;
mod io;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::Body;
use crate::config::ServerConfig;
use connections::{InFlight, Stall};

pub use connections::Connections;
pub use drain::Drain;

/// How long a connection closed by its watchdog gets to say goodbye (h2
/// GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a listener serves: the request path, and the state every listener
/// of the process shares. The gateway's is `crate::routes` over its `App`;
/// the server knows nothing of handlers.
pub trait Service: Send + Sync + 'static {
    fn config(&self) -> &ServerConfig;
    /// The TLS certificate and key new connections get (`None`: plain
    /// HTTP); read per connection, so a reloaded certificate applies to
    /// the next handshake and open connections keep theirs.
    fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.config().tls.as_ref().map(|t| t.server.clone())
    }
    /// The process's connection slots.
    fn connections(&self) -> &Arc<Connections>;
    fn drain(&self) -> &Drain;
    fn call(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

/// What a connection's requests get.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The pipeline.
    Serving,
    /// Accepted while draining: 503 `shutting_down` (health checks still answer).
    GoingAway,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve<S: Service>(
    listener: TcpListener,
    app: Arc<S>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = Arc::new(builder(&*app));
    // This listener's connection tasks, and the signal that drops what is
    // left of them when the grace period ends.
    let local = TaskTracker::new();
    let kill = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener) => if let Some((stream, peer)) = accepted {
                let task = connection(app.clone(), builder.clone(), stream, peer, Mode::Serving, kill.clone());
                local.spawn(app.drain().serving().track_future(task));
            },
        }
    }
    app.drain().begin();
    let grace = app.config().shutdown_grace;
    let expired = tokio::time::sleep(grace);
    let drained = app.drain().drained();
    tokio::pin!(expired, drained);
    loop {
        tokio::select! {
            _ = &mut drained => break,
            _ = &mut expired => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown grace elapsed; closing remaining connections");
                break;
            }
            accepted = accept(&listener) => if let Some((stream, peer)) = accepted {
                local.spawn(connection(app.clone(), builder.clone(), stream, peer, Mode::GoingAway, kill.clone()));
            },
        }
    }
    drop(listener);
    kill.cancel();
    local.close();
    local.wait().await;
    Ok(())
}

fn builder<S: Service>(app: &S) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(app.config().header_read_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// The next connection; `None` after a failed accept (out of file
/// descriptors and the like), after a pause so the loop doesn't spin.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(conn) => Some(conn),
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// One connection, from its slot to its end (see the module doc).
async fn connection<S: Service>(
    app: Arc<S>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    mode: Mode,
    kill: CancellationToken,
) {
    let server = app.config();
    let Some(slot) = app.connections().admit(server.header_read_timeout).await else {
        tracing::debug!(%peer, "no connection slot within the header timeout; closed");
        return;
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = app.tls() else {
        return serve_connection(app, &builder, stream, peer, mode, &kill, slot).await;
    };
    // The handshake is bounded like a request's headers: a client that
    // opens a socket and never finishes it loses its slot.
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake = tokio::time::timeout(server.header_read_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        biased;
        _ = kill.cancelled() => return,
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake not finished within the header timeout"),
        },
    };
    serve_connection(app, &builder, stream, peer, mode, &kill, slot).await;
}

/// Serves one connection's requests over `stream` (TCP or TLS) until it
/// ends, stalls, or shutdown closes it.
async fn serve_connection<S: Service, IO>(
    app: Arc<S>,
    builder: &auto::Builder<TokioExecutor>,
    stream: IO,
    peer: SocketAddr,
    mode: Mode,
    kill: &CancellationToken,
    slot: connections::Slot,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let server = app.config();
    let state = slot.conn.clone();
    let answered = Arc::new(Notify::new());
    let service = {
        let (app, state, answered) = (app.clone(), state.clone(), answered.clone());
        service_fn(move |req: Request<Incoming>| {
            let (app, answered) = (app.clone(), answered.clone());
            let in_flight = state.begin();
            async move {
                let mut response = match mode {
                    Mode::Serving => app.call(req).await,
                    Mode::GoingAway => going_away(&*app, req).await,
                };
                if mode == Mode::GoingAway {
                    response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                    answered.notify_one();
                }
                Ok::<_, Infallible>(response.map(|body| Tracked { body, in_flight: Some(in_flight) }))
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io::Watched::new(stream, state.clone())), service);
    tokio::pin!(conn);
    let stalled = state.stalled(server.header_read_timeout, server.idle_timeout);
    let drain_begun = async {
        match mode {
            Mode::Serving => app.drain().begun().await,
            Mode::GoingAway => answered.notified().await,
        }
    };
    // Biased: the connection first, so the watchers cost one poll each per wake-up.
    let stall = tokio::select! {
        biased;
        result = conn.as_mut() => return log_end(peer, result),
        _ = kill.cancelled() => return,
        stall = stalled => Some(stall),
        () = drain_begun => None,
    };
    if let Some(stall) = stall {
        tracing::debug!(%peer, evicted = stall == Stall::Evicted, "closing an idle connection");
    }
    conn.as_mut().graceful_shutdown();
    let goodbye = async {
        match stall {
            Some(_) => tokio::time::sleep(CLOSE_GRACE).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        result = conn.as_mut() => log_end(peer, result),
        _ = kill.cancelled() => {}
        () = goodbye => {}
    }
    drop(slot);
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// A request on a connection accepted while draining.
async fn going_away<S: Service>(app: &S, req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/healthz" | "/readyz" => app.call(req).await,
        _ => crate::error::Error::ShuttingDown.to_response(),
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it
    /// has been sent (or dropped by a client that went away).
    pub struct Tracked {
        #[pin]
        body: Body,
        in_flight: Option<InFlight>,
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.in_flight.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
