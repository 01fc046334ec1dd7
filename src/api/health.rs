//! `GET /healthz`: the process is up and serving. (Readiness of the stores of
//! later stages belongs to `/readyz`.)

use http::{Response, StatusCode};

use crate::body::Body;
use crate::error::json_response;

pub fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &b"{\"status\":\"ok\"}"[..])
}
