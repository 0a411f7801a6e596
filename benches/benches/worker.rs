//! Running a function in a child process: sockpair's `worker` against procspawn (the
//! Rust crate for the job) and against a plain `Command::spawn` + wait of this same
//! binary (the floor: what starting the process costs at all).
//!
//! - spawn-to-result: `worker::spawn(f, 1).join()`, `procspawn::spawn(1, f).join()`,
//!   and `Command::new(this binary)` that exits at once in `main`;
//! - pool: 2 workers, batches of tasks with a 64-byte argument and a 64-byte result,
//!   `worker::Pool` against `procspawn::Pool`, as tasks per second.
//!
//! Pinned to one CPU (the children inherit it), interleaved rounds, medians.
//!
//! `cargo bench -p sockpair-benches --bench worker`

use std::process::Command;
use std::time::{Duration, Instant};

use sockpair::worker;
use sockpair_benches::{interleaved, median, pin_to_one_cpu};

/// Set in the environment of the plain-spawn baseline's child: exit at once.
const PLAIN: &str = "SOCKPAIR_BENCH_PLAIN_CHILD";

const SPAWN_ROUNDS: usize = 11;
const SPAWNS_PER_ROUND: u32 = 20;
const POOL_ROUNDS: usize = 9;
const TASKS_PER_ROUND: usize = 2000;

fn trivial(x: u64) -> u64 {
    x + 1
}

fn echo64(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.reverse();
    bytes
}

fn main() {
    worker::init();
    procspawn::init();
    if std::env::var_os(PLAIN).is_some() {
        return;
    }
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo bench -- --list` asks a harness for its benchmarks
    }
    match pin_to_one_cpu() {
        Some(cpu) => {
            println!("pinned to CPU {cpu} (children inherit it); interleaved rounds; medians")
        }
        None => println!("could not pin to one CPU; numbers will be noisier"),
    }
    let exe = std::env::current_exe().unwrap();
    let mut plain = || {
        let status = Command::new(&exe).env(PLAIN, "1").status().unwrap();
        assert!(status.success());
    };
    let mut ours = || assert_eq!(worker::spawn(trivial, 1).unwrap().join().unwrap(), 2);
    let mut theirs = || assert_eq!(procspawn::spawn(1, trivial).join().unwrap(), 2);
    let times = interleaved(
        SPAWN_ROUNDS,
        SPAWNS_PER_ROUND,
        &mut [&mut plain, &mut ours, &mut theirs],
    );
    println!(
        "\nspawn-to-result of a trivial function ({SPAWN_ROUNDS} rounds x {SPAWNS_PER_ROUND})"
    );
    println!(
        "{:<28} {:>12} {:>16} {:>16}",
        "", "time", "vs procspawn", "vs plain spawn"
    );
    let row = |name: &str, t: Duration| {
        println!(
            "{name:<28} {t:>12?} {:>15.2}x {:>15.2}x",
            t.as_secs_f64() / times[2].as_secs_f64(),
            t.as_secs_f64() / times[0].as_secs_f64()
        )
    };
    row("Command::spawn + wait", times[0]);
    row("sockpair worker::spawn", times[1]);
    row("procspawn::spawn", times[2]);

    let argument = vec![7u8; 64];
    let ours = worker::Pool::new(2).unwrap();
    let theirs = procspawn::Pool::new(2).unwrap();
    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..POOL_ROUNDS {
        let started = Instant::now();
        let handles: Vec<_> = (0..TASKS_PER_ROUND)
            .map(|_| ours.spawn(echo64, argument.clone()))
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap().len(), 64);
        }
        samples[0].push(started.elapsed() / TASKS_PER_ROUND as u32);
        let started = Instant::now();
        let handles: Vec<_> = (0..TASKS_PER_ROUND)
            .map(|_| theirs.spawn(argument.clone(), echo64))
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap().len(), 64);
        }
        samples[1].push(started.elapsed() / TASKS_PER_ROUND as u32);
    }
    let [ours_t, theirs_t] = samples.map(|mut samples| median(&mut samples));
    let per_second = |t: Duration| 1.0 / t.as_secs_f64();
    println!(
        "\npool of 2 workers, 64-byte argument and result ({POOL_ROUNDS} rounds x {TASKS_PER_ROUND} tasks)"
    );
    println!(
        "{:<28} {:>12} {:>14} {:>16}",
        "", "per task", "tasks/s", "vs procspawn"
    );
    println!(
        "{:<28} {ours_t:>12?} {:>14.0} {:>15.2}x",
        "sockpair worker::Pool",
        per_second(ours_t),
        per_second(ours_t) / per_second(theirs_t)
    );
    println!(
        "{:<28} {theirs_t:>12?} {:>14.0} {:>15.2}x",
        "procspawn::Pool",
        per_second(theirs_t),
        1.0
    );
}
