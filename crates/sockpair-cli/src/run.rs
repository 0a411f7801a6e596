//! `sockpair run`: a program with one end of a pair at fd N, bridged to our stdio.
//!
//! It behaves as the program would in a shell pipeline, the pair in the pipe's place:
//! - one reader per byte of stdin ([`StdinOwner`]): the relay (the default, the
//!   program's own stdin is then `/dev/null`), the program (`--stdin child`), or nobody;
//! - the output ends when the end is done: at EOF on our end, that is once every process
//!   holding the program's end has closed it (background processes that kept it too, as
//!   a shell waits for every writer of a pipe), and the program has exited; a datagram
//!   pair has no EOF, so there the program's exit ends it;
//! - when our stdout closes (`| head -1`), our end stops reading, so the program's next
//!   write fails with `EPIPE` (and `SIGPIPE`) as it would on a pipe, and its status is
//!   ours.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::process::{ExitCode, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
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
    pub stdin: StdinOwner,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// How `run` cuts its stdin and the socket into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// Bytes as they come, both ways.
    Raw,
    /// One line = one message (newline-delimited on a stream; one record each on
    /// seqpacket and dgram). An unfinished last line is a line.
    Lines,
    /// One stdin line = one 4-byte big-endian length frame (Python's
    /// Connection.send_bytes); one frame = one stdout line.
    Length,
}

/// Who reads sockpair's stdin: never two at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StdinOwner {
    /// sockpair sends its stdin to the program's end; the program's stdin is /dev/null.
    Relay,
    /// The program reads sockpair's stdin (a terminal, say); nothing comes through the
    /// pair but EOF.
    Child,
    /// Nobody: the program's stdin is /dev/null and the pair carries only EOF.
    Null,
}

/// Spawns the program, copies our stdin to the socket and the socket to our stdout, and
/// returns the program's exit status (128 + the signal if it was killed).
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
    let mut options = SpawnOptions::new();
    // Killing sockpair must not leave the program behind, nor must an error of ours.
    options
        .ty(run.ty)
        .child_fd(run.fd)
        .convention(convention)
        .die_with_parent(true)
        .kill_on_drop(true);
    if run.stdin != StdinOwner::Child {
        options.fd(0, File::open("/dev/null").context("open /dev/null")?);
    }
    // Errors name the program already.
    let (socket, child_end) = sockpair::pair(run.ty).context("socketpair")?;
    let peer = inode(&child_end)?;
    let mut child = options.spawn_program_with_end(&program, child_end)?;

    // On seqpacket and dgram pairs, lines and length frames are one record each.
    let framing = match (run.node, run.framing) {
        (true, _) | (false, Framing::Lines) => Some(sockpair::Framing::Lines),
        (false, Framing::Length) => Some(sockpair::Framing::Length),
        (false, Framing::Raw) => None,
    };
    let relay_stdin = run.stdin == StdinOwner::Relay;
    if !relay_stdin {
        let _ = socket.shutdown(Shutdown::Write); // EOF for a program that reads its end
    }
    // The stdin thread's error (a line Node would not take) ends the run.
    let (errors, stdin_error) = mpsc::channel();
    let copied = match (framing, run.ty) {
        // Lines on a stream are bytes: relayed as they come, so that every line the
        // program writes comes out whatever the timing, an unfinished last one too.
        (None, _) | (Some(sockpair::Framing::Lines), Type::STREAM) => {
            if relay_stdin {
                let to_child = socket.try_clone().context("clone the socket")?;
                let (ty, node) = (run.ty, run.node);
                // Never joined: if stdin stays open after the end is done, we go without it.
                match framing {
                    None => std::thread::spawn(move || copy_stdin(&to_child, ty)),
                    Some(framing) => {
                        let (sender, _) =
                            Channel::<Vec<u8>>::with_framing(to_child, framing)?.split();
                        std::thread::spawn(move || send_lines(sender, node, &errors))
                    }
                };
            }
            copy_to_stdout(&socket, &mut child, framing.is_some(), &stdin_error)
        }
        (Some(framing), ty) => {
            let channel: Channel<Vec<u8>> = match ty {
                Type::STREAM => Channel::with_framing(socket, framing)?,
                _ => Channel::new(socket)?,
            };
            let (to_child, from_child) = channel.split();
            if relay_stdin {
                let node = run.node;
                std::thread::spawn(move || send_lines(to_child, node, &errors));
            } else {
                drop(to_child); // shuts down writing: EOF for the program
            }
            copy_messages_to_stdout(from_child, &mut child, &stdin_error)
        }
    };
    // On our way out early, dropping the child kills and reaps it.
    match copied? {
        Copied::All => {}
        // Its next write fails as on a pipe whose reader is gone; its status is ours.
        Copied::StdoutClosed(socket) => refuse_data(&socket, peer),
    }
    let status = child.wait().context("wait for the child")?;
    Ok(ExitCode::from(exit_code(status)))
}

