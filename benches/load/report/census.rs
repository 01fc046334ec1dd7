//! Reading a `MONITOR` census of a Redis-backed path: which of its round trips are on the
//! request path (and which script is the admission, which the settle), and the background
//! traffic set apart from them. Separate because both the store-key and the metering sections
//! judge their Redis budgets by it.

use std::fmt::Write as _;

use super::{CensusRecord, GW_METERED_REDIS};

/// Whether the census of the other path saw script `sha` at all.
fn runs_script(census: Option<&CensusRecord>, sha: &str) -> bool {
    census.is_some_and(|c| c.census.scripts().any(|(s, n)| s == sha && n > 0))
}

/// Round trips a request waits for, from a census. A path's own scripts are either its
/// admission (awaited before the upstream call) or run off the request path: the settle (after
/// the response) and the store's last-used and reaper scripts, which the plain and metered paths
/// both run; so the scripts only the metered path runs are its admission. Every round trip that
/// runs no script (key or workspace reads on a cache miss, but also the reaper's listing) is
/// counted as on the request path too: an upper bound. The census has already set apart the
/// background work (event log, delivery worker, credit watcher; [`background_line`]), by the
/// keys it touches: none of it is among these.
pub(super) fn request_path(census: &CensusRecord, other_path: Option<&CensusRecord>) -> u64 {
    let own_scripts: u64 =
        census.census.scripts().filter(|(sha, _)| !runs_script(other_path, sha)).map(|(_, n)| n).sum();
    let admits = if census.path == GW_METERED_REDIS { own_scripts } else { 0 };
    admits + census.census.other()
}

/// `4000 requests at c=16: round trips 2.0003/req = scripts 0ce500c0 1.0000 (admit) + 3f1a2b4c
/// 1.0001 (settle) + other 0.0002 (get 0.0001, ...); 25.0 commands/req inside scripts`.
pub(super) fn census_summary(census: &CensusRecord, other_path: Option<&CensusRecord>) -> String {
    let c = &census.census;
    let scripts = c
        .scripts()
        .map(|(sha, n)| {
            let role = if other_path.is_none() {
                ""
            } else if census.per_request(n) < 0.01 {
                " (rare)"
            } else if runs_script(other_path, sha) {
                " (settle)"
            } else if census.path == GW_METERED_REDIS {
                " (admit)"
            } else {
                " (?)"
            };
            format!("`{sha}` {:.4}{role}", census.per_request(n))
        })
        .collect::<Vec<_>>()
        .join(" + ");
    let others = c
        .round_trips
        .iter()
        .filter(|(name, _)| !name.starts_with("evalsha"))
        .map(|(name, &n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} requests at c={}: round trips {:.4}/req = scripts {} + other {:.4}{}; {:.1} commands/req run inside scripts",
        census.requests,
        census.concurrency,
        census.per_request(c.total()),
        if scripts.is_empty() { "none".to_owned() } else { scripts },
        census.per_request(c.other()),
        if others.is_empty() { String::new() } else { format!(" ({others})") },
        census.per_request(c.in_scripts),
    )
}

/// The census's background traffic, which the round trips above leave out: `- Background Redis
/// commands of gw-redis (census; off the request path, not counted above): 0.0355/req = event log
/// 0.0319 (evalsha `ae8bb03d` 0.0159, evalsha `fded100d` 0.0159) + delivery worker 0.0016
/// (evalsha `8aac9162` 0.0005, ...); 4.0 commands/req run inside background scripts`. Per
/// request, though the delivery worker and the credit watcher run on timers: their share is their
/// polls over the census window.
pub(super) fn background_line(out: &mut String, census: &CensusRecord) {
    let c = &census.census;
    let sources = c
        .background
        .iter()
        .map(|(&source, commands)| {
            let commands = commands
                .iter()
                .map(|(name, &n)| match name.strip_prefix("evalsha ") {
                    Some(sha) => format!("evalsha `{sha}` {:.4}", census.per_request(n)),
                    None => format!("{name} {:.4}", census.per_request(n)),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("{} {:.4} ({commands})", source.label(), census.per_request(c.background_of(source)))
        })
        .collect::<Vec<_>>()
        .join(" + ");
    let _ = writeln!(
        out,
        "- Background Redis commands of {} (census; off the request path, not counted above): {:.4}/req = {}; \
         {:.1} commands/req run inside background scripts{}",
        census.path,
        census.per_request(c.background_total()),
        if sources.is_empty() { "none".to_owned() } else { sources },
        census.per_request(c.background_in_scripts),
        match c.elsewhere {
            0 => String::new(),
            n => format!("; {n} commands of other gateways on the same server left out"),
        },
    );
}
