//! `sockpair bench`: round-trip latency and one-way throughput between this process and
//! a child, for sockpair's `Socket`, `Channel` and `AsyncChannel` beside raw libc calls
//! on a socketpair, tokio-util's framed `UnixStream` and a pair of pipes, interleaved in
//! one run so that the ratios hold on a noisy machine. Pinned to one CPU by default.

pub mod child;
mod report;
mod transport;

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sockpair::{Program, Socket, SpawnOptions, Type};

pub use child::child_main;
use transport::{Impl, Transports};

/// What `sockpair bench` was asked to do.
#[derive(Debug)]
pub struct Bench {
    pub ty: Type,
    pub sizes: Vec<usize>,
    pub duration: f64,
    pub pin: bool,
    pub json: bool,
    pub plot: Option<PathBuf>,
}

/// Message sizes measured when none are given.
pub const DEFAULT_SIZES: [usize; 4] = [1, 64, 4096, 65536];

/// The largest message for seqpacket and dgram pairs: one record each, and a record
/// holds a little under the socket buffer (about 208 KiB by default).
const MAX_RECORD: usize = 65536;

/// Round trips timed per size before the run, to size its phases.
const WARM_UP: usize = 20;

/// One measured row.
#[derive(Debug)]
pub struct Row {
    pub imp: Impl,
    pub size: usize,
    pub rtt_ns_p50: u64,
    pub rtt_ns_p99: u64,
    pub throughput: f64,
}

/// How many rounds, and how many operations per phase of each size: sent to the child so
/// that both sides follow the same schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub rounds: usize,
    pub sizes: Vec<usize>,
    pub round_trips: Vec<usize>,
    pub burst: Vec<usize>,
}

impl Schedule {
    fn encode(&self) -> String {
        let list = |values: &[usize]| {
            values
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{} {} {} {}",
            self.rounds,
            list(&self.sizes),
            list(&self.round_trips),
            list(&self.burst)
        )
    }

    fn decode(text: &str) -> anyhow::Result<Schedule> {
        let parts: Vec<&str> = text.split(' ').collect();
        let list = |part: &str| -> anyhow::Result<Vec<usize>> {
            part.split(',')
                .map(|n| n.parse().context("schedule"))
                .collect()
        };
        let [rounds, sizes, round_trips, burst] = parts[..] else {
            bail!("bad schedule {text:?}");
        };
        Ok(Schedule {
            rounds: rounds.parse()?,
            sizes: list(sizes)?,
            round_trips: list(round_trips)?,
            burst: list(burst)?,
        })
    }
}

