//! `tollgate::fuzzing::json_scan` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::fuzzing::json_scan(data));
