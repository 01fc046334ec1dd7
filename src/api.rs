//! Route handlers. Each takes what the pipeline already established (the
//! caller, the request id) and returns a response or a typed error.

pub mod credits;
pub mod health;
pub mod management;
pub mod models;
pub mod openai;
pub mod request;
pub mod webhooks;

pub use request::RequestError;

/// The raw value of `name` in a query string (ids and dates need no decoding).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}
