//! `sockpair pipe`: two shell commands talking over one pair, no relay in between.

use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use sockpair::{Type, pair};

use crate::run::exit_code;

/// Runs `a` and `b` with `sh -c`, each with stdin and stdout on one end of a pair of
/// type `ty`. Exits with 0 if both succeed; otherwise says which failed on stderr and
/// exits with the first failure's status.
pub fn pipe(ty: Type, a: &str, b: &str) -> anyhow::Result<ExitCode> {
    let (end_a, end_b) = pair(ty).context("socketpair")?;
    let mut first =
        start(a, end_a.into()).with_context(|| format!("spawn sh for command A '{a}'"))?;
    let mut second = match start(b, end_b.into()) {
        Ok(child) => child,
        Err(err) => {
            let _ = first.kill();
            let _ = first.wait();
            return Err(err).with_context(|| format!("spawn sh for command B '{b}'"));
        }
    };
    let status_a = first.wait().context("wait for command A")?;
    let status_b = second.wait().context("wait for command B")?;
    let mut failed = None;
    for (label, command, status) in [("A", a, status_a), ("B", b, status_b)] {
        if !status.success() {
            eprintln!("sockpair: command {label} '{command}' failed: {status}");
            failed = failed.or(Some(exit_code(status)));
        }
    }
    Ok(failed.map_or(ExitCode::SUCCESS, ExitCode::from))
}

/// `sh -c command` with stdin and stdout on `end`; the `Command`, and with it our copies
/// of `end`, is dropped on return, so that only the child holds them.
fn start(command: &str, end: OwnedFd) -> anyhow::Result<Child> {
    if command.trim().is_empty() {
        bail!("empty command");
    }
    let stdout = end.try_clone().context("dup")?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::from(end))
        .stdout(Stdio::from(stdout));
    crate::sys::die_with_parent(&mut cmd);
    Ok(cmd.spawn()?)
}