/// Runs the benchmark and prints its report.
pub fn bench(args: Bench) -> anyhow::Result<ExitCode> {
    if args.ty != Type::STREAM && args.sizes.iter().any(|&size| size > MAX_RECORD) {
        bail!(
            "sizes above {MAX_RECORD} bytes need --type stream: one seqpacket or dgram record holds about 208 KiB"
        );
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be more than 0 and at most 3600 seconds");
    }
    // Opened before anything starts, so an unwritable path fails first.
    let plot = match &args.plot {
        Some(path) => {
            Some(File::create(path).with_context(|| format!("create {}", path.display()))?)
        }
        None => None,
    };
    let pinned = match args.pin {
        true => Some(pin_to_one_cpu().context("pin to one CPU (--no-pin to run without)")?),
        false => None,
    };
    let mut program = Program::new(std::env::current_exe().context("find our own binary")?);
    program.arg(child::MODE);
    let (mut child, control) = SpawnOptions::new()
        .kill_on_drop(true) // should measuring fail
        .spawn_program(&program)
        .context("start the benchmark's child")?;
    let began = Instant::now();
    let result = measure(&args, &control);
    let conditions = report::Conditions {
        pinned,
        duration: args.duration,
        took: began.elapsed().as_secs_f64(),
    };
    drop(control); // the child exits when the control socket closes
    if child.wait_timeout(Duration::from_secs(10))?.is_none() {
        child.kill()?;
        child.wait()?;
    }
    let rows = result?;
    let text = match args.json {
        true => format!("{}\n", report::json(args.ty, &rows)),
        false => report::table(args.ty, &rows, &conditions),
    };
    crate::write_stdout(text.as_bytes())?;
    if let (Some(mut file), Some(path)) = (plot, &args.plot) {
        file.write_all(report::svg(args.ty, &rows, &conditions).as_bytes())
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Hands the child its transports, sizes the run, runs it, and reduces the samples.
fn measure(args: &Bench, control: &Socket) -> anyhow::Result<Vec<Row>> {
    let largest = args.sizes.iter().copied().max().unwrap_or(1);
    let (mut transports, child_ends) = Transports::new(args.ty, largest)?;
    let borrowed: Vec<_> = child_ends.iter().map(|fd| fd.as_fd()).collect();
    let sizes = args
        .sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    control
        .send_with_fds(sizes.as_bytes(), &borrowed)
        .context("hand the child its ends")?;
    drop(child_ends);

    // A first round sized from the warm-up, timed; then as many more rounds of the same
    // size as fill the rest of `--duration` (the schedules the child follows in turn).
    let began = Instant::now();
    let first = calibrate(args, &mut transports)?;
    let impls = Impl::for_type(args.ty);
    let cells = first.sizes.len() * impls.len();
    let mut samples = Samples {
        round_trips: vec![Vec::new(); cells],
        throughputs: vec![Vec::new(); cells],
    };
    let progress = std::io::stderr().is_terminal();
    let round = Instant::now();
    run_schedule(control, &mut transports, &first, &impls, &mut samples, None)?;
    let per_round = round.elapsed().as_secs_f64().max(1e-6);
    let left = args.duration - began.elapsed().as_secs_f64();
    let least = if args.duration < 2.0 { 2 } else { 4 };
    let rest = Schedule {
        rounds: ((left / per_round).round().max(0.0) as usize).clamp(least, MOST_ROUNDS),
        ..first.clone()
    };
    run_schedule(
        control,
        &mut transports,
        &rest,
        &impls,
        &mut samples,
        progress.then_some(()),
    )?;
    if progress {
        let _ = writeln!(std::io::stderr());
    }
    let schedule = rest;
    let Samples {
        mut round_trips,
        mut throughputs,
    } = samples;
    let mut rows = Vec::with_capacity(cells);
    for (s, &size) in schedule.sizes.iter().enumerate() {
        for (i, &imp) in impls.iter().enumerate() {
            let cell = s * impls.len() + i;
            let samples = &mut round_trips[cell];
            if samples.is_empty() {
                continue; // not measured at this size
            }
            samples.sort_unstable();
            throughputs[cell].sort_by(f64::total_cmp);
            rows.push(Row {
                imp,
                size,
                rtt_ns_p50: samples[samples.len() / 2],
                rtt_ns_p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
                throughput: throughputs[cell][throughputs[cell].len() / 2],
            });
        }
    }
    Ok(rows)
}

/// The most rounds one run takes, however short its rounds are.
const MOST_ROUNDS: usize = 200;

/// What the rounds measured, per (size, transport) cell.
struct Samples {
    round_trips: Vec<Vec<u64>>,
    throughputs: Vec<Vec<f64>>,
}

/// Sends `schedule` to the child and runs its rounds, adding to `samples`; draws a
/// progress bar on stderr if `progress`.
fn run_schedule(
    control: &Socket,
    transports: &mut Transports,
    schedule: &Schedule,
    impls: &[Impl],
    samples: &mut Samples,
    progress: Option<()>,
) -> anyhow::Result<()> {
    control
        .send(schedule.encode().as_bytes())
        .context("send the schedule")?;
    for round in 0..schedule.rounds {
        for (s, &size) in schedule.sizes.iter().enumerate() {
            transports.set_size(size)?;
            for (i, &imp) in impls.iter().enumerate() {
                if !imp.measures(size) {
                    continue;
                }
                let cell = s * impls.len() + i;
                transports.timed_round_trips(
                    imp,
                    schedule.round_trips[s],
                    &mut samples.round_trips[cell],
                )?;
                let start = Instant::now();
                transports.burst(imp, schedule.burst[s])?;
                let seconds = start.elapsed().as_secs_f64();
                samples.throughputs[cell].push((size * schedule.burst[s]) as f64 / seconds);
            }
            if progress.is_some() {
                let done = (round * schedule.sizes.len() + s + 1) as f64
                    / (schedule.rounds * schedule.sizes.len()) as f64;
                let bar = (done * 30.0) as usize;
                // Progress only: a stderr that cannot take it is no error.
                let _ = write!(
                    std::io::stderr(),
                    "\rsockpair bench [{}{}] {:>3.0}%",
                    "=".repeat(bar),
                    " ".repeat(30 - bar),
                    done * 100.0
                );
            }
        }
    }
    Ok(())
}

/// Times a few libc round trips per size (the child echoes them as part of its
/// warm-up) and sizes each phase so that the whole run takes about `--duration`.
fn calibrate(args: &Bench, transports: &mut Transports) -> anyhow::Result<Schedule> {
    let mut estimates = Vec::new();
    for &size in &args.sizes {
        transports.set_size(size)?;
        let start = Instant::now();
        for _ in 0..WARM_UP {
            transports.round_trip(Impl::Libc)?;
        }
        estimates.push(start.elapsed().as_secs_f64() / WARM_UP as f64);
    }
    // Counts for rounds of about a tenth of the run (a fifth, for short runs): the
    // first round is timed, and the rest of the run sized from it.
    let rounds = if args.duration < 2.0 { 5 } else { 10 };
    let phases = rounds * args.sizes.len() * Impl::for_type(args.ty).len() * 2;
    let budget = args.duration / phases as f64;
    let count = |estimate: f64, most: usize| ((budget / estimate) as usize).clamp(5, most);
    Ok(Schedule {
        rounds: 1,
        sizes: args.sizes.clone(),
        round_trips: estimates.iter().map(|&e| count(e, 200_000)).collect(),
        // A one-way message costs at most about a round trip.
        burst: estimates.iter().map(|&e| count(e, 400_000)).collect(),
    })
}

/// Pins this process, and so the child it starts, to the first CPU it may use.
fn pin_to_one_cpu() -> anyhow::Result<usize> {
    let allowed = rustix::thread::sched_getaffinity(None)?;
    let cpu = (0..rustix::thread::CpuSet::MAX_CPU)
        .find(|&cpu| allowed.is_set(cpu))
        .context("no CPU allowed")?;
    let mut one = rustix::thread::CpuSet::new();
    one.set(cpu);
    rustix::thread::sched_setaffinity(None, &one)?;
    Ok(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_survives_its_text_form() {
        let schedule = Schedule {
            rounds: 3,
            sizes: vec![1, 65536],
            round_trips: vec![100, 7],
            burst: vec![9, 5],
        };
        assert_eq!(Schedule::decode(&schedule.encode()).unwrap(), schedule);
        assert!(Schedule::decode("3 1,2").is_err());
    }
}
