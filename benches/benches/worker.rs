//! Running a function in a child process: sockpair's `worker` against procspawn (the
//! Rust crate for the job) and against a plain `Command::spawn` + wait of this same
//! binary (the floor: what starting the process costs at all).
//!
//! - spawn-to-result, 64-byte argument and result: `worker::spawn(f, arg).join()` from
//!   the fork server (the default) and with `exec`, `procspawn::spawn(arg, f).join()`,
//!   and `Command::new(this binary)` that exits at once in `main`;
//! - the same from this process grown to 1 GiB touched and 8 threads busy in
//!   `malloc`/`free` (at `SCHED_IDLE`, so that they take only time nobody else wants);
//! - replacing a dead pool worker: a task that ends its worker, then one that needs a
//!   new one, fork server against `exec`;
//! - pool: 2 workers, batches of tasks with a 64-byte argument and a 64-byte result,
//!   `worker::Pool` against `procspawn::Pool`, as tasks per second.
//!
//! Pinned to one CPU (the children inherit it), interleaved rounds, medians.
//!
//! `cargo bench -p sockpair-benches --bench worker`

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sockpair::worker;
use sockpair_benches::{interleaved, median, pin_to_one_cpu};

/// Set in the environment of the plain-spawn baseline's child: exit at once.
const PLAIN: &str = "SOCKPAIR_BENCH_PLAIN_CHILD";

/// Set in the environment of the large, busy parent ([`big_parent`]).
const BIG: &str = "SOCKPAIR_BENCH_BIG_PARENT";

/// The large, busy parent: grows, says so, then for each line "COUNT EXEC" on stdin
/// spawns COUNT workers one after the other (from the fork server, or with exec if EXEC
/// is 1), and answers "done".
fn big_parent() {
    // SAFETY: nothing else runs yet in this process (the first thing of main).
    unsafe { std::env::remove_var(BIG) };
    let _grown = grow_and_busy();
    let mut exec = worker::Options::new();
    exec.exec(true);
    let forked = worker::Options::new();
    let argument = vec![7u8; 64];
    println!("grown");
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let (count, how) = line.split_once(' ').unwrap();
        let options = if how == "1" { &exec } else { &forked };
        for _ in 0..count.parse::<u32>().unwrap() {
            let handle = options.spawn(echo64, argument.clone()).unwrap();
            assert_eq!(handle.join().unwrap().len(), 64);
        }
        println!("done");
    }
}

const SPAWN_ROUNDS: usize = 21;
const SPAWNS_PER_ROUND: u32 = 20;
const POOL_ROUNDS: usize = 9;
const TASKS_PER_ROUND: usize = 2000;

fn trivial(x: u64) -> u64 {
    x + 1
}

fn die(_: ()) {
    std::process::exit(0)
}

