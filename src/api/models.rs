//! `GET /v1/models` and `GET /v1/models/{id}`: what the caller's key may use,
//! in OpenAI's list shape.

use http::{Response, StatusCode};
use serde::Serialize;

use crate::agents::{Catalog, CatalogError, Target};
use crate::auth::Principal;
use crate::body::Body;
use crate::error::{json_response, Error};

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl<'a> Model<'a> {
    fn of(target: &'a Target) -> Self {
        Model {
            id: &target.id,
            object: "model",
            created: 0,
            owned_by: if target.is_agent { "tollgate-agent" } else { "tollgate" },
        }
    }
}

pub fn list(catalog: &Catalog, principal: &Principal) -> Response<Body> {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    let data = catalog.visible_to(principal).map(|t| Model::of(t)).collect();
    let json = serde_json::to_vec(&List { object: "list", data }).expect("JSON serialises");
    json_response(StatusCode::OK, json)
}

pub fn get(catalog: &Catalog, principal: &Principal, id: &str) -> Result<Response<Body>, Error> {
    let target = catalog.resolve(id, principal).map_err(|e| match e {
        // Do not confirm that a model the key may not use exists.
        CatalogError::NotAllowed(id) => CatalogError::NotFound(id),
        other => other,
    })?;
    let json = serde_json::to_vec(&Model::of(&target)).expect("JSON serialises");
    Ok(json_response(StatusCode::OK, json))
}
