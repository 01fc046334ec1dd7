//! Fuzz entry points: the bodies of the libFuzzer targets in `fuzz/`.
//!
//! They live in the crate, not in `fuzz/`, so they compile with every build
//! and `tests/fuzz_smoke.rs` runs them over the seed corpus and generated
//! inputs on stable (libFuzzer needs nightly). Each takes arbitrary bytes and
//! panics only when an invariant breaks; an input that panics is a bug.
//! Where serde_json can judge, it is the oracle.

use std::ops::Range;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::{check_strict, find_fields, scan_object};
use crate::request::{members, parse, Endpoint};
use crate::sse::SseRewriter;

/// `request::parse` for each endpoint. What it accepts, a strict parser
/// accepts too (nothing is sent upstream that it would refuse), with the
/// same `model`, `stream` and `include_usage`.
pub fn request_parse(data: &[u8]) {
    for endpoint in [Endpoint::Chat, Endpoint::Completions, Endpoint::Embeddings] {
        let Ok(req) = parse(data, endpoint) else { continue };
        let strict: Value = serde_json::from_slice(data)
            .unwrap_or_else(|e| panic!("{endpoint:?} accepted what serde_json refuses ({e}): {data:?}"));
        assert_eq!(strict["model"].as_str(), Some(&*req.model), "model of {data:?}");
        assert!(!req.model.trim().is_empty());
        assert_eq!(strict["stream"].as_bool().unwrap_or(false), req.stream, "stream of {data:?}");
        let include_usage = strict["stream_options"]["include_usage"].as_bool().unwrap_or(false);
        assert_eq!(include_usage, req.include_usage, "include_usage of {data:?}");
        let distinct = strict.as_object().map_or(0, |o| o.len());
        assert!(req.fields.len() >= distinct, "every member is kept: {data:?}");
    }
}

/// The SSE rewriter. `data[0]` picks the options (bit 0: splice a model,
/// bit 1: strip the usage chunk, bit 2: collect a transcript), `data[1]`
/// seeds where the rest is split into frames. However the stream is split,
/// the client gets the same bytes, and the rewriter ends in the same state;
/// with nothing to rewrite, it forwards the input byte for byte.
pub fn sse_rewrite(data: &[u8]) {
    let [options, seed, stream @ ..] = data else { return };
    let model = (options & 1 != 0).then(|| Bytes::from_static(b"\"agent\""));
    let strip_usage = options & 2 != 0;
    let transcript = options & 4 != 0;
    let run = |frames: Vec<&[u8]>| {
        let mut rewriter = SseRewriter::new(model.clone(), strip_usage);
        if transcript {
            rewriter = rewriter.with_transcript();
        }
        let mut out = Vec::new();
        for frame in frames {
            rewriter.push(Bytes::copy_from_slice(frame), &mut out).ok()?;
        }
        let bytes: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        let state = (rewriter.usage(), rewriter.content_chunks(), rewriter.is_done(), rewriter.has_partial_event());
        Some((bytes, state, rewriter.take_transcript()))
    };
    let Some(whole) = run(vec![stream]) else { return };
    for frames in [split(stream, *seed), stream.chunks(1).collect()] {
        let Some(split) = run(frames) else { return };
        assert_eq!(split, whole, "a split changed the output or the state for {data:?}");
    }
    if model.is_none() && !strip_usage {
        let (bytes, (.., partial), _) = whole;
        if partial {
            assert!(stream.starts_with(&bytes) && bytes.len() < stream.len(), "a prefix, then the tail: {data:?}");
        } else {
            assert_eq!(bytes, stream, "pass-through is byte-exact");
        }
    }
}

/// Frames of pseudo-random lengths (1 to 64 bytes) from `seed`.
fn split(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut frames = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let (frame, tail) = rest.split_at(rest.len().min(1 + (x % 64) as usize));
        frames.push(frame);
        rest = tail;
    }
    frames
}

/// The JSON scanner and the strict check. Whenever serde_json parses an
/// object, `scan_object` finds the same members with the same raw values
/// and `find_fields` the last of each key; whenever serde_json skips a
/// document without error, `check_strict` accepts it exactly when serde_json
/// also parses it into a `Value`.
pub fn json_scan(data: &[u8]) {
    let mut ranges: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    let scan = scan_object(data, |_, member| {
        ranges.push((member.key, member.value));
        true
    });
    let scanned: Vec<(&[u8], Range<usize>)> = ranges.into_iter().map(|(k, v)| (&data[k], v)).collect();
    let _ = find_fields(data, ["model", "usage", "choices"]);
    let strict = check_strict(data);

    if let Ok(members) = members(data) {
        assert!(scan.is_ok(), "scan_object refused an object serde_json parses ({scan:?}): {data:?}");
        assert_eq!(scanned.len(), members.len(), "members of {data:?}");
        for ((raw_key, range), (key, raw)) in scanned.iter().zip(&members) {
            assert_eq!(decode_key(raw_key).as_deref(), Some(&**key), "key of {data:?}");
            assert_eq!(&data[range.clone()], raw.get().as_bytes(), "value of {key} in {data:?}");
        }
        // Keys without escapes, as find_fields compares raw bytes.
        let plain = scanned.iter().filter(|(k, _)| !k.contains(&b'\\'));
        for (key, _) in plain.take(3) {
            let name = std::str::from_utf8(key).expect("serde_json checked UTF-8");
            let [found] = find_fields(data, [name]).expect("find_fields accepts what scan_object does");
            let last = scanned.iter().rev().find(|(k, _)| k == key).map(|(_, r)| r.clone());
            assert_eq!(found, last, "find_fields({name}) in {data:?}");
        }
    }
    if serde_json::from_slice::<&RawValue>(data).is_ok() {
        let parsed = serde_json::from_slice::<Value>(data);
        assert_eq!(strict.is_ok(), parsed.is_ok(), "check_strict {strict:?} vs serde_json {parsed:?} on {data:?}");
    }
}

/// A raw key (between the quotes, escapes untouched) decoded as serde_json does.
fn decode_key(raw: &[u8]) -> Option<String> {
    let quoted = [b"\"", raw, b"\""].concat();
    serde_json::from_slice(&quoted).ok()
}
