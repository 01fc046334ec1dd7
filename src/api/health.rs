//! `GET /healthz`: the process is up and serving (liveness: it never asks
//! the store, so a store outage does not get the process restarted). `GET
//! /readyz`: it wants traffic (readiness): not draining, and the store
//! answers one round trip — a replica whose Redis is away answers 503 with
//! the reason, and a load balancer sends its traffic elsewhere until it
//! returns.

use http::{Response, StatusCode};
use serde_json::json;

use crate::body::Body;
use crate::error::json_response;
use crate::store::Stores;

pub fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &b"{\"status\":\"ok\"}"[..])
}

/// `GET /readyz`: whether a load balancer should send requests here; 503
/// from the moment shutdown begins (see `server::drain`) and while the store
/// does not answer.
pub async fn readyz(draining: bool, stores: &Stores) -> Response<Body> {
    if draining {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &b"{\"status\":\"draining\"}"[..]);
    }
    match stores.ping().await {
        Ok(()) => json_response(StatusCode::OK, &b"{\"status\":\"ready\"}"[..]),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            let body = json!({"status": "store_unavailable", "reason": e.to_string()}).to_string();
            json_response(StatusCode::SERVICE_UNAVAILABLE, body.into_bytes())
        }
    }
}
