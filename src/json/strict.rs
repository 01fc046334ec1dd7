//! The strictness serde_json's skipping pass leaves out.
//!
//! The model request parser splits a body into top-level members kept
//! as raw JSON (`&RawValue`). serde_json checks what it skips over for
//! grammar, UTF-8 and control characters, but not its nesting limit, not the
//! pairing of `\u` surrogate escapes, and not whether a number fits an f64:
//! those are checked only when a value is parsed into something. A strict
//! parser downstream (serde_json into a `Value`: the built-in mock, Rust
//! upstreams) refuses such a body, and the gateway answered that refusal as
//! its own 502 after sending it. [`check_strict`] refuses them first, as the
//! client's 400, with exactly serde_json's verdict for a document it has
//! already skipped without error:
//!
//! - **nesting** deeper than [`MAX_DEPTH`] (serde_json's limit of 128 counts
//!   the container being opened, so 127 levels parse);
//! - **surrogates**: a `\uD800`–`\uDBFF` escape not followed by a
//!   `\uDC00`–`\uDFFF` one, or a low one alone. No upstream does anything
//!   useful with one: Python's `json` accepts it, but the string then cannot
//!   be encoded as UTF-8 (an error, typically a 500, wherever the text is
//!   used); Node and Go replace it with U+FFFD, changing the prompt without
//!   telling anyone; serde_json refuses it. A 400 that says so is the one
//!   answer a client can act on;
//! - **numbers** beyond an f64 (`1e400`): refused by serde_json and Go (Python
//!   and Node make them infinite, which they cannot send on as JSON).
//!
//! One pass over the bytes: strings are skipped with `memchr` (only their
//! escapes are looked at), brackets are counted outside them, and only a
//! number with an exponent or of more than [`PLAIN_NUMBER`] bytes is parsed,
//! by serde_json, so the verdict is serde_json's own. It costs ~180 ns for a
//! 330-byte chat request (`cargo bench --bench rewrite`), about a sixth of
//! parsing and rewriting it.

use super::ScanError;

/// The deepest nesting accepted: what serde_json parses into a `Value`.
pub const MAX_DEPTH: usize = 127;

/// A number without an exponent this long or shorter cannot overflow an f64
/// (that needs 309 integer digits), so it is not parsed.
const PLAIN_NUMBER: usize = 300;

/// Refuses what a strict parser refuses in a document serde_json skipped
/// without error (see the module doc). On other input it returns some
/// error or `Ok`, never panics.
pub fn check_strict(buf: &[u8]) -> Result<(), ScanError> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = buf.get(i) {
        i = match b {
            b'"' => check_string(buf, i + 1)?,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ScanError::TooDeep(i));
                }
                i + 1
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i + 1
            }
            b'-' | b'0'..=b'9' => check_number(buf, i)?,
            _ => i + 1,
        };
    }
    Ok(())
}

/// `buf[j]` is just inside a string; returns the index past its closing quote.
fn check_string(buf: &[u8], mut j: usize) -> Result<usize, ScanError> {
    loop {
        let rest = buf.get(j..).unwrap_or_default();
        let k = j + memchr::memchr2(b'"', b'\\', rest).ok_or(ScanError::Truncated)?;
        if buf[k] == b'"' {
            return Ok(k + 1);
        }
        j = match buf.get(k + 1) {
            None => return Err(ScanError::Truncated),
            Some(b'u') => match hex4(buf, k + 2) {
                None => return Err(ScanError::Malformed(k)),
                Some(0xD800..=0xDBFF) => match (buf.get(k + 6..k + 8), hex4(buf, k + 8)) {
                    (Some(b"\\u"), Some(0xDC00..=0xDFFF)) => k + 12,
                    _ => return Err(ScanError::LoneSurrogate(k)),
                },
                Some(0xDC00..=0xDFFF) => return Err(ScanError::LoneSurrogate(k)),
                Some(_) => k + 6,
            },
            Some(_) => k + 2,
        };
    }
}

/// The four hex digits at `at` as a code unit.
fn hex4(buf: &[u8], at: usize) -> Option<u16> {
    let digits = buf.get(at..at + 4)?;
    digits.iter().try_fold(0u16, |acc, &d| Some((acc << 4) | (d as char).to_digit(16)? as u16))
}

