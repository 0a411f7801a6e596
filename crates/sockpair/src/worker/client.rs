//! The parent's side of the fork server: starting it (at the first spawn, again after
//! it died), asking it for workers, and the exit statuses it relays.
//!
//! One control pair (seqpacket) per server, used under one lock: a spawn sends its
//! request and reads until the reply, keeping the exit notes that come meanwhile; a
//! wait for a status reads until its note. Notes nobody will take (the worker's handle
//! is gone) are dropped as they come.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::entry::{BIND_NOW, FD, ROLE, SERVER_ROLE, VAR};
use super::forkserver::{Note, SpawnRequest};
use super::serve::check_initialized;
use crate::channel::Channel;
use crate::child::Child;
use crate::error::ErrorKind;
use crate::spawn::{Convention, Program, SpawnOptions};
use crate::types::Type;

/// How long a status may take to come once the worker has exited (the server reaps
/// it at once; this only bounds a server that stopped answering).
const STATUS_WAIT: Duration = Duration::from_secs(10);

/// How long dropping a worker waits for the server to reap it after the kill.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// Whether this kernel has pidfds (Linux 5.3), which the fork server's workers are
/// waited for and killed through: without them every worker is started with `exec`.
pub(crate) fn pidfds() -> bool {
    static PIDFDS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PIDFDS.get_or_init(|| {
        let own = rustix::process::getpid();
        rustix::process::pidfd_open(own, rustix::process::PidfdFlags::empty()).is_ok()
    })
}

/// The server of this process, started by the first spawn that needs one, with the pid
/// of the process that started it.
static SERVER: Mutex<Option<(u32, Arc<Client>)>> = Mutex::new(None);

/// A running fork server and our end of its control pair.
#[derive(Debug)]
pub(crate) struct Client {
    state: Mutex<State>,
    /// Set once the server is unusable: read without the lock, which a spawn waiting
    /// for the server holds.
    gone: Arc<AtomicBool>,
}

#[derive(Debug)]
struct State {
    channel: Channel<Vec<u8>>,
    server: Child,
    /// Statuses that came, not yet taken, by pid.
    exited: HashMap<i32, i32>,
    /// Workers whose status nobody will take.
    forgotten: HashSet<i32>,
    /// Why the server is unusable, once it is.
    dead: Option<String>,
    /// The client's `gone`, set with `dead`.
    gone: Arc<AtomicBool>,
    /// The server's environment, as the last request that carried one set it (`None`
    /// before, and after a refusal): a request whose environment is this one leaves it
    /// out.
    environment: Option<Vec<(OsString, OsString)>>,
}

/// The server to ask: the running one, or a new one if there is none or it died.
pub(crate) fn server() -> io::Result<Arc<Client>> {
    let mut current = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    match current.take() {
        Some((owner, client)) if owner == pid && !client.gone.load(Ordering::Acquire) => {
            *current = Some((owner, Arc::clone(&client)));
            return Ok(client);
        }
        // A copy inherited through a fork: its server (and its control pair) belong to
        // the parent, which a drop here would kill. Left alone, never used.
        Some((owner, inherited)) if owner != pid => std::mem::forget(inherited),
        _ => {}
    }
    let client = Arc::new(Client::start()?);
    *current = Some((pid, Arc::clone(&client)));
    Ok(client)
}

