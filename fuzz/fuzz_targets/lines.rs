#![no_main]
//! `sockpair::fuzz::lines`: see its documentation for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockpair::fuzz::lines(data));
