//! `tollgate::fuzzing::request_parse` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::fuzzing::request_parse(data));
