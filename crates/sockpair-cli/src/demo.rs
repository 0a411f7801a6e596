//! `sockpair demo`: the fork-and-talk example of TLPI §57.5, for any socket type.
//!
//! `unsafe` is allowed here for one call: `sockpair::fork`, whose child may only do
//! async-signal-safe work.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

use anyhow::{Context, bail};
use sockpair::{Fork, Socket, Type, exit_immediately, fork};

const TO_CHILD: &[u8] = b"Hello from parent";
const TO_PARENT: &[u8] = b"Hello from child";

/// Creates a pair of type `ty`, forks, and has parent and child exchange one message
/// each way, each printing what it received.
pub fn run(ty: Type) -> anyhow::Result<()> {
    let stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    // SAFETY: `child` does only async-signal-safe work and ends with `_exit`.
    match unsafe { fork(ty) }.context("fork")? {
        Fork::Child { socket } => exit_immediately(child(&socket, &stdout)),
        Fork::Parent { mut child, socket } => {
            drop(stdout);
            socket.send(TO_CHILD).context("send to the child")?;
            let mut buf = [0; 64];
            let n = socket.recv(&mut buf).context("receive from the child")?;
            // The child printed its line before it answered; ours comes after it.
            let status = child.wait().context("wait for the child")?;
            if n == 0 {
                bail!("the demo's child ended without answering ({status})");
            }
            let line = format!("Parent received: {}\n", String::from_utf8_lossy(&buf[..n]));
            crate::write_stdout(line.as_bytes())?;
            match status.code() {
                Some(0) => Ok(()),
                Some(STDOUT_FAILED) => bail!("the demo's child could not write to stdout"),
                _ => bail!("the demo's child failed ({status})"),
            }
        }
    }
}

/// The child's exit code when its line could not be written (it still answers).
const STDOUT_FAILED: i32 = 3;

/// The child's side, async-signal-safe: no allocation, no locks; one `write(2)` for
/// its line. Returns the exit code.
fn child(socket: &Socket, stdout: &File) -> i32 {
    const PREFIX: &[u8] = b"Child received: ";
    const MAX: usize = 64;
    let mut line = [0; PREFIX.len() + MAX + 1];
    line[..PREFIX.len()].copy_from_slice(PREFIX);
    let Ok(n) = socket.recv(&mut line[PREFIX.len()..PREFIX.len() + MAX]) else {
        return 1;
    };
    let end = PREFIX.len() + n;
    line[end] = b'\n';
    let printed = (&*stdout).write_all(&line[..=end]).is_ok();
    match (socket.send(TO_PARENT).is_ok(), printed) {
        (false, _) => 1,
        (true, false) => STDOUT_FAILED,
        (true, true) => 0,
    }
}
