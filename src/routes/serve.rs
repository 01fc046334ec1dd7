//! The request path every route shares ([`handle`], the steps of the
//! [`super`] module doc): the request id, the route, auth and access, the
//! handler, the error JSON, the metrics count — behind the CORS layer when
//! `[cors]` lists origins.

use std::time::Instant;

use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use super::{router, Access, Call, Route};
use tracing::Instrument;

use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::error::{Error, Origin};
use crate::telemetry::traces;

impl crate::server::Service for App {
    fn config(&self) -> &crate::config::ServerConfig {
        &self.server
    }

    fn tls(&self) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        self.tls.load_full()
    }

    fn connections(&self) -> &std::sync::Arc<crate::server::Connections> {
        &self.connections
    }

    fn drain(&self) -> &crate::server::Drain {
        &self.drain
    }

    async fn call(&self, req: Request<Incoming>) -> Response<Body> {
        match self.cors.load_full() {
            None => handle(self, req).await,
            Some(cors) => with_cors(self, &cors, req).await,
        }
    }
}

/// [`handle`] behind tower-http's CORS layer: a preflight `OPTIONS` is
/// answered by the layer (no key, no route), every other request gets the
/// `Access-Control-*` headers its origin is allowed. Cloning the layer is a
/// few reference counts.
async fn with_cors(app: &App, cors: &tower_http::cors::CorsLayer, req: Request<Incoming>) -> Response<Body> {
    use tower::{Layer, ServiceExt};
    let routes = tower::service_fn(|req| async { Ok::<_, std::convert::Infallible>(handle(app, req).await) });
    match cors.layer(routes).oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Runs one request through the steps in the module doc.
pub async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let request_id = app.request_ids.for_request(req.headers());
    // Kept for the error log line; both clones are cheap (no copy of the path).
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path();
    let (pattern, result, span) = match router().find(&method, path) {
        Ok((route, params)) => {
            // Health checks and scrapes are not traced: they would drown the traces.
            let span = match route.access {
                Access::Public => tracing::Span::none(),
                _ => traces::request_span(&method, route.path, req.headers()),
            };
            let call = dispatch(app, route, Call { req, params }, request_id.clone(), started);
            (route.path, call.instrument(span.clone()).await, span)
        }
        Err(e) => ("unmatched", Err(e.into()), tracing::Span::none()),
    };
    let mut response = match result {
        Ok(response) => {
            app.metrics.http(pattern, response.status().as_u16(), started.elapsed(), None);
            response
        }
        Err(error) => {
            log_error(&error, &request_id, &method, path, started);
            let response = error.to_response();
            let refused = (error.origin() == Origin::Client).then(|| error.code());
            app.metrics.http(pattern, response.status().as_u16(), started.elapsed(), refused);
            response
        }
    };
    traces::record_status(&span, response.status().as_u16());
    if method == Method::HEAD {
        *response.body_mut() = Body::empty();
    }
    response.headers_mut().insert("x-request-id", request_id);
    response
}

async fn dispatch(
    app: &App,
    route: &Route,
    call: Call,
    request_id: HeaderValue,
    started: Instant,
) -> Result<Response<Body>, Error> {
    let principal = match route.access {
        // Public routes never read the credentials, so nothing is looked up.
        Access::Public => crate::auth::Principal::anonymous(),
        access => {
            let principal = app.auth.authenticate(call.req.headers(), crate::store::now()).await?;
            access.check(principal.scope, principal.workspace.is_some())?;
            principal
        }
    };
    let ctx = RequestContext { request_id, started, principal };
    (route.handler)(app, &ctx, call).await
}

fn log_error(error: &Error, request_id: &HeaderValue, method: &Method, path: &str, started: Instant) {
    let request_id = request_id.to_str().unwrap_or_default();
    let ms = started.elapsed().as_millis() as u64;
    match (error.origin(), error) {
        (Origin::Client, _) => {
            tracing::info!(target: "tollgate::access", request_id, %method, path, ms, error = %error, "request refused")
        }
        (_, Error::Upstream(e)) => tracing::warn!(
            target: "tollgate::access",
            request_id, %method, path, ms, code = e.code(), detail = e.detail(), "upstream failed"
        ),
        _ => {
            tracing::error!(target: "tollgate::access", request_id, %method, path, ms, error = %error, "request failed")
        }
    }
}
