//! `POST /v1/admin/reload` (admin keys): the same reload as SIGHUP, with
//! its verdict in the answer — what needs a restart, or why the config was
//! refused (422 `config_invalid`; the old config stays in force).

use http::{Response, StatusCode};

use crate::app::App;
use crate::body::Body;
use crate::error::{json_response, Error};

pub fn reload(app: &App) -> Result<Response<Body>, Error> {
    let done = app.reload()?;
    let body = serde_json::json!({
        "object": "config.reload",
        "reloaded": true,
        "origin": done.origin,
        "restart_needed": done.restart_needed,
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}
