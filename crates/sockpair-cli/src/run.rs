//! `sockpair run`: a program with one end of a pair at fd N, bridged to our stdio.

use std::ffi::OsString;
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::process::{ExitCode, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags};
use sockpair::{Channel, Child, Convention, Program, Receiver, Sender, Socket, SpawnOptions, Type};

/// What `sockpair run` was asked to do.
#[derive(Debug)]
pub struct Run {
    pub ty: Type,
    pub fd: i32,
    pub env: String,
    pub systemd: bool,
    pub framing: Framing,
    pub node: bool,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// How `run` cuts its stdin and the socket into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// Bytes as they come.
    Raw,
    /// One line = one message (newline-delimited on a stream).
    Lines,
    /// One line = one message, as a 4-byte big-endian length frame on a stream.
    Length,
}

/// Exit status after our stdout was closed under us, as if SIGPIPE had ended us.
const STDOUT_CLOSED: u8 = 128 + 13;

/// Spawns the program, copies our stdin to the socket and the socket to our stdout, and
/// returns the child's exit status (128 + the signal if it was killed).
pub fn run(run: Run) -> anyhow::Result<ExitCode> {
    let convention = if run.systemd {
        Convention::Systemd
    } else if run.node {
        Convention::Node
    } else {
        Convention::Plain { env: run.env }
    };
    let mut program = Program::new(&run.program);
    program.args(&run.args);
    // Errors name the program already. Killing sockpair must not leave the program
    // behind, nor must an error of ours.
    let (mut child, socket) = SpawnOptions::new()
        .ty(run.ty)
        .child_fd(run.fd)
        .convention(convention)
        .die_with_parent(true)
        .kill_on_drop(true)
        .spawn_program(&program)?;

    // On seqpacket and dgram pairs, lines and length frames are one record each.
    let framing = match (run.node, run.framing) {
        (true, _) | (false, Framing::Lines) => Some(sockpair::Framing::Lines),
        (false, Framing::Length) => Some(sockpair::Framing::Length),
        (false, Framing::Raw) => None,
    };
    let copied = match framing {
        None => {
            let to_child = socket.try_clone().context("clone the socket")?;
            let ty = run.ty;
            // Never joined: if stdin stays open after the child is gone, we exit without it.
            std::thread::spawn(move || copy_stdin(&to_child, ty));
            copy_to_stdout(&socket, &mut child)
        }
        Some(framing) => {
            let channel: Channel<Vec<u8>> = match run.ty {
                Type::STREAM => Channel::with_framing(socket, framing)?,
                _ => Channel::new(socket)?,
            };
            let (to_child, from_child) = channel.split();
            let (errors, stdin_error) = mpsc::channel();
            let node = run.node;
            std::thread::spawn(move || send_lines(to_child, node, &errors));
            copy_messages_to_stdout(from_child, &mut child, &stdin_error)
        }
    };
    // On our way out early, dropping the child kills and reaps it.
    match copied? {
        Copied::All => {}
        Copied::StdoutClosed => return Ok(ExitCode::from(STDOUT_CLOSED)),
    }
    let status = child.wait().context("wait for the child")?;
    Ok(ExitCode::from(exit_code(status)))
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
/// pair has no EOF, so the child's exit, seen on a pidfd, ends the copy too). Before
/// Linux 5.3 (no `pidfd_open`), or with no descriptor free for one, the exit is checked
/// with `waitpid(WNOHANG)` every tick, as `Child::wait_timeout` does.
fn copy_to_stdout(socket: &Socket, child: &mut Child) -> anyhow::Result<Copied> {
    let pid = Pid::from_raw(child.id() as i32).context("child pid")?;
    let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(pidfd) => Some(pidfd),
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::MFILE | rustix::io::Errno::NFILE) => None,
        Err(err) => return Err(err).context("pidfd_open"),
    };
    let tick = Timespec::try_from(TICK).expect("a tick fits a timespec");
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0; 64 * 1024];
    loop {
        // The pidfd second, if there is one.
        let watched = pidfd.as_ref().map_or(socket.as_fd(), AsFd::as_fd);
        let mut fds = [
            PollFd::new(socket, PollFlags::IN),
            PollFd::new(&watched, PollFlags::IN),
        ];
        let (polled, timeout) = match pidfd {
            Some(_) => (&mut fds[..], None),
            None => (&mut fds[..1], Some(&tick)),
        };
        match rustix::event::poll(polled, timeout) {
            Err(rustix::io::Errno::INTR) => continue,
            other => other.context("poll")?,
        };
        let readable = !polled[0].revents().is_empty();
        let exited = match polled.get(1) {
            Some(pidfd) => !pidfd.revents().is_empty(),
            None => child.try_wait().context("check on the child")?.is_some(),
        };
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

/// Our stdin, one line per message; with `node`, each line must be one JSON value.
/// Reports a bad line on `errors` and stops (nothing of it is sent); at EOF half-closes.
fn send_lines(mut channel: Sender<Vec<u8>>, node: bool, errors: &mpsc::Sender<anyhow::Error>) {
    for (index, line) in io::stdin().lock().split(b'\n').enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(err) => {
                let _ = errors.send(anyhow!(err).context("read stdin"));
                return;
            }
        };
        if node && let Err(why) = crate::node_line::check(&line) {
            let _ = errors.send(anyhow!(
                "stdin line {}: {why}; nothing of it was sent",
                index + 1
            ));
            return;
        }
        if channel.send(&line).is_err() {
            return; // the child is gone
        }
    }
    let _ = channel.socket().shutdown(Shutdown::Write);
}

/// How often the message copy looks at the child and at our stdin thread.
const TICK: Duration = Duration::from_millis(100);

/// Messages from the child, one per stdout line, until the end of the stream or the
/// child's exit; stops with the stdin thread's error if it reports one.
fn copy_messages_to_stdout(
    mut channel: Receiver<Vec<u8>>,
    child: &mut Child,
    stdin_error: &mpsc::Receiver<anyhow::Error>,
) -> anyhow::Result<Copied> {
    channel.read_timeout(Some(TICK));
    let mut stdout = io::stdout().lock();
    let mut exited = false;
    loop {
        if let Ok(err) = stdin_error.try_recv() {
            return Err(err);
        }
        match channel.recv() {
            Ok(Some(message)) => {
                let written = stdout
                    .write_all(&message)
                    .and_then(|()| stdout.write_all(b"\n"));
                if let Err(err) = written.and_then(|()| stdout.flush()) {
                    if err.kind() == ErrorKind::BrokenPipe {
                        return Ok(Copied::StdoutClosed);
                    }
                    return Err(err).context("write to stdout");
                }
            }
            Ok(None) => return Ok(Copied::All),
            Err(err) if err.kind() == sockpair::ErrorKind::TimedOut => {
                if exited {
                    return Ok(Copied::All); // gone, and nothing more came within a tick
                }
                exited = child.try_wait().context("check on the child")?.is_some();
            }
            Err(err) => {
                let err = io::Error::from(err);
                if err.kind() == ErrorKind::ConnectionReset {
                    return Ok(Copied::All);
                }
                return Err(err).context("receive from the child");
            }
        }
    }
}

/// Whether a 0-byte read was the end: on a datagram pair it is an empty datagram.
fn socket_has_eof(socket: &Socket) -> bool {
    socket.ty().is_ok_and(|ty| ty != Type::DGRAM)
}
