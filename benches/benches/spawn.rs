//! Spawning a child with one end of a pair at fd 3, against std's plain
//! `Command::spawn` of the same program, in a small parent and in a parent with 1 GiB of
//! touched memory: sockpair's fast path (`spawn_program`, `clone(CLONE_VM|CLONE_VFORK)`)
//! and its std path (`spawn(&mut Command)`, which honours everything a `Command` says
//! through a `pre_exec` hook, so std forks and copies the parent's page tables).
//!
//! `cargo bench -p sockpair-benches --bench spawn`

use std::hint::black_box;
use std::process::Command;

use sockpair::{Program, SpawnOptions};
use sockpair_benches::{interleaved, pin_to_one_cpu};

const PROGRAM: &str = "/bin/true";
const ROUNDS: usize = 11;
const PER_ROUND: u32 = 40;

fn plain_std() {
    Command::new(PROGRAM).spawn().unwrap().wait().unwrap();
}

fn sockpair_program() {
    let (mut child, _socket) = SpawnOptions::new()
        .spawn_program(&Program::new(PROGRAM))
        .unwrap();
    child.wait().unwrap();
}

fn sockpair_command() {
    let (mut child, _socket) = SpawnOptions::new()
        .spawn(&mut Command::new(PROGRAM))
        .unwrap();
    child.wait().unwrap();
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo bench -- --list` asks a harness for its benchmarks
    }
    match pin_to_one_cpu() {
        Some(cpu) => println!(
            "pinned to CPU {cpu}; {ROUNDS} rounds x {PER_ROUND} spawns of {PROGRAM}, interleaved; medians"
        ),
        None => println!("could not pin to one CPU; numbers will be noisier"),
    }
    println!(
        "{:<12} {:>14} {:>16} {:>8} {:>16} {:>8}",
        "parent", "std spawn", "spawn_program", "ratio", "spawn(Command)", "ratio"
    );
    for (label, bytes) in [("small", 0usize), ("1 GiB", 1 << 30)] {
        let memory = black_box(vec![1u8; bytes]); // vec! of a non-zero byte touches every page
        let times = interleaved(
            ROUNDS,
            PER_ROUND,
            &mut [&mut plain_std, &mut sockpair_program, &mut sockpair_command],
        );
        let ratio = |t: std::time::Duration| t.as_secs_f64() / times[0].as_secs_f64();
        println!(
            "{label:<12} {:>14?} {:>16?} {:>7.2}x {:>16?} {:>7.2}x",
            times[0],
            times[1],
            ratio(times[1]),
            times[2],
            ratio(times[2])
        );
        drop(memory);
    }
}
