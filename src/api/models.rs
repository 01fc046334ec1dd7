//! `GET /v1/models` and `GET /v1/models/{id}`: what the caller's key may use,
//! in OpenAI's list shape — the config's models and agents, then the
//! caller's workspace agents (`owned_by: "workspace"`).

use http::{Response, StatusCode};
use serde::Serialize;

use crate::agents::{Agents, CatalogError, ResolveError, Target};
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

/// Who a model belongs to, as `owned_by` says it.
fn owner(target: &Target) -> &'static str {
    match (&target.workspace, target.is_agent) {
        (Some(_), _) => WORKSPACE,
        (None, true) => "tollgate-agent",
        (None, false) => "tollgate",
    }
}

const WORKSPACE: &str = "workspace";

impl<'a> Model<'a> {
    fn of(target: &'a Target) -> Self {
        Model { id: &target.id, object: "model", created: 0, owned_by: owner(target) }
    }
}

pub async fn list(agents: &Agents, principal: &Principal) -> Result<Response<Body>, Error> {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    // A store that cannot answer does not take the config's models away: a
    // key served stale-if-error still lists them, marked as partial.
    let (own, partial) = match agents.workspace_ids(principal).await {
        Ok(own) => (own, false),
        Err(e) => {
            tracing::warn!(error = %e, "listing models without the workspace's agents: the store did not answer");
            (Vec::new(), true)
        }
    };
    let catalog = agents.catalog();
    let mut data: Vec<Model<'_>> = catalog.visible_to(principal).map(|t| Model::of(t)).collect();
    data.extend(own.iter().map(|id| Model { id, object: "model", created: 0, owned_by: WORKSPACE }));
    let json = serde_json::to_vec(&List { object: "list", data }).expect("JSON serialises");
    let mut response = json_response(StatusCode::OK, json);
    if partial {
        let value = http::HeaderValue::from_static("workspace-agents-unavailable");
        response.headers_mut().insert("x-tollgate-partial", value);
    }
    Ok(response)
}

pub async fn get(agents: &Agents, principal: &Principal, id: &str) -> Result<Response<Body>, Error> {
    let target = agents.resolve(id, principal).await.map_err(|e| match e {
        // Do not confirm that a model the key may not use exists.
        ResolveError::Catalog(CatalogError::NotAllowed(id)) => CatalogError::NotFound(id).into(),
        other => other,
    })?;
    let json = serde_json::to_vec(&Model::of(&target)).expect("JSON serialises");
    Ok(json_response(StatusCode::OK, json))
}
