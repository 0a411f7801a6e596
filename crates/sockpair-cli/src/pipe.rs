//! `sockpair pipe`: two shell commands talking over one pair, no relay in between.
//!
//! It behaves as a two-way pipe: when a command exits, its end stops taking data (our
//! copy of it is shut down for reading, drained and closed), so that the other's next
//! write fails with `EPIPE` (and `SIGPIPE`), as on a pipe whose last reader is gone,
//! rather than with the `ECONNRESET` of a socket closed with data unread; the other
//! reads EOF once every process holding the exited command's end has closed it.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::sync::mpsc;

use anyhow::{Context, bail};
use sockpair::{Child, Convention, Program, Socket, SpawnOptions, Type, pair};

use crate::run::exit_code;

/// Runs `a` and `b` with `sh -c`, each with stdin and stdout on one end of a pair of
/// type `ty`. Exits with B's status if B failed, else A's if A failed, else 0; a
/// command killed by `SIGPIPE` has not failed. Each failure is said on stderr, unless
/// a signal is ending us.
pub fn pipe(ty: Type, a: &str, b: &str) -> anyhow::Result<ExitCode> {
    for (label, command) in [("A", a), ("B", b)] {
        if command.trim().is_empty() {
            bail!("command {label} is empty");
        }
    }
    let (end_a, end_b) = pair(ty).context("socketpair")?;
    // Ours, to stop each end taking data when its command exits; with the inode of the
    // other end, whose writers write to it.
    let ours = [
        (
            end_a.try_clone().context("dup")?,
            crate::run::inode(&end_b)?,
        ),
        (
            end_b.try_clone().context("dup")?,
            crate::run::inode(&end_a)?,
        ),
    ];
    // Dropped on an error of ours, a child is killed and reaped.
    let first = start(a, end_a).with_context(|| format!("command A '{a}'"))?;
    let second = start(b, end_b).with_context(|| format!("command B '{b}'"))?;
    let (exits, exited) = mpsc::channel();
    for (index, mut child) in [first, second].into_iter().enumerate() {
        let exits = exits.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = exits.send((index, status));
            drop(child); // reaped already: nothing to kill
        });
    }
    drop(exits);
    let mut ours = ours.map(Some);
    let mut statuses: [Option<ExitStatus>; 2] = [None, None];
    for _ in 0..2 {
        let (index, status) = exited.recv().context("wait for the commands")?;
        statuses[index] =
            Some(status.with_context(|| format!("wait for command {}", label(index)))?);
        if let Some((end, peer)) = ours[index].take() {
            crate::run::refuse_data(&end, peer);
        }
    }
    let [Some(status_a), Some(status_b)] = statuses else {
        bail!("a command's status went missing");
    };
    if crate::descendants::stopping() {
        return Ok(ExitCode::from(exit_code(status_b)));
    }
    let mut code = None;
    for (index, command, status) in [(1, b, status_b), (0, a, status_a)] {
        if status.success() || died_of_sigpipe(status) {
            continue;
        }
        code = code.or(Some(exit_code(status)));
        crate::warn(format_args!(
            "sockpair: command {} '{command}' failed: {}",
            label(index),
            says(status)
        ));
    }
    Ok(code.map_or(ExitCode::SUCCESS, ExitCode::from))
}

/// Whether a command ended by `SIGPIPE`, itself or, as the shell that ran it reports
/// it, with status 128 + 13: a writer whose reader was done, which no shell calls a
/// failure.
fn died_of_sigpipe(status: ExitStatus) -> bool {
    status.signal() == Some(libc::SIGPIPE) || status.code() == Some(128 + libc::SIGPIPE)
}

fn label(index: usize) -> &'static str {
    ["A", "B"][index]
}

/// A status as a shell user reads it: `exit status 3`, `killed by signal 9`.
fn says(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// `sh -c command` with `end` as its stdin and stdout, and nothing else of ours; it dies
/// with us. Our copies of `end` are closed on return, so that only the child holds it.
fn start(command: &str, end: Socket) -> anyhow::Result<Child> {
    let mut program = Program::new("sh");
    program.arg("-c").arg(command);
    let child = SpawnOptions::new()
        .child_fd(0)
        .fd(1, end.try_clone().context("dup")?)
        .convention(Convention::None)
        .die_with_parent(true)
        .kill_on_drop(true)
        .spawn_program_with_end(&program, end)?;
    Ok(child)
}
