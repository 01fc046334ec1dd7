//! # tollgate
//!
//! An OpenAI-compatible gateway: it authenticates callers, resolves agent ids
//! and model aliases to upstream providers, rewrites requests for agents, and
//! relays answers (streams as they arrive) while accounting for their usage.
//!
//! ## Layout
//! | module | what it holds |
//! |---|---|
//! | [`config`] | typed TOML config, `${VAR}` interpolation, validation with clear errors |
//! | [`runtime`] | thread-per-core workers, each with its own runtime and listener |
//! | [`server`] | one listener's accept loop (HTTP/1.1 + h2c) and graceful shutdown |
//! | [`app`] | shared state and the request pipeline, in order, in one doc comment |
//! | [`router`] | method + path → route; the one table of public routes |
//! | [`auth`] | credential extraction, key hashing, static and store keys behind a cache, key issuing |
//! | [`admin`] | key and workspace operations shared by the CLI and the management API |
//! | [`limits`] | rate limits: GCRA per key and workspace (governor embedded, Lua on Redis), `x-ratelimit-*` headers |
//! | [`credits`] | balances, plans, monthly refresh, reserve/settle ledger (embedded write-behind, Redis Lua), usage totals |
//! | [`clock`] | wall-clock time behind a trait, so tests can cross a month boundary |
//! | [`agents`] | the catalog of agents and model aliases, and the request rewrite |
//! | [`pipeline`] | the model call without HTTP: parse, resolve, rewrite, admit, send, relay, account |
//! | [`api`] | front doors and handlers: the model API, models list, health; request parsing |
//! | [`upstream`] | providers: OpenAI-compatible (pooled hyper + rustls) and the built-in mock |
//! | [`relay`] | stream relay body, non-stream rewrite, usage accounting guard |
//! | [`sse`] | SSE framing and the incremental chunk rewriter |
//! | [`json`] | a top-level JSON object scanner used to splice fields without re-serialising; the strict check of request bodies |
//! | [`store`] | durable state: key and workspace stores, embedded (SQLite) and Redis backends |
//! | [`responses`] | stored Responses API responses: turns, their items and chains (`previous_response_id`), per workspace, on both backends |
//! | [`events`] | the event bus, event log, webhooks and their signed, durable delivery worker |
//! | [`telemetry`] | logging: batched per worker, escaped text fields or JSON |
//! | [`body`] | the response body type of every route (buffered or streamed) |
//! | [`ids`] | ids unique across replicas without coordination |
//! | [`secret`] | a wrapper that never prints what it holds |
//! | `fuzzing` | the fuzz targets' bodies (hidden; run by `fuzz/` and `tests/fuzz_smoke.rs`) |
//! | [`usage`] | the typed usage record handed to later layers (credits, events) |
//! | [`error`] | the one place typed errors become the OpenAI error JSON |
//!
//! ## The request path
//! `server` accepts → [`app::App::handle`]: request id → route → auth →
//! handler (body read → parse → resolve → rewrite → limits + reservation →
//! upstream → relay → usage and settle)
//! → error JSON. See [`app`] for what each step reads and adds.

pub mod admin;
pub mod agents;
pub mod api;
pub mod app;
pub mod auth;
pub mod body;
pub mod clock;
pub mod config;
pub mod credits;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod json;
pub mod limits;
pub mod pipeline;
pub mod relay;
pub mod responses;
pub mod router;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod sse;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod usage;