impl Client {
    /// Starts this executable again as the fork server, its end of a seqpacket pair at
    /// fd 3, its stdio `/dev/null` (it keeps none of ours open), no other descriptor.
    fn start() -> io::Result<Client> {
        check_initialized()?;
        let mut program = Program::new("/proc/self/exe");
        // Every symbol bound as the server loads (not lazily, at a first call): a worker
        // that makes a call the server never made would otherwise write the server's
        // binding table, a copy-on-write fault and a symbol search in every worker.
        program
            .pid_var(VAR)
            .env(ROLE, SERVER_ROLE)
            .env(BIND_NOW, "1");
        let mut options = SpawnOptions::new();
        // The server shares this process's working directory, root and umask, live: each
        // worker it forks starts with them as they are at its fork, and nothing has to
        // read or send them.
        options
            .share_fs()
            .ty(Type::SEQPACKET)
            .child_fd(FD)
            .convention(Convention::None)
            .kill_on_drop(true);
        for number in 0..3 {
            options.fd(number, super::options::dev_null(number)?);
        }
        let (server, socket) = options.spawn_program(&program)?;
        let mut channel = Channel::new(socket)?;
        channel.accept_fds(true)?.write_timeout(None);
        let gone = Arc::new(AtomicBool::new(false));
        Ok(Client {
            state: Mutex::new(State {
                channel,
                server,
                exited: HashMap::new(),
                forgotten: HashSet::new(),
                dead: None,
                gone: Arc::clone(&gone),
                environment: None,
            }),
            gone,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the server for a worker that sees `env`, starts in `cwd` (relative to this
    /// process's working directory, which it shares) if one is given, with `fds` (its
    /// end, then its standard streams not in `null`): its pid and pidfd.
    pub(crate) fn spawn(
        &self,
        env: Vec<(OsString, OsString)>,
        cwd: Option<&Path>,
        null: [bool; 3],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<(i32, OwnedFd)> {
        let mut state = self.lock();
        state.check()?;
        // The environment goes only where it is not the server's already.
        let send_env = state.environment.as_ref() != Some(&env);
        let request = SpawnRequest {
            env: send_env.then(|| {
                env.iter()
                    .map(|(key, value)| (key.as_bytes(), value.as_bytes()))
                    .collect()
            }),
            cwd: cwd.map(|cwd| cwd.as_os_str().as_bytes()),
            null,
        };
        let frame = postcard::to_allocvec(&request).map_err(io::Error::other)?;
        if let Err(err) = state.channel.send_with_fds(&frame, fds) {
            return Err(state.died(&format!("the request could not be sent: {err}")));
        }
        if send_env {
            state.environment = Some(env);
        }
        loop {
            let (note, mut fds) = state.next(None)?.expect("no deadline");
            match note {
                Note::Spawned { pid } => match fds.pop() {
                    Some(pidfd) => return Ok((pid, pidfd)),
                    None => return Err(state.died("a reply came without the worker's pidfd")),
                },
                Note::Refused { why, errno } => {
                    // It may have refused before taking the environment on.
                    state.environment = None;
                    let kind = errno.map_or(io::ErrorKind::Other, |errno| {
                        io::Error::from_raw_os_error(errno).kind()
                    });
                    return Err(io::Error::new(kind, why));
                }
                Note::Exited { .. } => {} // kept by `next`
            }
        }
    }

    /// The exit status of worker `pid` once the server relays it, or `None` if
    /// `deadline` passes first. Waits under the lock: for a worker that is ending
    /// (it answered, was told to end, or was killed), whose status comes at once.
    pub(crate) fn status(&self, pid: i32, deadline: Instant) -> io::Result<Option<ExitStatus>> {
        let mut state = self.lock();
        loop {
            if let Some(status) = state.exited.remove(&pid) {
                return Ok(Some(ExitStatus::from_raw(status)));
            }
            state.check()?;
            match state.next(Some(deadline))? {
                Some((Note::Exited { .. }, _)) => {} // kept by `next`: looked for above
                Some(_) => return Err(state.died("a reply came that no request asked for")),
                None => return Ok(None),
            }
        }
    }

    /// Nobody will ask for worker `pid`'s status.
    pub(crate) fn forget(&self, pid: i32) {
        let mut state = self.lock();
        if state.exited.remove(&pid).is_none() {
            state.forgotten.insert(pid);
        }
    }
}

impl State {
    fn check(&self) -> io::Result<()> {
        match &self.dead {
            None => Ok(()),
            Some(why) => Err(io::Error::new(io::ErrorKind::BrokenPipe, why.clone())),
        }
    }

    /// Marks the server unusable (killed and reaped), saying why.
    fn died(&mut self, why: &str) -> io::Error {
        if self.dead.is_none() {
            let _ = self.server.kill();
            let status = self
                .server
                .wait()
                .map_or(String::new(), |s| format!(" ({s})"));
            self.dead = Some(format!("the worker fork server is gone{status}: {why}"));
            self.gone.store(true, Ordering::Release);
        }
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            self.dead.clone().unwrap_or_default(),
        )
    }

    /// The next note, with its descriptors; an exit note is also kept (or dropped, if
    /// its worker was forgotten). `None` if the deadline passed first.
    fn next(&mut self, deadline: Option<Instant>) -> io::Result<Option<(Note, Vec<OwnedFd>)>> {
        let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Ok(None);
        }
        self.channel.read_timeout(left);
        let mut fds = Vec::new();
        let frame = match self.channel.recv_with_fds(&mut fds) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(self.died("it closed its end")),
            Err(err) if err.kind() == ErrorKind::TimedOut => return Ok(None),
            Err(err) => return Err(self.died(&format!("reading from it failed: {err}"))),
        };
        let note: Note = match postcard::from_bytes(&frame) {
            Ok(note) => note,
            Err(err) => return Err(self.died(&format!("it sent a garbled note: {err}"))),
        };
        if let Note::Exited { pid, status } = note
            && !self.forgotten.remove(&pid)
        {
            self.exited.insert(pid, status);
        }
        Ok(Some((note, fds)))
    }
}

/// A worker the fork server forked: its pid, its pidfd (to wait for and kill it, never
/// another process that got its pid), and the server that reaps it.
#[derive(Debug)]
pub(crate) struct Forked {
    pid: i32,
    pidfd: Arc<OwnedFd>,
    server: Arc<Client>,
    status: Option<ExitStatus>,
}

impl Forked {
    pub(crate) fn new(pid: i32, pidfd: OwnedFd, server: Arc<Client>) -> Forked {
        Forked {
            pid,
            pidfd: Arc::new(pidfd),
            server,
            status: None,
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.pid as u32
    }

    pub(crate) fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// `SIGKILL` through the pidfd; nothing once it has exited.
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        match rustix::process::pidfd_send_signal(&*self.pidfd, Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Waits until `deadline` for the worker, which is ending (it answered, was told to
    /// end, or was killed), to exit; its status, which the server relays once it has
    /// reaped it. `None` (no deadline): waits up to [`STATUS_WAIT`], then fails.
    pub(crate) fn wait_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            let limit = deadline.unwrap_or_else(|| Instant::now() + STATUS_WAIT);
            self.status = self.server.status(self.pid, limit)?;
            if self.status.is_none() && deadline.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the fork server did not relay a worker's exit status in 10 s",
                ));
            }
        }
        Ok(self.status)
    }

    /// The pidfd, for another thread to kill the worker with.
    pub(crate) fn shared_pidfd(&self) -> Arc<OwnedFd> {
        Arc::clone(&self.pidfd)
    }
}

impl Drop for Forked {
    /// Kills the worker if it runs, and waits (a moment at most) until the server has
    /// reaped it, as dropping a [`Child`] that kills on drop does.
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill();
            let reaped = self.wait_until(Some(Instant::now() + REAP_WAIT));
            if !matches!(reaped, Ok(Some(_))) {
                self.server.forget(self.pid);
            }
        }
    }
}
