//! Inheritance: threads spawn children (through sockpair's own path, through std's
//! `Command` with sockpair, and plain std) while other threads create pairs and pass
//! descriptors as fast as they can. Every child lists `/proc/self/fd`: it must hold
//! exactly its stdio and the descriptors it was given, never one that another thread
//! had open at that moment.

use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sockpair::{SpawnOptions, Type, pair};

use crate::children::{self, MODE};
use crate::{Row, Scale, serial};

#[test]
fn inheritance() {
    let _serial = serial();
    let scale = Scale::now();
    let per_thread = scale.pick(40, 800);
    let mut row = Row::new("inheritance");
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || churn(&stop))
        })
        .collect();
    // What this process was given without close-on-exec (by cargo, say: its jobserver)
    // reaches a plain std child too; nothing else may.
    let inheritable: String = crate::util::fd_numbers()
        .into_iter()
        .filter(|&fd| {
            fd > 2
                && crate::util::fd_flags(fd)
                    .is_some_and(|flags| !flags.contains(rustix::io::FdFlags::CLOEXEC))
        })
        .map(|fd| format!(",{fd}"))
        .collect();
    let plain = Arc::new(format!("0,1,2{inheritable}"));
    let spawners: Vec<_> = (0..4)
        .map(|thread| {
            let plain = Arc::clone(&plain);
            std::thread::spawn(move || spawn_and_list(thread, per_thread, &plain))
        })
        .collect();
    let mut most = 0;
    for spawner in spawners {
        for outcome in spawner.join().unwrap() {
            row.trial(outcome.map(|count| most = most.max(count)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let churned: u64 = churners
        .into_iter()
        .map(|churner| churner.join().unwrap())
        .sum();
    row.worst = format!("{most} fds in a child at most; {churned} pairs churned meanwhile");
    row.finish();
}

/// Creates pairs and passes descriptors over them until told to stop; returns how many
/// rounds it made.
fn churn(stop: &AtomicBool) -> u64 {
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        let (a, b) = pair(Type::STREAM).unwrap();
        let (c, d) = pair(Type::DGRAM).unwrap();
        a.send_with_fds(b"x", &[c.as_fd(), d.as_fd()]).unwrap();
        let mut fds = Vec::new();
        b.recv_with_fds(&mut [0; 1], &mut fds).unwrap();
        rounds += 1;
    }
    rounds
}

/// `count` children of this thread, each listing its descriptors; `Ok` is how many it
/// had.
/// `plain` is what a plain std child is expected to list.
fn spawn_and_list(thread: usize, count: usize, plain: &str) -> Vec<Result<usize, String>> {
    (0..count)
        .map(|i| {
            let (how, listed, expected) = match (thread + i) % 3 {
                0 => {
                    let mut program = children::program("list-fds");
                    program.env("UNUSED", "1");
                    let mut cmd = program.to_command();
                    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
                    let (child, _end) = SpawnOptions::new()
                        .spawn(&mut cmd)
                        .map_err(|e| e.to_string())?;
                    ("sockpair spawn(Command)", output(child), "0,1,2,3")
                }
                1 => {
                    let mut cmd = Command::new(std::env::current_exe().unwrap());
                    cmd.env(MODE, "list-fds")
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped());
                    let listed = cmd.output().map_err(|e| e.to_string())?;
                    (
                        "std Command",
                        String::from_utf8_lossy(&listed.stdout).into_owned(),
                        plain,
                    )
                }
                _ => {
                    // sockpair's own path has no pipes: the child's list comes over its end.
                    let (mut child, end) = SpawnOptions::new()
                        .ty(Type::SEQPACKET)
                        .spawn_program(&children::program("list-fds-to-end"))
                        .map_err(|e| e.to_string())?;
                    let mut buf = [0; 256];
                    let n = end.recv(&mut buf).map_err(|e| e.to_string())?;
                    child.wait().map_err(|e| e.to_string())?;
                    (
                        "sockpair spawn_program",
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                        "0,1,2,3",
                    )
                }
            };
            let listed = listed.trim();
            match listed == expected {
                true => Ok(listed.split(',').count()),
                false => Err(format!(
                    "{how}: the child had {listed:?}, expected {expected:?}"
                )),
            }
        })
        .collect()
}

fn output(mut child: sockpair::Child) -> String {
    let listed = std::io::read_to_string(child.stdout.take().unwrap()).unwrap_or_default();
    let _ = child.wait();
    listed
}