/// `buf[i]` starts a number; returns the index past it.
fn check_number(buf: &[u8], i: usize) -> Result<usize, ScanError> {
    let len = buf[i..].iter().position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
    let end = len.map_or(buf.len(), |n| i + n);
    let token = &buf[i..end];
    let may_overflow = token.len() > PLAIN_NUMBER || token.iter().any(|b| matches!(b, b'e' | b'E'));
    if may_overflow && serde_json::from_slice::<f64>(token).is_err() {
        return Err(ScanError::NumberOutOfRange(i));
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{{\"a\":{}1{}}}", "[".repeat(levels - 1), "]".repeat(levels - 1))
    }

    #[test]
    fn nesting_up_to_serde_jsons_limit_passes_and_one_more_is_refused() {
        assert_eq!(check_strict(nested(MAX_DEPTH).as_bytes()), Ok(()));
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH)).is_ok());
        let deeper = nested(MAX_DEPTH + 1);
        assert_eq!(check_strict(deeper.as_bytes()), Err(ScanError::TooDeep(4 + MAX_DEPTH)));
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err(), "serde_json's verdict too");
        let objects = format!("{}{}", "{\"k\":".repeat(200), "}".repeat(200));
        assert!(matches!(check_strict(objects.as_bytes()), Err(ScanError::TooDeep(_))));
        // Closing brackets make room again: depth, not count.
        let wide = format!("{{\"a\":[{}]}}", vec![format!("{}{}", "[".repeat(100), "]".repeat(100)); 50].join(","));
        assert_eq!(check_strict(wide.as_bytes()), Ok(()));
    }

    #[test]
    fn brackets_inside_strings_are_not_nesting() {
        let doc = format!("{{\"a\":\"{}\",\"b\":[\"]]]\\\"[[[\"]}}", "[{".repeat(500));
        assert_eq!(check_strict(doc.as_bytes()), Ok(()));
    }

    #[test]
    fn paired_surrogates_pass_and_lone_ones_are_refused() {
        assert_eq!(check_strict(br#"{"a":"\ud83d\ude00 \uD83D\uDE00 \u00e9 \u0041"}"#), Ok(()));
        assert_eq!(check_strict(br#"{"a":"x\ud800"}"#), Err(ScanError::LoneSurrogate(7)));
        assert_eq!(check_strict(br#"{"a":"\ud800x"}"#), Err(ScanError::LoneSurrogate(6)));
        assert_eq!(check_strict(br#"{"a":"\ud800\u0041"}"#), Err(ScanError::LoneSurrogate(6)));
        assert_eq!(check_strict(br#"{"a":"\ud800\ud800\udc00"}"#), Err(ScanError::LoneSurrogate(6)));
        assert_eq!(check_strict(br#"{"a":"\ud800\n"}"#), Err(ScanError::LoneSurrogate(6)));
        assert_eq!(check_strict(br#"{"a":"\udc00"}"#), Err(ScanError::LoneSurrogate(6)));
        assert_eq!(check_strict(br#"{"a":"\ud83d\ude00\udc00"}"#), Err(ScanError::LoneSurrogate(18)));
        assert_eq!(check_strict(br#"{"\ud800":1}"#), Err(ScanError::LoneSurrogate(2)), "in keys too");
        for doc in [r#"{"a":"x\ud800"}"#, r#"{"a":"\udc00"}"#, r#"{"a":"\ud800\u0041"}"#] {
            assert!(serde_json::from_str::<serde_json::Value>(doc).is_err(), "serde_json agrees: {doc}");
        }
    }

    #[test]
    fn an_escaped_backslash_before_u_is_not_an_escape() {
        assert_eq!(check_strict(br#"{"a":"\\ud800"}"#), Ok(()));
        assert_eq!(check_strict(br#"{"a":"\\\\ud800 \\\"ud800"}"#), Ok(()));
        assert_eq!(check_strict(br#"{"a":"\\\ud800"}"#), Err(ScanError::LoneSurrogate(8)));
        assert_eq!(check_strict(br#"{"a":"\"","b":"\ud800"}"#), Err(ScanError::LoneSurrogate(15)));
    }

    #[test]
    fn numbers_beyond_an_f64_are_refused() {
        assert_eq!(check_strict(br#"{"a":[1e308,-1.7976931348623157e308,1e-400,0e99999,0.7,-12]}"#), Ok(()));
        assert_eq!(check_strict(br#"{"a":1e309}"#), Err(ScanError::NumberOutOfRange(5)));
        assert_eq!(check_strict(br#"{"a":[0,-1E400]}"#), Err(ScanError::NumberOutOfRange(8)));
        let long = format!("{{\"a\":{}}}", "9".repeat(400));
        assert_eq!(check_strict(long.as_bytes()), Err(ScanError::NumberOutOfRange(5)));
        let long_but_small = format!("{{\"a\":0.{}1}}", "0".repeat(400));
        assert_eq!(check_strict(long_but_small.as_bytes()), Ok(()));
        // Digits in strings and keys are not numbers.
        assert_eq!(check_strict(br#"{"1e999":"1e999"}"#), Ok(()));
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        for doc in [&b"\"abc"[..], b"\"\\", b"\"\\u12", b"\"\\ud800\\u", b"\"\\uzzzz\"", b"-", b"1e", b"[[[", b"]]]}"] {
            let _ = check_strict(doc);
        }
        assert_eq!(check_strict(b"\"abc"), Err(ScanError::Truncated));
        assert_eq!(check_strict(br#""\uzz00""#), Err(ScanError::Malformed(1)));
    }
}
