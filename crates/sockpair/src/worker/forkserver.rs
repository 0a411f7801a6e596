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
//! its end, its children's pidfds and `/dev/null` as stdio, and ends when its parent
//! hangs up; each worker is killed (`PR_SET_PDEATHSIG`) when the server ends.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use serde::{Deserialize, Serialize};

use super::entry::{BIND_NOW, ROLE, VAR};
use super::options::dev_null;
use crate::channel::Channel;
use crate::fork::{Alone, exit_immediately, fork_alone};
use crate::socket::Socket;
use crate::wait::{Events, PollFd, poll_any};

/// What a worker must see, sent with each request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    /// The whole environment, as bytes.
    pub(crate) env: Vec<(Vec<u8>, Vec<u8>)>,
    /// The working directory, absolute.
    pub(crate) cwd: Vec<u8>,
    pub(crate) umask: u32,
    /// Which of stdin, stdout and stderr are `/dev/null` (the others come as
    /// descriptors, in order).
    pub(crate) null: [bool; 3],
}

/// What the server says.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Note {
    /// The worker of the oldest unanswered request runs; its pidfd comes with this.
    Spawned { pid: i32 },
    /// The oldest unanswered request was refused: why.
    Refused(String),
    /// A worker was reaped; `status` is the raw wait status.
    Exited { pid: i32, status: i32 },
}

impl SpawnRequest {
    pub(crate) fn new(
        env: Vec<(OsString, OsString)>,
        cwd: std::path::PathBuf,
        umask: u32,
        null: [bool; 3],
    ) -> SpawnRequest {
        SpawnRequest {
            env: env
                .into_iter()
                .map(|(key, value)| (key.into_vec(), value.into_vec()))
                .collect(),
            cwd: cwd.into_os_string().into_vec(),
            umask,
            null,
        }
    }
}

/// The server's state: what the forked child must leave behind, whole.
struct Server {
    channel: Channel<Vec<u8>>,
    /// The server's own environment, which a forked worker has until it is changed:
    /// compared here, before the fork, so that a worker whose parent's environment is
    /// the same (the usual case) changes nothing.
    environment: Vec<(Vec<u8>, Vec<u8>)>,
    /// Each running worker's pidfd, by pid.
    children: HashMap<i32, OwnedFd>,
}

/// Runs the fork server on `socket` (its parent's end at fd 3) until the parent hangs
/// up. Each forked worker, once set up, runs `worker`, which never returns.
pub(crate) fn run(socket: Socket, worker: fn() -> !) -> io::Result<()> {
    crate::fork::remove_env_alone(&[VAR, ROLE, BIND_NOW])?;
    let mut channel = Channel::<Vec<u8>>::new(socket)?;
    channel.accept_fds(true)?.max_frame_len(64 << 20);
    let mut server = Server {
        channel,
        environment: std::env::vars_os()
            .map(|(key, value)| (key.into_vec(), value.into_vec()))
            .collect(),
        children: HashMap::new(),
    };
    loop {
        let pids: Vec<i32> = server.children.keys().copied().collect();
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(pids.len() + 1);
        fds.push(PollFd::new(server.channel.socket(), Events::IN));
        for pid in &pids {
            fds.push(PollFd::new(&server.children[pid], Events::IN));
        }
        poll_any(&mut fds, None)?;
        let request_ready = !fds[0].revents().is_empty();
        let exited: Vec<i32> = fds[1..]
            .iter()
            .zip(&pids)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, &pid)| pid)
            .collect();
        drop(fds);
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
                Err(_alone) => worker(),
            };
        }
    }
}

impl Server {
    /// Reaps worker `pid` and tells the parent how it ended.
    fn reap(&mut self, pid: i32) -> io::Result<()> {
        let Some(raw) = rustix::process::Pid::from_raw(pid) else {
            return Ok(());
        };
        let status =
            match rustix::process::waitpid(Some(raw), rustix::process::WaitOptions::NOHANG)? {
                Some((_, status)) => status.as_raw(),
                None => return Ok(()), // not yet: the pidfd said so early
            };
        self.children.remove(&pid);
        self.tell(&Note::Exited { pid, status }, &[])
    }

    fn tell(&mut self, note: &Note, fds: &[std::os::fd::BorrowedFd<'_>]) -> io::Result<()> {
        let frame = postcard::to_allocvec(note).map_err(io::Error::other)?;
        self.channel.send_with_fds(&frame, fds)?;
        Ok(())
    }

    /// Forks the worker `frame` asks for. In the server: `Ok(Ok(self))`, the parent told
    /// (a refusal too). In the worker: `Ok(Err(Alone))`, after setting it up as asked.
    fn spawn(mut self, frame: &[u8], mut fds: Vec<OwnedFd>) -> io::Result<Result<Server, Alone>> {
        let request: SpawnRequest = match postcard::from_bytes(frame) {
            Ok(request) => request,
            Err(err) => {
                self.tell(&Note::Refused(format!("a garbled request: {err}")), &[])?;
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
            self.tell(&Note::Refused(why), &[])?;
            return Ok(Ok(self));
        }
        let same_environment = request.env == self.environment;
        match fork_alone() {
            Err(err) => {
                self.tell(&Note::Refused(format!("fork: {err}")), &[])?;
                Ok(Ok(self))
            }
            Ok(Ok(pid)) => {
                drop(fds);
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
                        self.tell(&Note::Refused(why), &[])?;
                    }
                }
                Ok(Ok(self))
            }
            Ok(Err(alone)) => {
                // The worker: its end, then stdio, at their numbers; nothing else open.
                let end = fds.remove(0);
                let mut given = fds.into_iter();
                let mut stdio = Vec::with_capacity(3);
                for (number, null) in request.null.iter().enumerate() {
                    stdio.push(match null {
                        true => dev_null(number as i32).unwrap_or_else(|_| exit_immediately(127)),
                        false => given.next().expect("counted above"),
                    });
                }
                let setup = alone
                    .become_worker_process(end, stdio, self)
                    .and_then(|()| {
                        if !same_environment {
                            alone.replace_environment(
                                request
                                    .env
                                    .into_iter()
                                    .map(|(key, value)| {
                                        (OsString::from_vec(key), OsString::from_vec(value))
                                    })
                                    .collect(),
                            );
                        }
                        std::env::set_current_dir(std::ffi::OsStr::from_bytes(&request.cwd))?;
                        rustix::process::umask(rustix::fs::Mode::from_bits_truncate(request.umask));
                        Ok(())
                    });
                if let Err(err) = setup {
                    eprintln!("sockpair worker {}: {err}", std::process::id());
                    exit_immediately(127);
                }
                Ok(Err(alone))
            }
        }
    }
}
