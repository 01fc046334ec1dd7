//! `tollgate::fuzzing::sse_rewrite` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::fuzzing::sse_rewrite(data));