/// Makes `end` take no more data, as a pipe whose last reader is gone: a writer to its
/// peer (the socket with inode `peer`) gets `SIGPIPE`, and `EPIPE` from a write.
///
/// A socket is not a pipe here: a writer asleep in the kernel's wait for room when the
/// end shuts down wakes with a bare `EPIPE` (`yes` would say "Broken pipe" and exit 1),
/// where a pipe's writer gets `SIGPIPE`. So the shutdown waits until the writers are
/// either asleep in that wait (the queue full: each of our descendants found there,
/// `blocked_writers`, gets `SIGPIPE` from us, as the kernel gives a pipe's) or idle
/// (the queue has not moved for [`SETTLED`] checks), for at most [`MOST_CHECKS`]; an
/// idle writer's next write then raises `SIGPIPE` itself. What is queued is dropped
/// after the shutdown, so that closing the end resets nobody (`ECONNRESET`).
pub fn refuse_data(end: &Socket, peer: u64) {
    let mut last = None;
    let mut still = 0;
    for _ in 0..MOST_CHECKS {
        let blocked = blocked_writers(peer);
        for &pid in &blocked {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::PIPE);
            }
        }
        let queued = rustix::io::ioctl_fionread(end).ok();
        still = match blocked.is_empty() && queued == last {
            true => still + 1,
            false => 0,
        };
        if still == SETTLED {
            break;
        }
        last = queued;
        std::thread::sleep(CHECK_EVERY);
    }
    let _ = end.shutdown(Shutdown::Read);
    if end.set_nonblocking(true).is_ok() {
        let mut buf = vec![0; 256 * 1024];
        while matches!(end.recv(&mut buf), Ok(n) if n > 0) {}
    }
}

/// How often [`refuse_data`] looks at the writers, and how many looks at most.
const CHECK_EVERY: Duration = Duration::from_millis(2);
const MOST_CHECKS: usize = 250;

/// How many looks in a row without a change make the writers idle.
const SETTLED: usize = 3;

/// Our descendants asleep in a write to the socket with inode `peer`: in the kernel's
/// wait for room (`/proc/PID/wchan`), in a write, writev, sendto or sendmsg
/// (`/proc/PID/syscall`) on a descriptor that is that socket.
fn blocked_writers(peer: u64) -> Vec<i32> {
    let writes = [
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
    ];
    let me = rustix::process::getpid();
    let target = format!("socket:[{peer}]");
    crate::descendants::descendants(me)
        .into_iter()
        .filter(|pid| {
            let proc = format!("/proc/{pid}");
            let waiting = std::fs::read_to_string(format!("{proc}/wchan"))
                .is_ok_and(|wchan| wchan.trim() == "sock_alloc_send_pskb");
            let call = std::fs::read_to_string(format!("{proc}/syscall")).unwrap_or_default();
            let mut fields = call.split_whitespace();
            let number = fields.next().and_then(|n| n.parse::<i64>().ok());
            let fd = fields
                .next()
                .and_then(|fd| i64::from_str_radix(fd.trim_start_matches("0x"), 16).ok());
            waiting
                && number.is_some_and(|n| writes.contains(&n))
                && fd.is_some_and(|fd| {
                    std::fs::read_link(format!("{proc}/fd/{fd}"))
                        .is_ok_and(|link| link.as_os_str() == target.as_str())
                })
        })
        .collect()
}

/// The inode of a socket, as `/proc/PID/fd` names it (`socket:[INODE]`).
pub fn inode(socket: &Socket) -> anyhow::Result<u64> {
    Ok(rustix::fs::fstat(socket).context("fstat")?.st_ino)
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

/// How the copy to stdout ended.
enum Copied {
    /// The end is done (EOF; on a datagram pair, the child exited) and everything it
    /// sent was written.
    All,
    /// Our stdout was closed (EPIPE); the socket, to stop reading.
    StdoutClosed(Socket),
}

/// Writes `bytes` to our stdout and flushes; `Ok(false)` if stdout is a closed pipe.
fn write_out(stdout: &mut impl Write, bytes: &[&[u8]]) -> anyhow::Result<bool> {
    let written = bytes
        .iter()
        .try_for_each(|part| stdout.write_all(part))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err).context("write to stdout"),
    }
}

