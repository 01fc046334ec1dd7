//! A minimal scanner over the *top level* of a JSON object.
//!
//! The gateway rewrites a handful of top-level fields (`model`, `usage`) in every
//! response and every stream chunk. Parsing each chunk into a `serde_json::Value`
//! and serialising it again would cost an allocation per node and reorder nothing
//! useful; instead this scanner walks the object once, skipping nested values by
//! bracket counting, and reports the byte range of each top-level member so a
//! caller can splice in a replacement. It checks structure (balanced brackets,
//! terminated strings), not full JSON grammar: the upstream is trusted to send
//! JSON, and anything structurally broken is reported as garbage.
//!
//! [`check_strict`] (in `strict.rs`) is the other direction: what a strict
//! parser refuses in a client's body that serde_json skips over unchecked.

use std::ops::Range;

mod strict;
pub mod typed;

pub use strict::{check_strict, MAX_DEPTH};

/// Why a buffer could not be scanned as a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("expected a JSON object")]
    NotAnObject,
    #[error("unexpected end of JSON input")]
    Truncated,
    #[error("malformed JSON at byte {0}")]
    Malformed(usize),
    #[error("JSON nested deeper than {MAX_DEPTH} levels at byte {0}")]
    TooDeep(usize),
    #[error(
        "an unpaired UTF-16 surrogate escape at byte {0} (\\uD800-\\uDBFF must be followed by a \\uDC00-\\uDFFF escape)"
    )]
    LoneSurrogate(usize),
    #[error("a number beyond the range of a 64-bit float at byte {0}")]
    NumberOutOfRange(usize),
}

/// One top-level member: its raw key (between the quotes, escapes untouched)
/// and the byte range of its value within the scanned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// Calls `visit` for every top-level member of the object in `buf`, in order.
/// Stops early when `visit` returns `false`.
pub fn scan_object(buf: &[u8], mut visit: impl FnMut(&[u8], Member) -> bool) -> Result<(), ScanError> {
    let mut i = skip_ws(buf, 0);
    if buf.get(i) != Some(&b'{') {
        return Err(ScanError::NotAnObject);
    }
    i = skip_ws(buf, i + 1);
    if buf.get(i) == Some(&b'}') {
        return Ok(());
    }
    loop {
        if buf.get(i) != Some(&b'"') {
            return Err(at(buf, i));
        }
        let key_end = skip_string(buf, i)?;
        let key = i + 1..key_end - 1;
        i = skip_ws(buf, key_end);
        if buf.get(i) != Some(&b':') {
            return Err(at(buf, i));
        }
        let start = skip_ws(buf, i + 1);
        let end = skip_value(buf, start)?;
        if !visit(&buf[key.clone()], Member { key, value: start..end }) {
            return Ok(());
        }
        i = skip_ws(buf, end);
        match buf.get(i) {
            Some(b',') => i = skip_ws(buf, i + 1),
            Some(b'}') => return Ok(()),
            _ => return Err(at(buf, i)),
        }
    }
}

/// The value ranges of the requested top-level keys (same order as `keys`),
/// found in one pass.
pub fn find_fields<const N: usize>(buf: &[u8], keys: [&str; N]) -> Result<[Option<Range<usize>>; N], ScanError> {
    let mut found: [Option<Range<usize>>; N] = std::array::from_fn(|_| None);
    scan_object(buf, |key, member| {
        if let Some(slot) = keys.iter().position(|k| k.as_bytes() == key) {
            found[slot] = Some(member.value);
        }
        true
    })?;
    Ok(found)
}

fn at(buf: &[u8], i: usize) -> ScanError {
    if i >= buf.len() {
        ScanError::Truncated
    } else {
        ScanError::Malformed(i)
    }
}

fn skip_ws(buf: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = buf.get(i) {
        i += 1;
    }
    i
}

/// `buf[i]` is an opening quote; returns the index just past the closing quote.
fn skip_string(buf: &[u8], i: usize) -> Result<usize, ScanError> {
    let mut j = i + 1;
    loop {
        match memchr::memchr2(b'"', b'\\', &buf[j.min(buf.len())..]) {
            None => return Err(ScanError::Truncated),
            Some(off) => {
                let k = j + off;
                if buf[k] == b'\\' {
                    j = k + 2;
                } else {
                    return Ok(k + 1);
                }
            }
        }
    }
}

/// Returns the index just past the value starting at `i`.
fn skip_value(buf: &[u8], i: usize) -> Result<usize, ScanError> {
    match buf.get(i) {
        None => Err(ScanError::Truncated),
        Some(b'"') => skip_string(buf, i),
        Some(b'{' | b'[') => skip_container(buf, i),
        Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            let mut j = i + 1;
            while let Some(c) = buf.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                    break;
                }
                j += 1;
            }
            Ok(j)
        }
        Some(_) => Err(ScanError::Malformed(i)),
    }
}

fn skip_container(buf: &[u8], i: usize) -> Result<usize, ScanError> {
    let mut depth = 0usize;
    let mut j = i;
    while j < buf.len() {
        match buf[j] {
            b'"' => {
                j = skip_string(buf, j)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err(ScanError::Truncated)
}

/// True when the raw JSON value is `null` (or absent from the caller's view).
pub fn is_null(raw: &[u8]) -> bool {
    raw == b"null"
}

/// Appends `s` as a JSON string literal (quotes and escapes included).
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is exact and fast; writing to a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_top_level_fields_only() {
        let doc = br#"{"id":"x","nested":{"model":"inner"},"model" : "gpt-4o","s":"a \"model\": b","usage":null}"#;
        let [model, usage, missing] = find_fields(doc, ["model", "usage", "missing"]).unwrap();
        assert_eq!(&doc[model.unwrap()], br#""gpt-4o""#);
        assert_eq!(&doc[usage.unwrap()], b"null");
        assert!(missing.is_none());
    }

    #[test]
    fn handles_arrays_numbers_and_escapes() {
        let doc = br#" { "a" : [1, {"b":"]"}, "\\"], "n": -1.5e3 , "t":true } "#;
        let [a, n, t] = find_fields(doc, ["a", "n", "t"]).unwrap();
        assert_eq!(&doc[a.unwrap()], br#"[1, {"b":"]"}, "\\"]"#);
        assert_eq!(&doc[n.unwrap()], b"-1.5e3");
        assert_eq!(&doc[t.unwrap()], b"true");
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert_eq!(find_fields(b"<html>", ["model"]), Err(ScanError::NotAnObject));
        assert_eq!(find_fields(br#"{"model":"x"#, ["model"]), Err(ScanError::Truncated));
        assert_eq!(find_fields(br#"{"model":"x",}"#, ["model"]), Err(ScanError::Malformed(13)));
        assert!(find_fields(br#"{"a":[1,2}"#, ["a"]).is_err());
        assert_eq!(find_fields(b"{}", ["model"]), Ok([None]));
    }
}
