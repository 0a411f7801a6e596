#![no_main]
//! `sockpair::fuzz::fd_rule`: see its documentation for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockpair::fuzz::fd_rule(data));
