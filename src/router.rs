//! Method + path → route: the one table of what the gateway serves.
//!
//! `/v1/api/...` and `/api/v1/...` are alias roots for `/v1/...`, so a client
//! configured with the `https://host/v1/api` base URL of seed 002, or using the
//! `/api/v1/...` paths of seed 001, reaches the same handlers.

use http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    ChatCompletions,
    Completions,
    Embeddings,
    CreateResponse,
    GetResponse(String),
    DeleteResponse(String),
    ResponseInputItems(String),
    ListModels,
    GetModel(String),
    CreateKey,
    ListKeys,
    RevokeKey(String),
    CreateWorkspace,
    GetWorkspace(String),
    GetCredits,
    TopUpCredits,
    GetUsage,
    ListEvents,
    CreateWebhook,
    ListWebhooks,
    GetWebhook(String),
    DeleteWebhook(String),
    TestWebhook(String),
    RotateWebhookSecret(String),
    WebhookDeliveries(String),
}

impl Route {
    /// Routes served without credentials. Every other route authenticates.
    pub fn is_public(&self) -> bool {
        matches!(self, Route::Health | Route::Ready)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("Unknown request URL. Please check the URL and method.")]
    NotFound,
    #[error("Method not allowed for this URL; allowed: {allow}.")]
    MethodNotAllowed { allow: &'static str },
}

pub fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let under = |root: &str| path.strip_prefix(root).filter(|rest| rest.starts_with('/'));
    let path = match (path, under("/v1/api").or_else(|| under("/api/v1")), under("/v1")) {
        ("/healthz" | "/readyz", _, _) => path,
        (_, Some(rest), _) | (_, None, Some(rest)) => rest,
        _ => return Err(RouteError::NotFound),
    };
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let id = |prefix: &str| path.strip_prefix(prefix).filter(|id| !id.is_empty() && !id.contains('/'));
    let (route, allow) = match path {
        "/healthz" => (get.then_some(Route::Health), "GET"),
        "/readyz" => (get.then_some(Route::Ready), "GET"),
        "/chat/completions" => (post.then_some(Route::ChatCompletions), "POST"),
        "/completions" => (post.then_some(Route::Completions), "POST"),
        "/embeddings" => (post.then_some(Route::Embeddings), "POST"),
        "/responses" => (post.then_some(Route::CreateResponse), "POST"),
        p if p.starts_with("/responses/") => return response_route(method, &p["/responses/".len()..]),
        "/models" => (get.then_some(Route::ListModels), "GET"),
        "/keys" if post => (Some(Route::CreateKey), ""),
        "/keys" => (get.then_some(Route::ListKeys), "GET, POST"),
        // Seed 001's path for creating a key.
        "/keys/create" => (post.then_some(Route::CreateKey), "POST"),
        "/workspaces" => (post.then_some(Route::CreateWorkspace), "POST"),
        "/credits" => (get.then_some(Route::GetCredits), "GET"),
        "/credits/topup" => (post.then_some(Route::TopUpCredits), "POST"),
        "/usage" => (get.then_some(Route::GetUsage), "GET"),
        "/events" => (get.then_some(Route::ListEvents), "GET"),
        "/webhooks" if post => (Some(Route::CreateWebhook), ""),
        "/webhooks" => (get.then_some(Route::ListWebhooks), "GET, POST"),
        // Seed 001's path for registering an outgoing webhook.
        "/webhooks/outgoing/register" => (post.then_some(Route::CreateWebhook), "POST"),
        p if p.starts_with("/webhooks/") => return webhook_route(method, &p["/webhooks/".len()..]),
        p => match (p.strip_prefix("/models/").filter(|id| !id.is_empty()), id("/keys/"), id("/workspaces/")) {
            (Some(model), _, _) => (get.then(|| Route::GetModel(model.to_owned())), "GET"),
            (_, Some(key), _) => ((method == Method::DELETE).then(|| Route::RevokeKey(key.to_owned())), "DELETE"),
            (_, _, Some(ws)) => (get.then(|| Route::GetWorkspace(ws.to_owned())), "GET"),
            _ => return Err(RouteError::NotFound),
        },
    };
    route.ok_or(RouteError::MethodNotAllowed { allow })
}

/// `/responses/{id}` and its input items.
fn response_route(method: &Method, rest: &str) -> Result<Route, RouteError> {
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() || action.contains('/') {
        return Err(RouteError::NotFound);
    }
    let get = method == Method::GET || method == Method::HEAD;
    let id = id.to_owned();
    let (route, allow) = match action {
        "" if method == Method::DELETE => (Some(Route::DeleteResponse(id)), ""),
        "" => (get.then_some(Route::GetResponse(id)), "GET, DELETE"),
        "input_items" => (get.then_some(Route::ResponseInputItems(id)), "GET"),
        _ => return Err(RouteError::NotFound),
    };
    route.ok_or(RouteError::MethodNotAllowed { allow })
}

