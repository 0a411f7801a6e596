//! Shared pieces of sockpair's benchmarks: pinning, interleaved rounds, medians.
//! Each benchmark in `benches/` prints ratios against a baseline measured in the same run.

use std::time::{Duration, Instant};

/// Pins this process (and so the children it starts) to one CPU, so that both sides of
/// every measurement share it: on small virtual machines a cross-CPU wake-up costs more
/// than the work measured. Returns the CPU, or `None` if pinning failed.
pub fn pin_to_one_cpu() -> Option<usize> {
    let current = rustix::thread::sched_getaffinity(None).ok()?;
    let cpu = (0..rustix::thread::CpuSet::MAX_CPU).find(|&cpu| current.is_set(cpu))?;
    let mut one = rustix::thread::CpuSet::new();
    one.set(cpu);
    rustix::thread::sched_setaffinity(None, &one).ok()?;
    Some(cpu)
}

/// The median of `samples` (which it sorts).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Runs each candidate `per_round` times per round, the candidates interleaved round by
/// round so that a noisy moment hits all of them alike, and returns for each the median
/// over `rounds` rounds of its mean time per run.
pub fn interleaved(
    rounds: usize,
    per_round: u32,
    candidates: &mut [&mut dyn FnMut()],
) -> Vec<Duration> {
    let mut samples = vec![Vec::with_capacity(rounds); candidates.len()];
    for _ in 0..rounds {
        for (candidate, samples) in candidates.iter_mut().zip(&mut samples) {
            let start = Instant::now();
            for _ in 0..per_round {
                candidate();
            }
            samples.push(start.elapsed() / per_round);
        }
    }
    samples.iter_mut().map(|s| median(s)).collect()
}
