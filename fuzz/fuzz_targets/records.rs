#![no_main]
//! `sockpair::fuzz::records`: see its documentation for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockpair::fuzz::records(data));
