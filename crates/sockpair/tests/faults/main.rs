//! The fault suite: sockpair against dying peers, descriptor exhaustion, signals, hostile
//! peers and load, with real processes and the real kernel.
//!
//! Every experiment is bounded in time and prints one row (`fault-row:` name, trials,
//! failures, worst figure), and fails the test if any trial failed. `cargo test` runs
//! the short version; `SOCKPAIR_FAULTS=long` (what `scripts/faults.sh --long` sets) the
//! long one. The rows and what each proves: `docs/reliability.md`.

#[cfg(feature = "tokio")]
mod cancel;
mod children;
mod emfile;
mod hostile;
mod inheritance;
mod load;
mod peer_death;
mod signals;
mod soak;

#[allow(
    dead_code,
    reason = "shared with the main integration tests, which use it all"
)]
#[path = "../it/util.rs"]
mod util;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How much of each experiment to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// A few seconds each, for `cargo test`.
    Short,
    /// `scripts/faults.sh --long`: at least 500 kill points, 100,000 operations.
    Long,
}

impl Scale {
    pub fn now() -> Scale {
        match std::env::var("SOCKPAIR_FAULTS").as_deref() {
            Ok("long") => Scale::Long,
            _ => Scale::Short,
        }
    }

    /// `short` or `long`, as this scale says.
    pub fn pick<T>(self, short: T, long: T) -> T {
        match self {
            Scale::Short => short,
            Scale::Long => long,
        }
    }
}

/// The outcome of one experiment.
#[derive(Debug)]
pub struct Row {
    pub name: &'static str,
    pub trials: u64,
    pub failures: Vec<String>,
    /// The worst figure seen, with its unit (`"412 ms to return"`).
    pub worst: String,
}

impl Row {
    pub fn new(name: &'static str) -> Row {
        Row {
            name,
            trials: 0,
            failures: Vec::new(),
            worst: String::new(),
        }
    }

    /// Counts a trial; `Err` is a failure, described.
    pub fn trial(&mut self, outcome: Result<(), String>) {
        self.trials += 1;
        if let Err(why) = outcome {
            self.failures.push(why);
        }
    }

    /// Prints the row and fails the test if any trial failed.
    pub fn finish(self) {
        println!(
            "fault-row: {}\t{}\t{}\t{}",
            self.name,
            self.trials,
            self.failures.len(),
            self.worst
        );
        assert!(self.trials > 0, "{}: no trials ran", self.name);
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} trials failed; first ones:\n{}",
            self.name,
            self.failures.len(),
            self.trials,
            self.failures[..self.failures.len().min(10)].join("\n")
        );
    }
}

/// The experiments count descriptors and children of this process: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A small deterministic random generator (xorshift64*), seeded per experiment so that a
/// failure can be replayed: the seed is `SOCKPAIR_FAULTS_SEED` or the time.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(name: &str) -> Rng {
        let seed = std::env::var("SOCKPAIR_FAULTS_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{name}: SOCKPAIR_FAULTS_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }

    /// A duration in `0..max`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros() as u64 + 1))
    }
}

/// `Ok` if this process has exactly the descriptors `before` lists.
pub fn same_fds(before: &[i32]) -> Result<(), String> {
    let after = util::fd_numbers();
    match after == before {
        true => Ok(()),
        false => Err(format!("descriptors {before:?} before, {after:?} after")),
    }
}

/// Whether no process with this pid exists any more (not even a zombie).
pub fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
