//! Route handlers. Each takes what the pipeline already established (the
//! caller, the request id) and returns a response or a typed error.

pub mod agents;
pub mod chat;
pub mod conversation;
pub mod credits;
pub mod health;
pub mod management;
pub mod metrics;
pub mod models;
pub mod openai;
pub mod reload;
pub mod responses;
pub mod responses_http;
pub mod sessions;
pub mod threads;
pub mod webhooks;
pub mod work;

use std::borrow::Cow;

/// A query string's parameters, percent-decoded (`type=a%2Cb` is `a,b`, as
/// HTTP clients encode a comma in a value; `+` is a space).
pub struct Query<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Query<'a> {
    pub fn parse(query: Option<&'a str>) -> Query<'a> {
        fn decode(s: &str) -> Cow<'_, str> {
            if !s.contains(['%', '+']) {
                return Cow::Borrowed(s);
            }
            let spaced = s.replace('+', " ");
            Cow::Owned(percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
        }
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect();
        Query { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some("type=request.completed%2Cai_message&limit=5&empty=&flag&sp=a+b"));
        assert_eq!(q.get("type"), Some("request.completed,ai_message"));
        assert_eq!(q.get("limit"), Some("5"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("sp"), Some("a b"));
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::parse(None).get("x"), None);
    }
}
