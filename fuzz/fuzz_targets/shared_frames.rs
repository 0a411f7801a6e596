#![no_main]
//! `sockpair::fuzz::shared_frames`: see its documentation for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockpair::fuzz::shared_frames(data));
