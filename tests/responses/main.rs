//! The Responses API translation (`tollgate::api::responses`) on recorded
//! fixtures: golden snapshots of requests, whole answers and streams
//! (`golden`).

mod cases;
mod golden;
