//! `GET /healthz`: the process is up and serving (liveness). `GET /readyz`:
//! it wants traffic (readiness; the store check joins it with the operations
//! release).

use http::{Response, StatusCode};

use crate::body::Body;
use crate::error::json_response;

pub fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &b"{\"status\":\"ok\"}"[..])
}

/// `GET /readyz`: whether a load balancer should send requests here; 503
/// from the moment shutdown begins (see `server::drain`).
pub fn readyz(draining: bool) -> Response<Body> {
    if draining {
        json_response(StatusCode::SERVICE_UNAVAILABLE, &b"{\"status\":\"draining\"}"[..])
    } else {
        json_response(StatusCode::OK, &b"{\"status\":\"ready\"}"[..])
    }
}
