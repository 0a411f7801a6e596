//! [`Process`]: the parent's side of one worker process: start it, hand it requests,
//! wait for its answers or its end.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags};

use super::entry::FD;
use super::error::Error;
use super::serve::{VAR, check_initialized};
use crate::channel::Channel;
use crate::child::Child;
use crate::error::ErrorKind;
use crate::shared_word::SharedWord;
use crate::spawn::{Convention, Program, SpawnOptions};
use crate::wait::{Events, PollFd, poll_any, poll_until};

/// How long a worker that answered its last request, or whose end we closed, has to
/// exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// How often the exit of a worker is checked when no pidfd watches it.
const POLL_EXIT: Duration = Duration::from_millis(20);

/// Why no answer came.
pub(crate) enum NoAnswer {
    /// The deadline passed; the worker runs on.
    Timeout,
    /// The worker is gone (or closed its end): [`Process::death`] says how it ended.
    Ended,
    /// Talking to it failed.
    Failed(Error),
}

/// One worker process and our end of its pair. The channel's timeouts are zero: a send
/// writes what fits and keeps the rest, a receive takes what has arrived and keeps a
/// partial frame (both then fail with `TimedOut`), and the only wait is in
/// [`wait_ready`](Process::wait_ready), on the end and the process together.
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    channel: Channel<Vec<u8>>,
    /// Readable once the worker has exited (Linux 5.3); without one, `waitpid` is asked.
    pidfd: Option<OwnedFd>,
    /// Part of a request is still to be written.
    unsent: bool,
    /// The id of the last request the worker took (it notes each before running it):
    /// a request that a dead worker had not taken was never delivered.
    taken: SharedWord,
    /// The word's memfd, sent with the first request, then closed.
    word: Option<OwnedFd>,
}

impl Process {
    /// Starts this executable again (`/proc/self/exe`) as a worker, its end at fd 3, no
    /// other descriptor of ours inherited.
    ///
    /// # Errors
    ///
    /// Before anything starts, if [`init`](super::init) did not run in this process.
    pub(crate) fn start() -> io::Result<Process> {
        check_initialized()?;
        let mut program = Program::new("/proc/self/exe");
        program.pid_var(VAR);
        let (child, socket) = SpawnOptions::new()
            .child_fd(FD)
            .convention(Convention::None)
            .kill_on_drop(true)
            .spawn_program(&program)?;
        let pid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok();
        let mut channel = Channel::new(socket)?;
        channel
            .max_frame_len(usize::MAX)
            .read_timeout(Some(Duration::ZERO))
            .write_timeout(Some(Duration::ZERO));
        let (taken, word) = SharedWord::new()?;
        Ok(Process {
            child,
            channel,
            pidfd,
            unsent: false,
            taken,
            word: Some(word),
        })
    }