/// This process grown: 1 GiB allocated and touched, and 8 threads allocating and
/// freeing at `SCHED_IDLE`; the threads stop when the value is dropped.
fn grow_and_busy() -> impl Drop {
    struct Busy {
        _memory: Vec<u8>,
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }
    impl Drop for Busy {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for thread in self.threads.drain(..) {
                thread.join().unwrap();
            }
        }
    }
    let memory = vec![1u8; 1 << 30];
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..8)
        .map(|seed: usize| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                sockpair_benches::run_idle();
                let mut kept: Vec<Vec<u8>> = Vec::new();
                let mut n = seed;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
                    kept.push(vec![n as u8; 16 + n % 4096]);
                    if kept.len() > 64 {
                        kept.swap_remove(n % kept.len());
                    }
                }
            })
        })
        .collect();
    Busy {
        _memory: memory,
        stop,
        threads,
    }
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
    if std::env::var_os(BIG).is_some() {
        return big_parent();
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
    let argument = vec![7u8; 64];
    let forked = worker::Options::new();
    let mut exec = worker::Options::new();
    exec.exec(true);
    let mut plain = || {
        let status = Command::new(&exe).env(PLAIN, "1").status().unwrap();
        assert!(status.success());
    };
    let mut from_server = || {
        let handle = forked.spawn(echo64, argument.clone()).unwrap();
        assert_eq!(handle.join().unwrap().len(), 64);
    };
    let mut exec_spawn = || {
        let handle = exec.spawn(echo64, argument.clone()).unwrap();
        assert_eq!(handle.join().unwrap().len(), 64);
    };
    let mut theirs = || {
        let handle = procspawn::spawn(argument.clone(), echo64);
        assert_eq!(handle.join().unwrap().len(), 64);
    };
    let times = interleaved(
        SPAWN_ROUNDS,
        SPAWNS_PER_ROUND,
        &mut [&mut plain, &mut from_server, &mut exec_spawn, &mut theirs],
    );
    println!(
        "\nspawn-to-result, 64-byte argument and result ({SPAWN_ROUNDS} rounds x {SPAWNS_PER_ROUND})"
    );
    println!(
        "{:<36} {:>12} {:>16} {:>16}",
        "", "time", "vs procspawn", "vs plain spawn"
    );
    let row = |name: &str, t: Duration| {
        println!(
            "{name:<36} {t:>12?} {:>15.2}x {:>15.2}x",
            t.as_secs_f64() / times[3].as_secs_f64(),
            t.as_secs_f64() / times[0].as_secs_f64()
        )
    };
    row("Command::spawn + wait", times[0]);
    row("sockpair worker::spawn (fork server)", times[1]);
    row("sockpair worker::spawn (exec)", times[2]);
    row("procspawn::spawn", times[3]);

    // Replacing a dead pool worker: one task ends its worker, the next needs a new one.
    let pools = [forked.pool(1).unwrap(), exec.pool(1).unwrap()];
    let replace = |pool: &worker::Pool| {
        assert!(pool.spawn(die, ()).join().is_err());
        assert_eq!(pool.spawn(trivial, 1).join().unwrap(), 2);
    };
    let (first, second) = (&pools[0], &pools[1]);
    let replaced = interleaved(
        SPAWN_ROUNDS,
        SPAWNS_PER_ROUND,
        &mut [&mut || replace(first), &mut || replace(second)],
    );
    drop(pools);
    println!("\nreplacing a dead pool worker (a task that exits it, then the next task)");
    println!(
        "{:<36} {:>12?} {:>15.2}x (vs exec)",
        "fork server",
        replaced[0],
        replaced[0].as_secs_f64() / replaced[1].as_secs_f64()
    );
    println!("{:<36} {:>12?}", "exec", replaced[1]);

    // The same spawns from a large, busy parent: a child of this binary that grows,
    // then spawns when asked, interleaved with the same spawns from this small process.
    let mut big = Command::new(&exe)
        .env(BIG, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_big = big.stdin.take().unwrap();
    let mut from_big = BufReader::new(big.stdout.take().unwrap());
    let mut line = String::new();
    from_big.read_line(&mut line).unwrap(); // grown
    let mut ask_big = |exec: bool| {
        writeln!(to_big, "{} {}", SPAWNS_PER_ROUND, u8::from(exec)).unwrap();
        line.clear();
        from_big.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "done");
    };
    let mut big_server = || ask_big(false);
    let big_times = interleaved(
        SPAWN_ROUNDS,
        1,
        &mut [
            &mut || {
                for _ in 0..SPAWNS_PER_ROUND {
                    from_server();
                }
            },
            &mut big_server,
        ],
    );
    let mut big_exec = || ask_big(true);
    let big_exec_times = interleaved(
        SPAWN_ROUNDS,
        1,
        &mut [
            &mut || {
                for _ in 0..SPAWNS_PER_ROUND {
                    exec_spawn();
                }
            },
            &mut big_exec,
        ],
    );
    drop(to_big);
    assert!(big.wait().unwrap().success());
    println!(
        "\nfrom a process with 1 GiB touched and 8 threads busy in malloc/free, against this small one"
    );
    for (name, [small, large]) in [("fork server", big_times), ("exec", big_exec_times)]
        .map(|(name, times)| (name, [times[0], times[1]]))
    {
        println!(
            "{name:<36} {:>12?} {:>15.2}x (vs {:?} from a small parent)",
            large / SPAWNS_PER_ROUND,
            large.as_secs_f64() / small.as_secs_f64(),
            small / SPAWNS_PER_ROUND
        );
    }

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
