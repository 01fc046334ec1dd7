//! Ids unique across replicas without coordination: a random per-process
//! prefix and a counter (no syscall, no lock per id).

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Sequence {
    kind: &'static str,
    prefix: u64,
    counter: AtomicU64,
}

impl Sequence {
    pub fn new(kind: &'static str) -> Sequence {
        Sequence { kind, prefix: rand::random(), counter: AtomicU64::new(0) }
    }

    /// `<kind>_` + 16 hex digits of prefix + 8 or more of counter.
    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}_{:016x}{:08x}", self.kind, self.prefix, n)
    }
}

/// Request ids: the client's if it sent a sane one (1 to 128 visible ASCII
/// characters), else `req_` + a random per-process prefix + a counter.
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds { prefix: rand::random(), counter: AtomicU64::new(0) }
    }
}

impl RequestIds {
    pub fn for_request(&self, headers: &http::HeaderMap) -> http::HeaderValue {
        if let Some(id) = headers.get("x-request-id") {
            let bytes = id.as_bytes();
            if (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
                return id.clone();
            }
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        http::HeaderValue::try_from(format!("req_{:016x}{:08x}", self.prefix, n)).expect("hex is a valid header value")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_differ_within_and_across_sequences() {
        let (a, b) = (super::Sequence::new("x"), super::Sequence::new("x"));
        let ids = [a.next(), a.next(), b.next()];
        assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[0].starts_with("x_") && ids[0].len() == 26);
    }
}
