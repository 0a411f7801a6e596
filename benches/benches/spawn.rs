//! Spawning a child with one end of a pair at fd 3, against std's plain
//! `Command::spawn` of the same program, in a small parent and in a parent with 1 GiB of
//! touched memory. Also shown: std's `pre_exec` route (what a crate that hooks `pre_exec`
//! pays), which forks and so copies the parent's page tables.
//!
//! `cargo bench -p sockpair-benches --bench spawn`

use std::hint::black_box;
use std::os::unix::process::CommandExt;
use std::process::Command;

use sockpair::SpawnOptions;
use sockpair_benches::{interleaved, pin_to_one_cpu};

const PROGRAM: &str = "/bin/true";
const ROUNDS: usize = 11;
const PER_ROUND: u32 = 40;

fn plain_std() {
    Command::new(PROGRAM).spawn().unwrap().wait().unwrap();
}

fn sockpair_spawn() {
    let (mut child, _socket) = SpawnOptions::new()
        .spawn(&mut Command::new(PROGRAM))
        .unwrap();
    child.wait().unwrap();
}

fn std_pre_exec() {
    let mut cmd = Command::new(PROGRAM);
    // SAFETY: an empty hook; it only makes std take its fork path.
    unsafe { cmd.pre_exec(|| Ok(())) };
    cmd.spawn().unwrap().wait().unwrap();
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
        "{:<12} {:>14} {:>14} {:>8} {:>14} {:>8}",
        "parent", "std spawn", "sockpair", "ratio", "std pre_exec", "ratio"
    );
    for (label, bytes) in [("small", 0usize), ("1 GiB", 1 << 30)] {
        let memory = black_box(vec![1u8; bytes]); // vec! of a non-zero byte touches every page
        let times = interleaved(
            ROUNDS,
            PER_ROUND,
            &mut [&mut plain_std, &mut sockpair_spawn, &mut std_pre_exec],
        );
        let ratio = |t: std::time::Duration| t.as_secs_f64() / times[0].as_secs_f64();
        println!(
            "{label:<12} {:>14?} {:>14?} {:>7.2}x {:>14?} {:>7.2}x",
            times[0],
            times[1],
            ratio(times[1]),
            times[2],
            ratio(times[2])
        );
        drop(memory);
    }
}
