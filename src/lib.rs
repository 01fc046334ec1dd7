//! # tollgate
//!
//! An OpenAI-compatible gateway: it authenticates callers, resolves agent ids
//! and model aliases to upstream providers, rewrites requests for agents, and
//! relays answers (streams as they arrive) while accounting for their usage.
//!
//! ## Layout
//! | module | what it holds |
//! |---|---|
//! | [`gateway`] | the composition root: config → stores, meter, events, catalog → [`app::App`]; serving and the ordered shutdown |
//! | [`config`] | typed TOML config, `${VAR}` interpolation, validation with clear errors |
//! | [`runtime`] | thread-per-core workers, each with its own runtime and listener |
//! | [`server`] | one listener's accept loop (HTTP/1.1 + h2c), connection bounds, graceful drain; generic over a service |
//! | [`tasks`] | the one tracked set of background loops and work, stopped and awaited at shutdown |
//! | [`routes`] | the routes table (method, path, access, handler) and the request path every route shares |
//! | [`router`] | method + path → a table entry and its path parameters; `/v1`, `/v1/api`, `/api/v1` roots |
//! | [`app`] | the shared state every handler reads (no handler logic) |
//! | [`scope`] | what a key may do; the admin workspace |
//! | [`auth`] | credential extraction, key hashing, static and store keys behind a cache, key issuing |
//! | [`admin`] | key and workspace operations shared by the CLI and the management API, and the API's error for them |
//! | [`limits`] | rate limits: GCRA per key and workspace (governor embedded, Lua on Redis), `x-ratelimit-*` headers |
//! | [`credits`] | balances, plans, monthly refresh, reserve/settle ledger (embedded write-behind, Redis Lua), usage totals |
//! | [`units`] | micro-credits and the bounds that keep them exact |
//! | [`cron`] | cron expressions (5 fields or @shorthand) in an IANA zone, due times, the DST rule |
//! | [`clock`] | wall-clock time behind a trait, so tests can cross a month boundary; IANA zone names |
//! | [`agents`] | the catalog of agents and model aliases, workspace agents as data (both backends) and the cached resolver over both, and the request rewrite |
//! | [`memory`] | an agent's memory policy: which messages of a stored conversation go upstream |
//! | [`request`] | the typed model request: one-pass parse and validation of a chat/completions/embeddings body |
//! | [`pipeline`] | the model call without HTTP: parse, resolve, rewrite, admit, send, relay, account |
//! | [`api`] | front doors and handlers: the OpenAI and Responses adapters, sessions and `/v1/chat` over one conversation adapter, models, agents, management, credits, webhooks, health |
//! | [`reload`] | SIGHUP / `tollgate reload` / the admin route: validate the new config, build, swap atomically; what needs a restart |
//! | [`routing`] | a model's targets: power-of-two-choices balancing, fallbacks before the first byte, circuit breakers, `Retry-After` cool-downs, concurrency limits |
//! | [`upstream`] | providers: OpenAI-compatible (pooled hyper + rustls) and the built-in mock |
//! | [`relay`] | stream relay body, non-stream rewrite, usage accounting guard |
//! | [`sse`] | SSE framing and the incremental chunk rewriter |
//! | [`transcript`] | what an answer said (text, tool calls), captured for events |
//! | [`json`] | a top-level JSON object scanner used to splice fields without re-serialising; the strict check of request bodies |
//! | [`store`] | durable state: key and workspace stores, embedded (SQLite) and Redis backends |
//! | [`responses`] | stored Responses API responses: turns, their items and chains (`previous_response_id`), per workspace, on both backends |
//! | [`records`] | versioned JSON records by (scope, collection, id) on both backends: threads, schedules, tasks, notes, missions |
//! | [`schedules`] | scheduled prompts, tasks, notes and missions: the records, the due and runs timelines, exactly once per due time |
//! | [`scheduler`] | the loop that claims due runs and the run itself: a model call through the pipeline, its note and events |
//! | [`conversations`] | named conversations (sessions, chats): thread records over the turn store, one message at a time |
//! | [`events`] | the event bus, event log, webhooks and their signed, durable delivery worker |
//! | [`telemetry`] | logging: batched per worker, escaped text fields or JSON |
//! | [`metrics`] | Prometheus metrics (`/metrics`): one registry per gateway, bounded labels, counted by the router and the usage sink |
//! | [`body`] | the response body type of every route (buffered or streamed) |
//! | [`ids`] | ids unique across replicas without coordination; request ids |
//! | [`secret`] | a wrapper that never prints what it holds |
//! | `fuzzing` | the fuzz targets' bodies (hidden; run by `fuzz/` and `tests/fuzz_smoke.rs`) |
//! | [`usage`] | the typed usage record handed to later layers (credits, events) |
//! | [`error`] | the one place typed errors become the OpenAI error JSON |
//!
//! The top-level modules import each other without a cycle (checked by
//! `tests/architecture.rs`): leaves (`scope`, `units`, `clock`, `ids`, ...)
//! below `config`, below `store`, below the subsystems, below `pipeline`,
//! below the handlers in `api`, below `routes`, below `gateway`.
//!
//! ## The request path
//! `server` accepts → [`routes::handle`]: request id → route → auth →
//! access → handler (body read → parse → resolve → rewrite → limits +
//! reservation → upstream → relay → usage and settle) → error JSON. See
//! [`routes`] for what each step reads and adds.

pub mod admin;
pub mod agents;
pub mod api;
pub mod app;
pub mod auth;
pub mod body;
pub mod clock;
pub mod config;
pub mod conversations;
pub mod credits;
pub mod cron;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod ids;
pub mod json;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod records;
pub mod relay;
pub mod reload;
pub mod request;
pub mod responses;
pub mod router;
pub mod routes;
pub mod routing;
pub mod runtime;
pub mod scheduler;
pub mod schedules;
pub mod scope;
pub mod secret;
pub mod server;
pub mod sse;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod transcript;
pub mod units;
pub mod upstream;
pub mod usage;
