//! `sockpair pipe`: two shell commands talking over one pair, no relay in between.

use std::process::ExitCode;

use anyhow::{Context, bail};
use sockpair::{Child, Convention, Program, Socket, SpawnOptions, Type, pair};

use crate::run::exit_code;

/// Runs `a` and `b` with `sh -c`, each with stdin and stdout on one end of a pair of
/// type `ty`. Exits with 0 if both succeed; otherwise says which failed on stderr and
/// exits with the first failure's status.
pub fn pipe(ty: Type, a: &str, b: &str) -> anyhow::Result<ExitCode> {
    for (label, command) in [("A", a), ("B", b)] {
        if command.trim().is_empty() {
            bail!("command {label} is empty");
        }
    }
    let (end_a, end_b) = pair(ty).context("socketpair")?;
    // Dropped on an error of ours, a child is killed and reaped.
    let mut first = start(a, end_a).with_context(|| format!("command A '{a}'"))?;
    let mut second = start(b, end_b).with_context(|| format!("command B '{b}'"))?;
    let status_a = first.wait().context("wait for command A")?;
    let status_b = second.wait().context("wait for command B")?;
    let mut failed = None;
    for (label, command, status) in [("A", a, status_a), ("B", b, status_b)] {
        if !status.success() {
            crate::warn(format_args!(
                "sockpair: command {label} '{command}' failed: {status}"
            ));
            failed = failed.or(Some(exit_code(status)));
        }
    }
    Ok(failed.map_or(ExitCode::SUCCESS, ExitCode::from))
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