/// The socket to our stdout until the end is done: EOF (every holder of the child's end
/// closed it), or on a datagram pair, which has no EOF, the child's exit (seen on a
/// pidfd; before Linux 5.3, or with no descriptor free for one, `waitpid(WNOHANG)` every
/// tick, as `Child::wait_timeout` does). With `lines`, an unfinished last line is ended
/// with a newline.
fn copy_to_stdout(
    socket: &Socket,
    child: &mut Child,
    lines: bool,
    stdin_error: &mpsc::Receiver<anyhow::Error>,
) -> anyhow::Result<Copied> {
    let datagram = socket.ty().context("socket type")? == Type::DGRAM;
    let pid = Pid::from_raw(child.id() as i32).context("child pid")?;
    let pidfd = match datagram {
        false => None,
        true => match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(pidfd) => Some(pidfd),
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::MFILE | rustix::io::Errno::NFILE) => {
                None
            }
            Err(err) => return Err(err).context("pidfd_open"),
        },
    };
    let tick = Timespec::try_from(TICK).expect("a tick fits a timespec");
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0; 64 * 1024];
    let mut last = b'\n';
    let finish = |stdout: &mut io::StdoutLock<'_>, last: u8| -> anyhow::Result<Copied> {
        if lines && last != b'\n' && !write_out(stdout, &[b"\n"])? {
            return Ok(Copied::StdoutClosed(socket.try_clone()?));
        }
        Ok(Copied::All)
    };
    loop {
        let watched = pidfd.as_ref().map_or(socket.as_fd(), AsFd::as_fd);
        let mut fds = [
            PollFd::new(socket, PollFlags::IN),
            PollFd::new(&watched, PollFlags::IN),
        ];
        // A tick at most, to look at the stdin thread (and without a pidfd, the child).
        let polled = match (datagram, &pidfd) {
            (true, Some(_)) => &mut fds[..],
            _ => &mut fds[..1],
        };
        match rustix::event::poll(polled, Some(&tick)) {
            Err(rustix::io::Errno::INTR) => continue,
            other => other.context("poll")?,
        };
        if let Ok(err) = stdin_error.try_recv() {
            return Err(err);
        }
        let readable = !polled[0].revents().is_empty();
        let exited = datagram
            && match polled.get(1) {
                Some(pidfd) => !pidfd.revents().is_empty(),
                None => child.try_wait().context("check on the child")?.is_some(),
            };
        if exited {
            // Take what is still queued, then stop.
            socket.set_nonblocking(true).context("drain the socket")?;
        }
        if !readable && !exited {
            continue;
        }
        loop {
            match socket.recv(&mut buf) {
                Ok(0) if !datagram => return finish(&mut stdout, last),
                Ok(n) => {
                    if !write_out(&mut stdout, &[&buf[..n]])? {
                        return Ok(Copied::StdoutClosed(socket.try_clone()?));
                    }
                    last = buf[n.max(1) - 1];
                    if !exited {
                        break;
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    return finish(&mut stdout, last);
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                // The child's side closed with data of ours unread: it is done all the same.
                Err(err) if err.kind() == ErrorKind::ConnectionReset => {
                    return finish(&mut stdout, last);
                }
                Err(err) => return Err(err).context("read from the child"),
            }
        }
    }
}

/// Our stdin, one line per message; with `node`, each line must be one JSON value.
/// Reports a bad line on `errors` and stops (nothing of it is sent); at EOF half-closes.
fn send_lines(mut channel: Sender<Vec<u8>>, node: bool, errors: &mpsc::Sender<anyhow::Error>) {
    let report = |err: anyhow::Error| drop(errors.send(err));
    for (index, line) in io::stdin().lock().split(b'\n').enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(err) => return report(anyhow!(err).context("read stdin")),
        };
        if node && let Err(why) = crate::node_line::check(&line) {
            return report(anyhow!(
                "stdin line {}: {why}; nothing of it was sent",
                index + 1
            ));
        }
        if channel.send(&line).is_err() {
            return; // the child is gone
        }
    }
    let _ = channel.socket().shutdown(Shutdown::Write);
}

/// How often the message copy looks at the child and at our stdin thread.
const TICK: Duration = Duration::from_millis(100);

/// Messages from the child, one per stdout line, until the end of the stream (on a
/// datagram pair, the child's exit); stops with the stdin thread's error if it reports
/// one. A message that one line cannot carry (it holds a newline) is an error, not
/// several lines; so is a stream that ends inside a frame.
fn copy_messages_to_stdout(
    mut channel: Receiver<Vec<u8>>,
    child: &mut Child,
    stdin_error: &mpsc::Receiver<anyhow::Error>,
) -> anyhow::Result<Copied> {
    let datagram = channel.socket().ty().context("socket type")? == Type::DGRAM;
    channel.read_timeout(Some(TICK));
    let mut stdout = io::stdout().lock();
    let mut exited = false;
    let mut count = 0usize;
    loop {
        if let Ok(err) = stdin_error.try_recv() {
            return Err(err);
        }
        match channel.recv() {
            Ok(Some(message)) => {
                count += 1;
                if message.contains(&b'\n') {
                    bail!(
                        "message {count} from the child holds a newline, which one output line \
                         cannot carry (--framing raw passes the child's bytes as they are)"
                    );
                }
                if !write_out(&mut stdout, &[&message, b"\n"])? {
                    return Ok(Copied::StdoutClosed(channel.socket().try_clone()?));
                }
            }
            Ok(None) => return Ok(Copied::All),
            Err(err) if err.kind() == sockpair::ErrorKind::TimedOut => {
                if !datagram {
                    continue; // a stream or seqpacket end is done at its EOF
                }
                if exited {
                    return Ok(Copied::All); // gone, and nothing more came within a tick
                }
                exited = child.try_wait().context("check on the child")?.is_some();
            }
            Err(err) => {
                let err = io::Error::from(err);
                if err.kind() == ErrorKind::ConnectionReset {
                    return Ok(Copied::All); // closed with data of ours unread: done
                }
                return Err(err).context("receive from the child");
            }
        }
    }
}
