//! The Responses API translation (`tollgate::api::responses`) on recorded
//! fixtures: golden snapshots of requests, whole answers and streams
//! (`golden`), and the real clients parsing what it produces (`sdk`).

#[path = "../support/tools.rs"]
mod tools;

mod cases;
mod golden;
mod sdk;
