//! Route handlers. Each takes what the pipeline already established (the
//! caller, the request id) and returns a response or a typed error.

pub mod health;
pub mod management;
pub mod models;
pub mod openai;
pub mod request;

pub use request::RequestError;
