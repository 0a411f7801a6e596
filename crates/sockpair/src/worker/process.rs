//! [`Process`]: the parent's side of one worker process: start it, hand it requests,
//! wait for its answers or its end.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};

use super::client::{self, Forked};
use super::entry::{FD, VAR};
use super::error::Error;
use super::options::{Options, Stdio};
use super::serve::check_initialized;
use super::wire;
use crate::channel::Channel;
use crate::child::Child;
use crate::error::ErrorKind;
use crate::shared_word::SharedWord;
use crate::socket::{Socket, pair};
use crate::spawn::{Convention, SpawnOptions};
use crate::types::Type;
use crate::wait::{Events, PollFd, poll_any, poll_until, ready_now};

/// How long a worker that answered its last request, or whose end we closed, has to
/// exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// How often the exit of a worker is checked when no pidfd watches it.
const POLL_EXIT: Duration = Duration::from_millis(20);

/// How long part of an answer frame may wait for the rest before a pool's worker is
/// probed ([`wire::probe`]): a worker sends its answer in one go, so a frame that stops
/// part way is one its function began on fd 3.
const STALL: Duration = Duration::from_secs(1);

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
    owner: Owner,
    channel: Channel<Vec<u8>>,
    /// Part of a request is still to be written.
    unsent: bool,
    /// Where the worker notes the id of each request it takes, before running it: a
    /// request that a dead worker had not taken was never delivered. Kept for a pool's
    /// workers, which may die idle; a spawned worker takes its one request.
    word: Option<Word>,
    /// The word's memfd went with a request.
    word_sent: bool,
    /// The worker is reaped: nothing of it writes the word any more.
    reaped: bool,
    /// A request went out with [`send`](Process::send) and nothing was read since: its
    /// answer cannot be there yet (the worker has not run), so the wait comes first.
    just_sent: bool,
    /// The worker was sent a [`wire::probe`]: it ends once it has answered, and is not
    /// reused.
    probed: bool,
    /// Its end closed inside a frame.
    cut_short: bool,
}

/// What a wait saw: the end readable, the worker exited.
#[derive(Clone, Copy, Default)]
struct Ready {
    readable: bool,
    exited: bool,
}

/// A pool worker's delivery word: its mapping here, and its memfd, which goes to the
/// worker with its first request and stays here, for the worker that replaces it once
/// it is reaped (a new word is eight system calls and a mapping).
#[derive(Debug)]
pub(crate) struct Word {
    taken: SharedWord,
    fd: OwnedFd,
}

impl Word {
    pub(crate) fn new() -> io::Result<Word> {
        let (taken, fd) = SharedWord::new()?;
        Ok(Word { taken, fd })
    }
}

/// Who started the worker, and so how to wait for it and kill it.
#[derive(Debug)]
enum Owner {
    /// This process, with `exec`: our child, and its pidfd (Linux 5.3), readable once it
    /// has exited; without one, `waitpid` is asked.
    Exec {
        child: Child,
        pidfd: Option<Arc<OwnedFd>>,
    },
    /// The fork server, which reaps it and relays its status.
    Forked(Forked),
}

impl Owner {
    fn id(&self) -> u32 {
        match self {
            Owner::Exec { child, .. } => child.id(),
            Owner::Forked(forked) => forked.id(),
        }
    }

    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Owner::Exec { pidfd, .. } => pidfd.as_deref().map(AsFd::as_fd),
            Owner::Forked(forked) => Some(forked.pidfd()),
        }
    }

    fn kill(&mut self) -> io::Result<()> {
        match self {
            Owner::Exec { child, .. } => child.kill(),
            Owner::Forked(forked) => forked.kill(),
        }
    }

    /// Its status, if it has exited by `deadline` (`None`: waits as long as it takes).
    fn wait_until(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        match self {
            Owner::Exec {
                child,
                pidfd: Some(pidfd),
            } => match poll_until(&**pidfd, Events::IN, deadline)? {
                true => child.try_wait(),
                false => Ok(None),
            },
            Owner::Exec { child, pidfd: None } => match deadline {
                None => child.wait().map(Some),
                Some(at) => child.wait_timeout(at.saturating_duration_since(Instant::now())),
            },
            Owner::Forked(forked) => forked.wait_until(deadline),
        }
    }
}

