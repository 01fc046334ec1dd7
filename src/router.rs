//! Method + path → route: the one table of what the gateway serves.
//!
//! `/v1/api/...` is an alias root for `/v1/...`, so a client configured with the
//! `https://host/v1/api` base URL of seed 002 reaches the same handlers.

use http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    ChatCompletions,
    Completions,
    Embeddings,
    ListModels,
    GetModel(String),
}

impl Route {
    /// Routes served without credentials. Every other route authenticates.
    pub fn is_public(&self) -> bool {
        matches!(self, Route::Health)
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
    let path = match (path, under("/v1/api"), under("/v1")) {
        ("/healthz", _, _) => path,
        (_, Some(rest), _) | (_, None, Some(rest)) => rest,
        _ => return Err(RouteError::NotFound),
    };
    let (route, allow) = match path {
        "/healthz" => (Route::Health, "GET"),
        "/chat/completions" => (Route::ChatCompletions, "POST"),
        "/completions" => (Route::Completions, "POST"),
        "/embeddings" => (Route::Embeddings, "POST"),
        "/models" => (Route::ListModels, "GET"),
        p => match p.strip_prefix("/models/") {
            Some(id) if !id.is_empty() => (Route::GetModel(id.to_owned()), "GET"),
            _ => return Err(RouteError::NotFound),
        },
    };
    let method_ok = match allow {
        "GET" => method == Method::GET || method == Method::HEAD,
        _ => method == Method::POST,
    };
    if method_ok {
        Ok(route)
    } else {
        Err(RouteError::MethodNotAllowed { allow })
    }
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
        assert_eq!(route(&Method::GET, "/v1/chat/completions"), Err(RouteError::MethodNotAllowed { allow: "POST" }));
        assert_eq!(route(&Method::POST, "/v1/nope"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/chat/completions"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/v1x/chat/completions"), Err(RouteError::NotFound));
    }
}
