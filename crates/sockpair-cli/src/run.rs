//! `sockpair run`: a program with one end of a pair at fd N, bridged to our stdio.

use std::ffi::OsString;
use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::Context;
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags};
use sockpair::{Child, Convention, Socket, SpawnOptions, Type};

/// What `sockpair run` was asked to do.
#[derive(Debug)]
pub struct Run {
    pub ty: Type,
    pub fd: i32,
    pub env: String,
    pub systemd: bool,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Exit status after our stdout was closed under us, as if SIGPIPE had ended us.
const STDOUT_CLOSED: u8 = 128 + 13;

/// Spawns the program, copies our stdin to the socket and the socket to our stdout, and
/// returns the child's exit status (128 + the signal if it was killed).
pub fn run(run: Run) -> anyhow::Result<ExitCode> {
    let convention = if run.systemd {
        Convention::Systemd
    } else {
        Convention::Plain { env: run.env }
    };
    let mut cmd = Command::new(&run.program);
    cmd.args(&run.args);
    let (mut child, socket) = SpawnOptions::new()
        .ty(run.ty)
        .child_fd(run.fd)
        .convention(convention)
        .spawn(&mut cmd)
        .with_context(|| format!("spawn '{}'", run.program.to_string_lossy()))?;

    let to_child = socket.try_clone().context("clone the socket")?;
    let ty = run.ty;
    // Never joined: if stdin stays open after the child is gone, we exit without it.
    std::thread::spawn(move || copy_stdin(&to_child, ty));

    match copy_to_stdout(&socket, &child) {
        Ok(Copied::All) => {}
        Ok(Copied::StdoutClosed) => {
            end(&mut child);
            return Ok(ExitCode::from(STDOUT_CLOSED));
        }
        Err(err) => {
            end(&mut child);
            return Err(err);
        }
    }
    let status = child.wait().context("wait for the child")?;
    Ok(ExitCode::from(exit_code(status)))
}

/// Kills and reaps the child: we are leaving, and leave nothing behind.
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The shell's convention: the exit code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}

/// Our stdin to the socket; at EOF, half-close so the child reads EOF too. On a
/// seqpacket or datagram pair each read of stdin becomes one message.
fn copy_stdin(socket: &Socket, ty: Type) {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let sent = if ty == Type::STREAM {
            (&*socket).write_all(&buf[..n])
        } else {
            socket.send(&buf[..n]).map(drop)
        };
        if sent.is_err() {
            return; // the child is gone: nothing more to say to it
        }
    }
    let _ = socket.shutdown(Shutdown::Write);
}

enum Copied {
    /// The child closed its end or exited, and everything it sent was written.
    All,
    /// Our stdout was closed (EPIPE).
    StdoutClosed,
}

/// The socket to our stdout, until the child closes its end (EOF) or exits (a datagram
/// pair has no EOF, so the child's exit, seen on a pidfd, ends the copy too).
fn copy_to_stdout(socket: &Socket, child: &Child) -> anyhow::Result<Copied> {
    let pid = Pid::from_raw(child.id() as i32).context("child pid")?;
    let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).context("pidfd_open")?;
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let mut fds = [
            PollFd::new(socket, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            other => other.context("poll")?,
        };
        let readable = !fds[0].revents().is_empty();
        let exited = !fds[1].revents().is_empty();
        if exited {
            // Take what is still queued, then stop.
            socket.set_nonblocking(true).context("drain the socket")?;
        }
        if readable || exited {
            loop {
                match socket.recv(&mut buf) {
                    Ok(0) if socket_has_eof(socket) => return Ok(Copied::All),
                    Ok(n) => {
                        if let Err(err) = stdout.write_all(&buf[..n]).and_then(|()| stdout.flush())
                        {
                            if err.kind() == ErrorKind::BrokenPipe {
                                return Ok(Copied::StdoutClosed);
                            }
                            return Err(err).context("write to stdout");
                        }
                        if !exited {
                            break;
                        }
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(Copied::All),
                    Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                    // The child died with data of ours unread: it is gone all the same.
                    Err(err) if err.kind() == ErrorKind::ConnectionReset => return Ok(Copied::All),
                    Err(err) => return Err(err).context("read from the child"),
                }
            }
        }
    }
}

/// Whether a 0-byte read was the end: on a datagram pair it is an empty datagram.
fn socket_has_eof(socket: &Socket) -> bool {
    socket.ty().is_ok_and(|ty| ty != Type::DGRAM)
}
