#![no_main]
//! `sockpair::fuzz::typed`: see its documentation for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockpair::fuzz::typed(data));