/// `/webhooks/{id}` and its actions.
fn webhook_route(method: &Method, rest: &str) -> Result<Route, RouteError> {
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() || action.contains('/') {
        return Err(RouteError::NotFound);
    }
    let id = id.to_owned();
    let (route, allow) = match action {
        "" if method == Method::DELETE => (Some(Route::DeleteWebhook(id)), ""),
        "" => ((method == Method::GET || method == Method::HEAD).then_some(Route::GetWebhook(id)), "GET, DELETE"),
        "test" => ((method == Method::POST).then_some(Route::TestWebhook(id)), "POST"),
        "rotate-secret" => ((method == Method::POST).then_some(Route::RotateWebhookSecret(id)), "POST"),
        "deliveries" => {
            ((method == Method::GET || method == Method::HEAD).then_some(Route::WebhookDeliveries(id)), "GET")
        }
        _ => return Err(RouteError::NotFound),
    };
    route.ok_or(RouteError::MethodNotAllowed { allow })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_both_roots_and_refuses_the_rest() {
        assert_eq!(route(&Method::POST, "/v1/chat/completions"), Ok(Route::ChatCompletions));
        assert_eq!(route(&Method::POST, "/v1/api/chat/completions"), Ok(Route::ChatCompletions));
        assert_eq!(route(&Method::GET, "/v1/api/models"), Ok(Route::ListModels));
        assert_eq!(route(&Method::GET, "/v1/models/demo"), Ok(Route::GetModel("demo".into())));
        assert_eq!(route(&Method::GET, "/healthz"), Ok(Route::Health));
        assert_eq!(route(&Method::POST, "/v1/api/responses"), Ok(Route::CreateResponse));
        assert_eq!(route(&Method::GET, "/api/v1/responses/resp_1"), Ok(Route::GetResponse("resp_1".into())));
        assert_eq!(route(&Method::DELETE, "/v1/responses/resp_1"), Ok(Route::DeleteResponse("resp_1".into())));
        assert_eq!(
            route(&Method::GET, "/v1/responses/resp_1/input_items"),
            Ok(Route::ResponseInputItems("resp_1".into()))
        );
        assert_eq!(route(&Method::GET, "/v1/responses"), Err(RouteError::MethodNotAllowed { allow: "POST" }));
        assert_eq!(route(&Method::GET, "/v1/responses/resp_1/other"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::GET, "/v1/chat/completions"), Err(RouteError::MethodNotAllowed { allow: "POST" }));
        assert_eq!(route(&Method::POST, "/v1/nope"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/chat/completions"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/v1x/chat/completions"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/v1/keys"), Ok(Route::CreateKey));
        assert_eq!(route(&Method::POST, "/api/v1/keys/create"), Ok(Route::CreateKey));
        assert_eq!(route(&Method::GET, "/v1/keys"), Ok(Route::ListKeys));
        assert_eq!(route(&Method::DELETE, "/v1/keys/key_1"), Ok(Route::RevokeKey("key_1".into())));
        assert_eq!(route(&Method::GET, "/v1/keys/key_1"), Err(RouteError::MethodNotAllowed { allow: "DELETE" }));
        assert_eq!(route(&Method::POST, "/v1/workspaces"), Ok(Route::CreateWorkspace));
        assert_eq!(route(&Method::GET, "/v1/workspaces/acme"), Ok(Route::GetWorkspace("acme".into())));
        assert_eq!(route(&Method::PUT, "/v1/keys"), Err(RouteError::MethodNotAllowed { allow: "GET, POST" }));
        assert_eq!(route(&Method::GET, "/api/v1/credits"), Ok(Route::GetCredits));
        assert_eq!(route(&Method::POST, "/v1/credits/topup"), Ok(Route::TopUpCredits));
        assert_eq!(route(&Method::GET, "/v1/usage"), Ok(Route::GetUsage));
        assert_eq!(route(&Method::GET, "/api/v1/events"), Ok(Route::ListEvents));
        assert_eq!(route(&Method::POST, "/v1/webhooks"), Ok(Route::CreateWebhook));
        assert_eq!(route(&Method::POST, "/api/v1/webhooks/outgoing/register"), Ok(Route::CreateWebhook));
        assert_eq!(route(&Method::GET, "/v1/webhooks"), Ok(Route::ListWebhooks));
        assert_eq!(route(&Method::GET, "/v1/webhooks/wh_1"), Ok(Route::GetWebhook("wh_1".into())));
        assert_eq!(route(&Method::DELETE, "/v1/webhooks/wh_1"), Ok(Route::DeleteWebhook("wh_1".into())));
        assert_eq!(route(&Method::POST, "/v1/webhooks/wh_1/test"), Ok(Route::TestWebhook("wh_1".into())));
        assert_eq!(
            route(&Method::POST, "/v1/webhooks/wh_1/rotate-secret"),
            Ok(Route::RotateWebhookSecret("wh_1".into()))
        );
        assert_eq!(route(&Method::GET, "/v1/webhooks/wh_1/deliveries"), Ok(Route::WebhookDeliveries("wh_1".into())));
        assert_eq!(route(&Method::GET, "/v1/webhooks/wh_1/test"), Err(RouteError::MethodNotAllowed { allow: "POST" }));
        assert_eq!(route(&Method::GET, "/v1/webhooks/wh_1/nope"), Err(RouteError::NotFound));
    }
}