    /// The id of the last request the worker took.
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load()
    }

    /// Whether an idle worker can take a request: it has not exited, and nothing came
    /// from it (neither EOF nor a stray frame, which would put the next answer out of
    /// step).
    pub(crate) fn idle_and_in_step(&self) -> bool {
        let (socket, now) = (
            PollFd::new(self.channel.socket(), Events::IN),
            Some(Instant::now()),
        );
        let ready = match &self.pidfd {
            Some(pidfd) => poll_any(&mut [socket, PollFd::new(pidfd, Events::IN)], now),
            None => poll_any(&mut [socket], now),
        };
        matches!(ready, Ok(false))
    }

    /// The worker's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Hands the worker a request: what does not fit in the socket now is written while
    /// waiting for the answer. Fails only if the worker is gone.
    ///
    /// The socket always has room for the start of the request, so the send never times
    /// out having written nothing (which would drop it): the pair is new, or the worker
    /// has read all of the previous request, since it answered it.
    pub(crate) fn send(&mut self, request: &[u8]) -> Result<(), NoAnswer> {
        let sent = match self.word.take() {
            Some(word) => self.channel.send_with_fds(request, &[word.as_fd()]),
            None => self.channel.send(request),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == ErrorKind::TimedOut => {
                self.unsent = true;
                Ok(())
            }
            Err(err) => Err(self.failure(err)),
        }
    }

    /// Waits until `deadline` (`None`: none) for the answer to the request sent, writing
    /// the rest of the request as the worker takes it.
    pub(crate) fn answer(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, NoAnswer> {
        let mut exited = false;
        loop {
            if self.unsent {
                match self.channel.flush() {
                    Ok(()) => self.unsent = false,
                    Err(err) if err.kind() == ErrorKind::TimedOut => {}
                    Err(err) => return Err(self.failure(err)),
                }
            }
            match self.channel.recv() {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => return Err(NoAnswer::Ended),
                Err(err) if err.kind() == ErrorKind::TimedOut => {}
                Err(err) => return Err(self.failure(err)),
            }
            // Gone, with nothing (more) to read: a descendant may hold a copy of its
            // end, so EOF may never come.
            if exited {
                return Err(NoAnswer::Ended);
            }
            exited = self.wait_ready(deadline)?;
        }
    }

    /// Waits until the end is readable (or writable, with a request to finish) or the
    /// worker has exited; returns whether it has exited.
    fn wait_ready(&mut self, deadline: Option<Instant>) -> Result<bool, NoAnswer> {
        let mut events = Events::IN;
        if self.unsent {
            events |= Events::OUT;
        }
        let polled = match &self.pidfd {
            Some(pidfd) => {
                let mut fds = [
                    PollFd::new(self.channel.socket(), events),
                    PollFd::new(pidfd, Events::IN),
                ];
                let ready = poll_any(&mut fds, deadline);
                ready.map(|ready| (ready, !fds[1].revents().is_empty()))
            }
            None => {
                let soon = Instant::now() + POLL_EXIT;
                let until = deadline.map_or(soon, |deadline| deadline.min(soon));
                let mut fds = [PollFd::new(self.channel.socket(), events)];
                poll_any(&mut fds, Some(until)).and_then(|ready| {
                    let exited = self.child.try_wait()?.is_some();
                    Ok((ready || exited || Some(until) != deadline, exited))
                })
            }
        };
        match polled {
            Ok((false, _)) => Err(NoAnswer::Timeout),
            Ok((true, exited)) => Ok(exited),
            Err(err) => Err(NoAnswer::Failed(Error::Io(err))),
        }
    }

    /// A channel error: the worker's end is gone (EOF inside a frame, `EPIPE`,
    /// `ECONNRESET`), or something else went wrong.
    fn failure(&mut self, err: crate::Error) -> NoAnswer {
        let os = std::error::Error::source(&err)
            .and_then(|source| source.downcast_ref::<io::Error>())
            .map(io::Error::kind);
        let gone = err.kind() == ErrorKind::UnexpectedEof
            || matches!(
                os,
                Some(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
            );
        match gone {
            true => NoAnswer::Ended,
            false => NoAnswer::Failed(Error::Io(err.into())),
        }
    }

    /// How the worker ended, once it has: reaped, killed first if it does not exit
    /// within [`EXIT_GRACE`].
    pub(crate) fn death(mut self) -> Error {
        match self.reap() {
            Ok(status) => Error::Died(status),
            Err(err) => Error::Io(err),
        }
    }

    /// Closes our end for both directions (the worker reads EOF and exits) and reaps it,
    /// killed first if it does not exit within [`EXIT_GRACE`].
    pub(crate) fn close(mut self) {
        let _ = self.channel.socket().shutdown(std::net::Shutdown::Both);
        let _ = self.reap();
    }

    /// Reaps the worker, which answered its last request or closed its end: killed
    /// first if it does not exit within [`EXIT_GRACE`].
    pub(crate) fn reap(&mut self) -> io::Result<std::process::ExitStatus> {
        let exited = match &self.pidfd {
            // Our pidfd already watches it: no second one to open.
            Some(pidfd) => {
                poll_until(pidfd, Events::IN, Some(Instant::now() + EXIT_GRACE))?;
                self.child.try_wait()?
            }
            None => self.child.wait_timeout(EXIT_GRACE)?,
        };
        match exited {
            Some(status) => Ok(status),
            None => {
                self.child.kill()?;
                self.child.wait()
            }
        }
    }

    /// Kills the worker (`SIGKILL`) and reaps it: for a worker that is not reused.
    pub(crate) fn kill_and_reap(mut self) -> io::Result<std::process::ExitStatus> {
        let _ = self.child.kill();
        self.child.wait()
    }

    /// Kills the worker (`SIGKILL`); it is reaped by [`death`](Process::death).
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        self.child.kill()
    }
}
