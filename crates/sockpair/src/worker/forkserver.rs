//! The fork server: this executable started once more, single-threaded, which forks
//! each worker its parent asks for and relays the workers' exit statuses (only it can
//! reap them).
//!
//! Its parent talks to it over a seqpacket pair at its fd 3, one record per message,
//! in postcard:
//! - [`SpawnRequest`], with descriptors: the worker's end of its pair, then the worker's
//!   standard input, output and error, those not `/dev/null`.
//! - [`Note::Spawned`] (with the worker's pidfd) or [`Note::Refused`], one per request,
//!   in order; [`Note::Exited`] whenever a worker has been reaped.
//!
//! The server checks that it has one thread before every fork, holds no descriptor but
//! its end, its children's pidfds, `/proc/self/task` (its thread count) and `/dev/null`
//! as stdio, and ends when its parent hangs up; each worker is killed
//! (`PR_SET_PDEATHSIG`) when the server ends.
//!
//! What a worker must see it inherits, and changes nothing: the server shares its
//! parent's working directory, root and umask (it was started with `CLONE_FS`, and never
//! changes them), so a worker starts with them as they are at its fork; the environment
//! a request names the server takes on as its own before the fork (its parent sends it
//! only when it is not the one the server has). A directory of the worker's own is
//! opened here, and entered by the worker. What a worker must not run it does not
//! inherit: before its first fork the server makes `exit` skip the exit handlers
//! registered so far (its image's), so a worker's function that calls `exit` runs only
//! its own (see [`Alone::skip_exit_handlers_so_far`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::entry::{BIND_NOW, ROLE, VAR};
use super::options::dev_null;
use crate::channel::Channel;
use crate::fork::{Alone, Threads, exit_immediately};
use crate::socket::Socket;
use crate::wait::{Events, PollFd, poll_any};

/// What a worker must see, sent with each request (read borrowing from its frame).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpawnRequest<'a> {
    /// The whole environment, as bytes; `None`: the one the last request that carried
    /// one set, which the server keeps as its own.
    #[serde(borrow)]
    pub(crate) env: Option<Vec<(&'a [u8], &'a [u8])>>,
    /// The working directory, if not the one shared with the parent (relative: to that
    /// one).
    pub(crate) cwd: Option<&'a [u8]>,
    /// Which of stdin, stdout and stderr are `/dev/null` (the others come as
    /// descriptors, in order).
    pub(crate) null: [bool; 3],
}

/// What the server says.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Note {
    /// The worker of the oldest unanswered request runs; its pidfd comes with this.
    Spawned { pid: i32 },
    /// The oldest unanswered request was refused: why, with the error number of the
    /// system call that failed, if one did (the spawn's error then has its kind).
    Refused { why: String, errno: Option<i32> },
    /// A worker was reaped; `status` is the raw wait status.
    Exited { pid: i32, status: i32 },
}

/// The server's state: what the forked child must leave behind, whole.
struct Server {
    channel: Channel<Vec<u8>>,
    threads: Threads,
    /// Each running worker's pidfd, by pid.
    children: HashMap<i32, OwnedFd>,
}

/// Runs the fork server on `socket` (its parent's end at fd 3) until the parent hangs
/// up. Each forked worker, once set up, runs `worker` on its end, which never returns.
pub(crate) fn run(socket: Socket, worker: fn(Socket) -> !) -> io::Result<()> {
    let threads = Threads::open()?;
    let alone = threads.alone()?;
    alone.remove_env(&[VAR, ROLE, BIND_NOW]);
    // A worker whose function calls `exit` ends as one that returned does, with
    // `_exit`, not running the exit handlers it inherited (see `Alone`'s method).
    alone.skip_exit_handlers_so_far()?;
    let mut channel = Channel::<Vec<u8>>::new(socket)?;
    channel.accept_fds(true)?.max_frame_len(64 << 20);
    let mut server = Server {
        channel,
        threads,
        children: HashMap::new(),
    };
    loop {
        let (request_ready, exited) = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(server.children.len() + 1);
            fds.push(PollFd::new(server.channel.socket(), Events::IN));
            fds.extend((server.children.values()).map(|pidfd| PollFd::new(pidfd, Events::IN)));
            poll_any(&mut fds, None)?;
            let ready = |fd: &PollFd<'_>| !fd.revents().is_empty();
            // The map is unchanged since the poll: its keys come in the same order.
            let exited: Vec<i32> = (fds[1..].iter().zip(server.children.keys()))
                .filter(|(fd, _)| ready(fd))
                .map(|(_, &pid)| pid)
                .collect();
            (ready(&fds[0]), exited)
        };
        for pid in exited {
            server.reap(pid)?;
        }
        if request_ready {
            let mut fds = Vec::new();
            let Some(frame) = server.channel.recv_with_fds(&mut fds)? else {
                return Ok(()); // the parent is done (or gone): the workers end with us
            };
            server = match server.spawn(&frame, fds)? {
                Ok(server) => server,
                Err(end) => worker(end),
            };
        }
    }
}

impl Server {
    /// Reaps worker `pid`, whose pidfd says it exited, and tells the parent how it ended.
    fn reap(&mut self, pid: i32) -> io::Result<()> {
        use rustix::process::{Pid, WaitOptions, waitpid};
        let Some(raw) = Pid::from_raw(pid) else {
            return Ok(());
        };
        let status = match waitpid(Some(raw), WaitOptions::NOHANG)? {
            Some((_, status)) => status.as_raw(),
            None => return Ok(()), // not yet: the pidfd said so early
        };
        self.children.remove(&pid);
        self.tell(&Note::Exited { pid, status }, &[])
    }

