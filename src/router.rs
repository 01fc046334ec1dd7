//! Method + path → an entry of a routes table, and the path's parameters.
//!
//! The table itself (what the gateway serves, with the scope each route
//! needs) is [`crate::routes`]; this module only matches, so it knows nothing
//! of handlers. Paths are written below the API root (`/chat/completions`);
//! `/v1`, and its alias roots `/v1/api` (seed 002's base URL) and `/api/v1`
//! (seed 001's paths), all reach the same entry. Health checks are also
//! answered at the top level (`/healthz`, `/readyz`).
//!
//! A pattern segment is a literal, `{name}` (one non-empty segment) or
//! `{*name}` (the rest of the path, slashes included: model ids like
//! `openai/gpt-4o`). When several patterns match, the one with the most
//! literal segments wins, so `/keys/create` is not read as the key `create`.

use http::Method;

/// The HTTP methods routes use; `Get` also answers `HEAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

impl Verb {
    fn accepts(self, method: &Method) -> bool {
        match self {
            Verb::Get => method == Method::GET || method == Method::HEAD,
            Verb::Post => method == Method::POST,
            Verb::Patch => method == Method::PATCH,
            Verb::Delete => method == Method::DELETE,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("Unknown request URL. Please check the URL and method.")]
    NotFound,
    #[error("Method not allowed for this URL; allowed: {allow}.")]
    MethodNotAllowed { allow: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
    Rest(&'static str),
}

/// A path's parameters, by the names their pattern gave them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The parameter `name`; empty if the pattern has none of that name
    /// (a table bug, caught by the routes' own tests).
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v.as_str())
    }
}

struct Compiled<T> {
    verb: Verb,
    segments: Vec<Segment>,
    literals: usize,
    value: T,
}

/// A compiled routes table.
pub struct Router<T> {
    routes: Vec<Compiled<T>>,
    /// Patterns without parameters, by their path: one hash lookup finds the
    /// model routes (a literal pattern that matches always wins).
    exact: std::collections::HashMap<&'static str, Vec<usize>>,
}

impl<T> Router<T> {
    /// Compiles `(verb, pattern, value)` entries; panics on a malformed
    /// pattern (the table is static, and its tests build it).
    pub fn new(entries: impl IntoIterator<Item = (Verb, &'static str, T)>) -> Router<T> {
        let mut exact: std::collections::HashMap<&'static str, Vec<usize>> = Default::default();
        let routes: Vec<Compiled<T>> = entries
            .into_iter()
            .enumerate()
            .map(|(i, (verb, pattern, value))| {
                if !pattern.contains('{') {
                    exact.entry(pattern).or_default().push(i);
                }
                let segments: Vec<Segment> = pattern
                    .strip_prefix('/')
                    .unwrap_or_else(|| panic!("route {pattern:?} must start with '/'"))
                    .split('/')
                    .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => match name.strip_prefix('*') {
                            Some(rest) => Segment::Rest(rest),
                            None => Segment::Param(name),
                        },
                        None => Segment::Literal(s),
                    })
                    .collect();
                let literals = segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
                Compiled { verb, segments, literals, value }
            })
            .collect();
        Router { routes, exact }
    }

    /// The entry for `method` and `path`: 404 if no pattern matches, 405
    /// (naming the methods that would) if the best pattern has another method.
    pub fn find(&self, method: &Method, path: &str) -> Result<(&T, Params), RouteError> {
        let path = below_root(path).ok_or(RouteError::NotFound)?;
        if let Some(rows) = self.exact.get(path) {
            let rows = || rows.iter().map(|&i| &self.routes[i]);
            return match rows().find(|r| r.verb.accepts(method)) {
                Some(r) => Ok((&r.value, Params::default())),
                None => Err(not_allowed(rows())),
            };
        }
        let best = self.routes.iter().filter(|r| matches(&r.segments, path)).map(|r| r.literals).max();
        let Some(best) = best else { return Err(RouteError::NotFound) };
        let candidates = || self.routes.iter().filter(move |r| r.literals == best && matches(&r.segments, path));
        match candidates().find(|r| r.verb.accepts(method)) {
            Some(r) => Ok((&r.value, params(&r.segments, path))),
            None => Err(not_allowed(candidates())),
        }
    }
}

/// 405, naming the methods the matching rows accept.
fn not_allowed<'a, T: 'a>(rows: impl Iterator<Item = &'a Compiled<T>>) -> RouteError {
    let mut allow: Vec<&str> = rows.map(|r| r.verb.as_str()).collect();
    allow.sort_unstable();
    allow.dedup();
    RouteError::MethodNotAllowed { allow: allow.join(", ") }
}

