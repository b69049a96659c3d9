//! Fuzz target: see `spool::fuzzing::fuzz_check_line` for the input layout and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spool::fuzzing::fuzz_check_line(data));