/// How to kill a worker from another thread: through its pidfd, or by pid where there
/// is none (before Linux 5.3; see the pool's `State::Running` for why that is safe).
#[derive(Debug)]
pub(crate) enum Killer {
    Pidfd(Arc<OwnedFd>),
    Pid(Pid),
}

impl Killer {
    /// `SIGKILL`; nothing if the worker has exited already.
    pub(crate) fn kill(&self) -> io::Result<()> {
        let sent = match self {
            Killer::Pidfd(pidfd) => rustix::process::pidfd_send_signal(&**pidfd, Signal::KILL),
            Killer::Pid(pid) => rustix::process::kill_process(*pid, Signal::KILL),
        };
        match sent {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

impl Process {
    /// How another thread kills this worker.
    pub(crate) fn killer(&self) -> Killer {
        match &self.owner {
            Owner::Exec {
                pidfd: Some(pidfd), ..
            } => Killer::Pidfd(Arc::clone(pidfd)),
            Owner::Exec { child, .. } => {
                Killer::Pid(Pid::from_raw(child.id() as i32).expect("a child's pid is positive"))
            }
            Owner::Forked(forked) => Killer::Pidfd(forked.shared_pidfd()),
        }
    }

    /// Starts a worker as `options` say: forked by the fork server (started first, if
    /// none runs), or this executable started again (`/proc/self/exe`); its end at fd 3,
    /// no other descriptor of ours inherited. With a `word`, the worker notes there each
    /// request it takes. A `first` request is handed over as early as it can be: from
    /// the fork server, before the server is asked, so that the worker finds it as it
    /// starts; the second value is then set if the worker is gone already.
    ///
    /// # Errors
    ///
    /// Before anything starts, if [`init`](super::init) did not run in this process.
    pub(crate) fn start(
        options: &Options,
        word: Option<Word>,
        first: Option<&[u8]>,
    ) -> io::Result<(Process, Option<NoAnswer>)> {
        check_initialized()?;
        options.check()?;
        if let Some(word) = &word {
            word.taken.store(0); // as a new word holds: no request taken
        }
        if options.exec || !client::pidfds() {
            let (owner, socket) = start_exec(options)?;
            let mut process = Process::new(owner, channel(socket), word);
            let early_end = first.and_then(|request| process.send(request).err());
            return Ok((process, early_end));
        }
        // From the fork server: the first request goes into the pair before the server
        // is asked for the worker. Which of our standard streams are open is looked at
        // first, before the pair takes the lowest free numbers (a closed stream's).
        let streams = (io::stdin(), io::stdout(), io::stderr());
        let ours_stdio = open_now([streams.0.as_fd(), streams.1.as_fd(), streams.2.as_fd()])?;
        let (ours, theirs) = pair(Type::STREAM)?;
        let mut channel = channel(ours);
        let sent = first.map(|request| send_request(&mut channel, word.as_ref(), request));
        let owner = start_forked(options, ours_stdio, theirs)?;
        let mut process = Process::new(owner, channel, word);
        process.word_sent = sent.is_some();
        let early_end = sent.and_then(|sent| process.sent(sent).err());
        Ok((process, early_end))
    }

    fn new(owner: Owner, channel: Channel<Vec<u8>>, word: Option<Word>) -> Process {
        Process {
            owner,
            channel,
            unsent: false,
            word,
            word_sent: false,
            reaped: false,
            just_sent: false,
            probed: false,
            cut_short: false,
        }
    }

    /// The id of the last request the worker took, if deliveries are tracked.
    pub(crate) fn taken(&self) -> Option<u64> {
        self.word.as_ref().map(|word| word.taken.load())
    }

    /// The delivery word, for the worker that replaces this one: only once this one is
    /// reaped, since until then it may still write there.
    pub(crate) fn into_word(self) -> Option<Word> {
        self.word.filter(|_| self.reaped)
    }

    /// Whether an idle worker can take a request: it has not exited, and nothing came
    /// from it (neither EOF nor a stray frame, which would put the next answer out of
    /// step).
    pub(crate) fn idle_and_in_step(&self) -> bool {
        let socket = PollFd::new(self.channel.socket(), Events::IN);
        let ready = match self.owner.pidfd() {
            Some(pidfd) => ready_now(&mut [socket, PollFd::new(&pidfd, Events::IN)]),
            None => ready_now(&mut [socket]),
        };
        matches!(ready, Ok(false))
    }

    /// The worker's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.owner.id()
    }

    /// Hands the worker a request: what does not fit in the socket now is written while
    /// waiting for the answer. Fails only if the worker is gone.
    ///
    /// The socket always has room for the start of the request, so the send never times
    /// out having written nothing (which would drop it): the pair is new, or the worker
    /// has read all of the previous request, since it answered it.
    pub(crate) fn send(&mut self, request: &[u8]) -> Result<(), NoAnswer> {
        let word = self.word.as_ref().filter(|_| !self.word_sent);
        self.word_sent = true;
        let sent = send_request(&mut self.channel, word, request);
        self.sent(sent)?;
        self.just_sent = true;
        Ok(())
    }

    /// What a send of a request did: written whole, or partly (the rest is written
    /// while waiting for the answer), or the worker is gone.
    fn sent(&mut self, sent: Result<(), crate::Error>) -> Result<(), NoAnswer> {
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
    /// the rest of the request as the worker takes it. A pool's worker whose answer stops
    /// part way for [`STALL`] is probed ([`wire::probe`]): the frame is not its answer,
    /// and the worker ends once it has sent the real one, cutting the frame short.
    pub(crate) fn answer(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, NoAnswer> {
        let mut ready = match std::mem::take(&mut self.just_sent) {
            true => self.wait_ready(deadline)?,
            false => Ready::default(),
        };
        // When bytes last came that made no whole frame: part of one is here.
        let mut partial_since = None;
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
            if ready.exited {
                return Err(NoAnswer::Ended);
            }
            if ready.readable {
                partial_since = Some(Instant::now());
            }
            let stall = partial_since
                .filter(|_| self.word.is_some() && !self.probed && !self.unsent)
                .map(|since| since + STALL)
                .filter(|stall| deadline.is_none_or(|deadline| *stall < deadline));
            ready = match self.wait_ready(stall.or(deadline)) {
                Err(NoAnswer::Timeout) if stall.is_some() => {
                    self.probed = true;
                    let sent = self.channel.send(&wire::probe());
                    self.sent(sent)?;
                    Ready::default()
                }
                waited => waited?,
            };
        }
    }

    /// Whether the worker was probed: it ends once it has answered.
    pub(crate) fn probed(&self) -> bool {
        self.probed
    }

    /// Waits until the end is readable (or writable, with a request to finish) or the
    /// worker has exited.
    fn wait_ready(&mut self, deadline: Option<Instant>) -> Result<Ready, NoAnswer> {
        let mut events = Events::IN;
        if self.unsent {
            events |= Events::OUT;
        }
        let polled = match self.owner.pidfd() {
            Some(pidfd) => {
                let mut fds = [
                    PollFd::new(self.channel.socket(), events),
                    PollFd::new(&pidfd, Events::IN),
                ];
                let ready = poll_any(&mut fds, deadline);
                let readable = fds[0].revents().contains(Events::IN);
                ready.map(|ready| (ready, readable, !fds[1].revents().is_empty()))
            }
            None => {
                let soon = Instant::now() + POLL_EXIT;
                let until = deadline.map_or(soon, |deadline| deadline.min(soon));
                let mut fds = [PollFd::new(self.channel.socket(), events)];
                poll_any(&mut fds, Some(until)).and_then(|ready| {
                    let readable = fds[0].revents().contains(Events::IN);
                    let exited = self.owner.wait_until(Some(Instant::now()))?.is_some();
                    Ok((ready || exited || Some(until) != deadline, readable, exited))
                })
            }
        };
        match polled {
            Ok((false, ..)) => Err(NoAnswer::Timeout),
            Ok((true, readable, exited)) => Ok(Ready { readable, exited }),
            Err(err) => Err(NoAnswer::Failed(Error::Io(err))),
        }
    }

    /// A channel error: the worker's end is gone (EOF inside a frame, `EPIPE`,
    /// `ECONNRESET`), or something else went wrong.
    fn failure(&mut self, err: crate::Error) -> NoAnswer {
        self.cut_short |= err.kind() == ErrorKind::UnexpectedEof;
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
    /// within [`EXIT_GRACE`]. One that ended well (status 0) with its end closed inside a
    /// frame believed it had answered: the frame was not its answer (its function wrote
    /// to fd 3), and the pair is out of step.
    pub(crate) fn death(&mut self) -> Error {
        match self.reap() {
            Ok(status) if self.cut_short && status.success() => Error::Decode(format!(
                "the worker ended (status 0) in the middle of what it sent: its end of the \
                 pair is {}",
                wire::OUT_OF_STEP
            )),
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
    pub(crate) fn reap(&mut self) -> io::Result<ExitStatus> {
        let status = match self.owner.wait_until(Some(Instant::now() + EXIT_GRACE))? {
            Some(status) => status,
            None => self.kill_and_wait()?,
        };
        self.reaped = true;
        Ok(status)
    }

    /// Kills the worker (`SIGKILL`) and reaps it: for a worker that is not reused.
    pub(crate) fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        let status = self.kill_and_wait()?;
        self.reaped = true;
        Ok(status)
    }

    fn kill_and_wait(&mut self) -> io::Result<ExitStatus> {
        self.owner.kill()?;
        let status = self.owner.wait_until(None)?;
        Ok(status.expect("no deadline"))
    }

    /// Kills the worker (`SIGKILL`); it is reaped by [`death`](Process::death).
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        self.owner.kill()
    }
}

/// A worker that is this executable started again with `exec`, set up as `options` say.
fn start_exec(options: &Options) -> io::Result<(Owner, Socket)> {
    let mut program = options.program.clone();
    program.pid_var(VAR);
    let mut spawn = SpawnOptions::new();
    spawn
        .child_fd(FD)
        .convention(Convention::None)
        .kill_on_drop(true);
    for (number, stdio) in (0..).zip(&options.stdio) {
        if let Some(fd) = stdio.for_exec(number)? {
            spawn.fd(number, fd);
        }
    }
    let (child, socket) = spawn.spawn_program(&program)?;
    let pid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty())
        .ok()
        .map(Arc::new);
    Ok((Owner::Exec { child, pidfd }, socket))
}

/// Sends a request, with the memfd of the delivery `word` (the first request of a
/// worker that notes deliveries).
fn send_request(
    channel: &mut Channel<Vec<u8>>,
    word: Option<&Word>,
    request: &[u8],
) -> Result<(), crate::Error> {
    match word {
        Some(word) => channel.send_with_fds(request, &[word.fd.as_fd()]),
        None => channel.send(request),
    }
}

/// Our end of a worker's pair (a new stream), as a channel with zero timeouts (see
/// [`Process`]).
fn channel(socket: Socket) -> Channel<Vec<u8>> {
    let mut channel = Channel::over_new_stream(socket);
    channel
        .max_frame_len(usize::MAX)
        .read_timeout(Some(Duration::ZERO))
        .write_timeout(Some(Duration::ZERO));
    channel
}

/// A worker forked by the fork server, set up as `options` say, with `theirs` (its end
/// of the pair); `ours_stdio` are our standard streams that were open before the pair.
fn start_forked(
    options: &Options,
    ours_stdio: [Option<BorrowedFd<'_>>; 3],
    theirs: Socket,
) -> io::Result<Owner> {
    // Descriptors are handed over as they are (no copy): the server receives its own.
    // An inherited stream that is closed here is `/dev/null` there.
    let mut null = [false; 3];
    let mut fds: Vec<BorrowedFd<'_>> = vec![theirs.as_fd()];
    for (at, choice) in options.stdio.iter().enumerate() {
        match (choice, ours_stdio[at]) {
            (Stdio::Inherit, Some(fd)) => fds.push(fd),
            (Stdio::Inherit, None) | (Stdio::Null, _) => null[at] = true,
            (Stdio::Fd(fd), _) => fds.push(fd.as_fd()),
        }
    }
    let server = client::server()?;
    let cwd = options.program.get_current_dir();
    let (pid, pidfd) = server.spawn(options.environment(), cwd, null, &fds)?;
    Ok(Owner::Forked(Forked::new(pid, pidfd, server)))
}

/// Those of `fds` that are open (`None` for a closed one): one `poll` that does not
/// wait, which marks a closed descriptor `POLLNVAL` (what it reports of an open one
/// does not matter).
fn open_now(fds: [BorrowedFd<'_>; 3]) -> io::Result<[Option<BorrowedFd<'_>>; 3]> {
    let mut polled = fds.map(|fd| PollFd::from_borrowed_fd(fd, Events::empty()));
    ready_now(&mut polled)?;
    let closed = polled.map(|fd| fd.revents().contains(Events::NVAL));
    Ok(std::array::from_fn(|at| (!closed[at]).then_some(fds[at])))
}