/// The path below its API root, without a trailing slash; `None` outside
/// every root. Health checks are also served at the top level.
fn below_root(path: &str) -> Option<&str> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return Some(path);
    }
    let under = |root: &str| path.strip_prefix(root).filter(|rest| rest.starts_with('/'));
    under("/v1/api").or_else(|| under("/api/v1")).or_else(|| under("/v1"))
}

fn matches(segments: &[Segment], path: &str) -> bool {
    let mut parts = path[1..].split('/');
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Rest(_) => return path[1..].splitn(i + 1, '/').nth(i).is_some_and(|r| !r.is_empty()),
            Segment::Literal(l) => {
                if parts.next() != Some(l) {
                    return false;
                }
            }
            Segment::Param(_) => {
                if parts.next().is_none_or(str::is_empty) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

fn params(segments: &[Segment], path: &str) -> Params {
    let mut out = Vec::new();
    let mut parts = path[1..].splitn(segments.len(), '/');
    for segment in segments {
        let part = parts.next().unwrap_or_default();
        match segment {
            Segment::Literal(_) => {}
            Segment::Param(name) | Segment::Rest(name) => out.push((*name, part.to_owned())),
        }
    }
    Params(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new([
            (Verb::Get, "/healthz", "health"),
            (Verb::Post, "/chat/completions", "chat"),
            (Verb::Get, "/models", "models"),
            (Verb::Get, "/models/{*id}", "model"),
            (Verb::Post, "/keys", "create key"),
            (Verb::Get, "/keys", "list keys"),
            (Verb::Post, "/keys/create", "create key"),
            (Verb::Delete, "/keys/{id}", "revoke"),
            (Verb::Get, "/webhooks/{id}/deliveries", "deliveries"),
            (Verb::Post, "/webhooks/{id}/test", "test"),
        ])
    }

    fn find(method: Method, path: &str) -> Result<(&'static str, Params), RouteError> {
        router().find(&method, path).map(|(v, p)| (*v, p))
    }

    #[test]
    fn every_root_reaches_the_same_entry() {
        for root in ["/v1", "/v1/api", "/api/v1"] {
            assert_eq!(find(Method::POST, &format!("{root}/chat/completions")).unwrap().0, "chat");
            assert_eq!(find(Method::POST, &format!("{root}/chat/completions/")).unwrap().0, "chat");
        }
        assert_eq!(find(Method::GET, "/healthz").unwrap().0, "health");
        assert_eq!(find(Method::HEAD, "/v1/healthz").unwrap().0, "health");
        assert_eq!(find(Method::POST, "/chat/completions"), Err(RouteError::NotFound));
        assert_eq!(find(Method::POST, "/v1x/chat/completions"), Err(RouteError::NotFound));
        assert_eq!(find(Method::POST, "/v1"), Err(RouteError::NotFound));
    }

    #[test]
    fn parameters_and_the_rest_of_the_path() {
        let (v, p) = find(Method::GET, "/v1/models/openai/gpt-4o").unwrap();
        assert_eq!((v, p.get("id")), ("model", "openai/gpt-4o"));
        let (v, p) = find(Method::DELETE, "/v1/keys/key_1").unwrap();
        assert_eq!((v, p.get("id")), ("revoke", "key_1"));
        let (v, p) = find(Method::GET, "/v1/webhooks/wh_1/deliveries").unwrap();
        assert_eq!((v, p.get("id")), ("deliveries", "wh_1"));
        assert_eq!(find(Method::GET, "/v1/models/"), Ok(("models", Params::default())));
        assert_eq!(find(Method::DELETE, "/v1/keys//x"), Err(RouteError::NotFound));
        assert_eq!(find(Method::GET, "/v1/webhooks/wh_1/nope"), Err(RouteError::NotFound));
        assert_eq!(find(Method::GET, "/v1/webhooks//deliveries"), Err(RouteError::NotFound));
    }

    #[test]
    fn literals_win_and_405_names_the_methods() {
        assert_eq!(find(Method::POST, "/v1/keys/create").unwrap().0, "create key");
        let allow = |m, p| match find(m, p) {
            Err(RouteError::MethodNotAllowed { allow }) => allow,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(allow(Method::DELETE, "/v1/keys/create"), "POST");
        assert_eq!(allow(Method::PUT, "/v1/keys"), "GET, POST");
        assert_eq!(allow(Method::GET, "/v1/keys/key_1"), "DELETE");
        assert_eq!(allow(Method::GET, "/v1/chat/completions"), "POST");
        assert_eq!(allow(Method::GET, "/v1/webhooks/wh_1/test"), "POST");
    }
}
