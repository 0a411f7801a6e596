#![no_main]
//! `sockpair run --node`'s check of a stdin line (the CLI's own file, compiled here):
//! see `check_agrees_with_value` there.

#[path = "../../crates/sockpair-cli/src/node_line.rs"]
mod node_line;

libfuzzer_sys::fuzz_target!(|data: &[u8]| node_line::check_agrees_with_value(data));
