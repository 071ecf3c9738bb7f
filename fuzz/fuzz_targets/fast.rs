//! Fuzzes `cutover_fuzz_checks::fast`, where the checks and their reasons are.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover_fuzz_checks::fast(data));
