//! Money: micro-credits, the one unit every price, balance and charge is
//! counted in, and the bounds that keep them exact in a Redis Lua script.
//!
//! A leaf module, so the config can check its amounts without importing the
//! ledger.

/// Micro-credits per credit.
pub const MICRO: u64 = 1_000_000;

/// The largest balance part, in micro-credits: 2^53, the largest integer a
/// Redis Lua script counts exactly (about 9 billion credits).
pub const MAX_BALANCE: u64 = 1 << 53;

/// Reservations, charges and token counts are clamped to this before they
/// reach a ledger: as large as a balance part can be, so a clamped
/// reservation is refused unless the balance really holds ~9 billion credits,
/// and small enough that Lua counts it exactly and no sum can wrap. A client
/// asking for `max_tokens: 9223372036854775807` gets `insufficient_quota`.
pub const MAX_CHARGE: u64 = MAX_BALANCE;
