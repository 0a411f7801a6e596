//! Load: many echo children alive at once, each taking many round trips from several
//! parent threads; every reply must be the request, every child must exit cleanly at
//! the end of its stream, and no descriptor may be left.

use std::time::{Duration, Instant};

use sockpair::{Channel, SpawnOptions};

use crate::{Row, Scale, children, serial, util};

#[test]
fn load() {
    let _serial = serial();
    let scale = Scale::now();
    let (count, trips) = scale.pick((20, 500), (200, 10_000));
    let mut row = Row::new("load");
    let before = util::fd_numbers();
    let started = Instant::now();
    let mut spawned = Vec::new();
    for _ in 0..count {
        match SpawnOptions::new()
            .kill_on_drop(true)
            .spawn_program(&children::program("echo"))
        {
            Ok((child, socket)) => spawned.push((child, Channel::<Vec<u8>>::new(socket).unwrap())),
            Err(err) => row.trial(Err(format!("spawn: {err}"))),
        }
    }
    // Four parent threads, each with a quarter of the children, in turn.
    let mut groups: Vec<Vec<_>> = (0..4).map(|_| Vec::new()).collect();
    for (i, child) in spawned.into_iter().enumerate() {
        groups[i % 4].push(child);
    }
    let threads: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(thread, group)| std::thread::spawn(move || round_trips(thread, group, trips)))
        .collect();
    let mut worst = Duration::ZERO;
    for thread in threads {
        let (outcomes, slowest) = thread.join().unwrap();
        worst = worst.max(slowest);
        for outcome in outcomes {
            row.trial(outcome);
        }
    }
    row.trial(crate::same_fds(&before));
    row.worst = format!(
        "{} µs slowest round trip; {count} children x {trips} round trips in {:.1} s",
        worst.as_micros(),
        started.elapsed().as_secs_f64()
    );
    row.finish();
}

type Echo = (sockpair::Child, Channel<Vec<u8>>);

/// `trips` round trips with each child of `group`, interleaved; then each child's end
/// is closed and the child must exit 0. One outcome per child.
fn round_trips(
    thread: usize,
    mut group: Vec<Echo>,
    trips: usize,
) -> (Vec<Result<(), String>>, Duration) {
    let mut failed: Vec<Option<String>> = vec![None; group.len()];
    let mut slowest = Duration::ZERO;
    for trip in 0..trips {
        for (i, (_, channel)) in group.iter_mut().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            let request = format!("{thread}:{i}:{trip}:{}", "x".repeat(trip % 64));
            let started = Instant::now();
            let reply = channel
                .send(request.as_bytes())
                .and_then(|()| channel.recv());
            slowest = slowest.max(started.elapsed());
            match reply {
                Ok(Some(reply)) if reply == request.as_bytes() => {}
                other => failed[i] = Some(format!("child {i}, trip {trip}: {other:?}")),
            }
        }
    }
    let outcomes = group
        .into_iter()
        .zip(failed)
        .map(|((mut child, channel), failed)| {
            drop(channel);
            let status = child.wait().map_err(|err| err.to_string())?;
            match (failed, status.success()) {
                (Some(why), _) => Err(why),
                (None, true) => Ok(()),
                (None, false) => Err(format!("an echo child ended with {status}")),
            }
        })
        .collect();
    (outcomes, slowest)
}
