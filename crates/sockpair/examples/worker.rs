//! Run Rust functions in child processes: one call with `worker::spawn`, many with a
//! `Pool`, and what comes back when a worker panics or dies.
//!
//! `cargo run -p sockpair --features worker --example worker`

use std::time::Duration;

use sockpair::worker::{self, Pool};

/// Counts the primes below `n`, the slow way: work worth a process.
fn primes_below(n: u64) -> usize {
    (2..n)
        .filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    worker::init(); // first: in a worker, this runs the call and exits

    let handle = worker::spawn(primes_below, 100_000)?;
    println!("worker {} counts primes", handle.pid().unwrap_or(0));
    println!("primes below 100000: {}", handle.join()?);

    let pool = Pool::new(2)?;
    let counts: Vec<usize> = pool
        .map(primes_below, [10, 100, 1000])
        .collect::<Result<_, _>>()?;
    println!("primes below 10, 100, 1000: {counts:?}");

    // A panic comes back as an error with its message; so does a worker's death.
    let panics = pool.spawn(|n: u32| -> u32 { panic!("refusing {n}") }, 7);
    println!("a panic: {}", panics.join().unwrap_err());
    let dies = pool.spawn(|code: i32| -> () { std::process::exit(code) }, 3);
    println!("a death: {}", dies.join().unwrap_err());
    // The pool replaced the dead worker; the next task runs as usual.
    println!("after it: {}", pool.spawn(primes_below, 20).join()?);

    // A timeout leaves the worker running, for kill.
    let mut slow = worker::spawn(
        |secs: u64| std::thread::sleep(Duration::from_secs(secs)),
        60,
    )?;
    println!(
        "a timeout: {}",
        slow.join_timeout(Duration::from_millis(100)).unwrap_err()
    );
    slow.kill()?;
    println!("after kill: {}", slow.join().unwrap_err());
    Ok(())
}