    /// Refuses the oldest unanswered request.
    fn refuse(&mut self, why: String, errno: Option<i32>) -> io::Result<()> {
        self.tell(&Note::Refused { why, errno }, &[])
    }

    fn tell(&mut self, note: &Note, fds: &[std::os::fd::BorrowedFd<'_>]) -> io::Result<()> {
        let frame = postcard::to_allocvec(note).map_err(io::Error::other)?;
        self.channel.send_with_fds(&frame, fds)?;
        Ok(())
    }

    /// Forks the worker `frame` asks for. In the server: `Ok(Ok(self))`, the parent told
    /// (a refusal too). In the worker: `Ok(Err(end))`, set up as asked, with its end.
    fn spawn(mut self, frame: &[u8], mut fds: Vec<OwnedFd>) -> io::Result<Result<Server, Socket>> {
        let request: SpawnRequest<'_> = match postcard::from_bytes(frame) {
            Ok(request) => request,
            Err(err) => {
                self.refuse(format!("a garbled request: {err}"), None)?;
                return Ok(Ok(self));
            }
        };
        let given = request.null.iter().filter(|null| !**null).count();
        if fds.len() != 1 + given {
            let why = format!(
                "a request with {} descriptors, not {}",
                fds.len(),
                1 + given
            );
            self.refuse(why, None)?;
            return Ok(Ok(self));
        }
        let (alone, cwd) = match self.take_on(&request) {
            Ok(taken) => taken,
            Err((why, errno)) => {
                self.refuse(why, errno)?;
                return Ok(Ok(self));
            }
        };
        match alone.fork() {
            Err(err) => {
                self.refuse(format!("fork: {err}"), err.raw_os_error())?;
                Ok(Ok(self))
            }
            Ok(Ok(pid)) => {
                drop((fds, cwd));
                let raw = rustix::process::Pid::from_raw(pid).expect("a child's pid is positive");
                match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
                    Ok(pidfd) => {
                        self.tell(&Note::Spawned { pid }, &[pidfd.as_fd()])?;
                        self.children.insert(pid, pidfd);
                    }
                    Err(err) => {
                        let _ = rustix::process::kill_process(raw, rustix::process::Signal::KILL);
                        let _ = rustix::process::waitpid(
                            Some(raw),
                            rustix::process::WaitOptions::empty(),
                        );
                        let why = format!("pidfd_open: {}", io::Error::from(err));
                        self.refuse(why, Some(err.raw_os_error()))?;
                    }
                }
                Ok(Ok(self))
            }
            Ok(Err(alone)) => {
                // The worker: in its own directory, if it has one (its copy of the
                // server's, which is the parent's, otherwise); its end, then stdio, at
                // their numbers; nothing else open.
                if let Some(cwd) = cwd
                    && let Err(err) = rustix::process::fchdir(&cwd)
                {
                    eprintln!("sockpair worker {}: fchdir: {err}", std::process::id());
                    exit_immediately(127);
                }
                let end = fds.remove(0);
                let mut given = fds.into_iter();
                let mut stdio = Vec::with_capacity(3);
                for (number, null) in request.null.iter().enumerate() {
                    stdio.push(match null {
                        true => dev_null(number as i32).unwrap_or_else(|_| exit_immediately(127)),
                        false => given.next().expect("counted above"),
                    });
                }
                match alone.become_worker_process(end, stdio, self) {
                    Ok(end) => Ok(Err(end)),
                    Err(err) => {
                        eprintln!("sockpair worker {}: {err}", std::process::id());
                        exit_immediately(127)
                    }
                }
            }
        }
    }

    /// Takes on the environment the request names, for its worker to inherit (the
    /// server's own, changed only where it differs), and opens the directory it names,
    /// if any, for the worker to enter: checked here, so that one it cannot enter is the
    /// spawn's error. Returns the proof that the server has one thread, to fork with, and
    /// the directory, or why the request is refused (with the error number of the
    /// system call that refused it).
    fn take_on(
        &mut self,
        request: &SpawnRequest<'_>,
    ) -> Result<(Alone, Option<OwnedFd>), (String, Option<i32>)> {
        let alone = (self.threads.alone()).map_err(|err| (err.to_string(), err.raw_os_error()))?;
        if let Some(env) = &request.env {
            alone.replace_environment(env);
        }
        let cwd = match request.cwd {
            None => None,
            Some(cwd) => {
                use rustix::fs::{Access, AtFlags, CWD, Mode, OFlags};
                // Relative to the server's directory, which is the parent's (shared).
                let path = Path::new(OsStr::from_bytes(cwd));
                let why = |err: rustix::io::Errno| {
                    let why = format!(
                        "the working directory {}: {}",
                        path.display(),
                        io::Error::from(err)
                    );
                    (why, Some(err.raw_os_error()))
                };
                // Opened first, so that what is no directory says so (as `chdir` would);
                // entering it needs search permission, which opening it does not check.
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
                let dir = rustix::fs::open(path, flags, Mode::empty()).map_err(why)?;
                rustix::fs::accessat(CWD, path, Access::EXEC_OK, AtFlags::empty()).map_err(why)?;
                Some(dir)
            }
        };
        Ok((alone, cwd))
    }
}
