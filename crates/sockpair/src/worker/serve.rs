//! [`init`]: the worker's side. It answers requests until its parent closes the pair
//! (or, for a [`spawn`](super::spawn), after the one request), then exits.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, ThreadId};

use super::entry::{self, ROLE, SERVER_ROLE, VAR};
use super::forkserver;
use super::wire::{self, Answer};
use crate::channel::Channel;
use crate::shared_word::SharedWord;
use crate::socket::Socket;
use crate::wait::{Events, PollFd, poll_until, ready_now};

/// Turns this process into a worker if it was started as one, and otherwise returns at
/// once. Call it first in `main`, before anything else runs, threads in particular:
///
/// ```no_run
/// fn main() {
///     sockpair::worker::init();
///     run(); // the program: worker::spawn and Pool work from here on
/// }
/// # fn run() {}
/// ```
///
/// In the fork server or an exec'd worker (this executable started again by
/// [`spawn`](super::spawn) or a [`Pool`](super::Pool), recognised by `SOCKPAIR_WORKER`
/// holding its own pid), it never returns. The fork server forks a worker for each
/// request of its parent and ends when its parent does; a worker (exec'd, or forked by
/// the server) runs the functions it is sent, answers each, and exits (status 0 once its
/// parent closes the pair or the one call of a `spawn` is answered; 2, with a line on
/// stderr, if it cannot serve: fd 3 is not its parent's end, its parent runs another
/// executable, or its end failed otherwise than by the parent's hang-up, as when a
/// function closed or replaced fd 3). A descendant that inherits `SOCKPAIR_WORKER` is
/// not a worker: the pid is not its own.
///
/// In a test binary, whose `main` is the test harness's, use
/// [`init_before_main!`](super::init_before_main) instead.
pub fn init() {
    INITIALIZED.store(true, Ordering::Release);
    let Some(value) = std::env::var_os(VAR) else {
        return;
    };
    if value.to_str().and_then(|pid| pid.parse::<u32>().ok()) != Some(std::process::id()) {
        return;
    }
    let served = match std::env::var_os(ROLE) {
        Some(role) if role == SERVER_ROLE => run_server(),
        _ => serve(),
    };
    exit_serving(served, false)
}

/// Ends a worker (or the fork server) once it has served: status 0, or 2 with a line
/// on stderr saying why it could not serve. A `forked` worker ends with `_exit` once
/// std's stdout is flushed: the exit handlers are the fork server's, which has nothing
/// to do at exit (and their work would delay its parent's join).
fn exit_serving(served: io::Result<()>, forked: bool) -> ! {
    let code = match served {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("sockpair worker {}: {err}", std::process::id());
            2
        }
    };
    let _ = io::stdout().flush();
    if forked {
        crate::fork::exit_immediately(code);
    }
    #[allow(clippy::exit, reason = "a worker ends when its parent is done with it")]
    std::process::exit(code)
}

/// The fork server's side: its end checked as a worker's is, then served.
fn run_server() -> io::Result<()> {
    let socket = entry::claim_end()?;
    if let Err(why) = check_parent(&socket) {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    }
    prepare()?;
    forkserver::run(socket, serve_forked_and_exit)
}

/// A worker the fork server forked, set up, with its end at fd 3: serves it, then
/// exits.
fn serve_forked_and_exit(end: Socket) -> ! {
    exit_serving(serve_forked(end), true)
}

/// What a worker sets up once, before its first request: the panic hook, the
/// executable's code ranges, std's stdout. The fork server does it before it forks any
/// worker, which inherits it all; an exec'd worker does it itself.
fn prepare() -> io::Result<()> {
    catch_panic_messages(thread::current().id());
    entry::find_code();
    io::stdout().flush()
}

/// Whether [`init`] ran in this process: the fork server (and so every worker) is this
/// executable started again, and without `init` it would run `main` instead of serving
/// (and, if `main` spawns workers, so would each of them).
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Refuses to start a worker before [`init`] ran in this process, naming it.
pub(crate) fn check_initialized() -> io::Result<()> {
    match INITIALIZED.load(Ordering::Acquire) {
        true => Ok(()),
        false => Err(io::Error::other(
            "sockpair::worker::init() was not called: call it first in main (or put \
             sockpair::worker::init_before_main!() at the top level of the executable); \
             without it a worker would run this program's main instead of the function, \
             so none was started",
        )),
    }
}

/// A panic's message and location, as the hook saw it on the worker's thread.
static PANIC: Mutex<Option<(String, Option<String>)>> = Mutex::new(None);

fn serve() -> io::Result<()> {
    let socket = entry::claim_end()?;
    prepare()?;
    let refusal = check_parent(&socket).err();
    let mut channel = Channel::<Vec<u8>>::new(socket)?;
    channel.max_frame_len(usize::MAX);
    if let Some(why) = refusal {
        // Tell whoever it is, then stop: nothing it sends is called. Its request is
        // read first (for a moment at most), so that closing with it unread does not
        // reset the connection and lose the answer.
        channel.read_timeout(Some(std::time::Duration::from_millis(200)));
        let id = match channel.recv() {
            Ok(Some(request)) => wire::parse_request(&request).map_or(wire::UNREAD, |r| r.id),
            _ => wire::UNREAD,
        };
        let _ = channel.send(&Answer::NotFound(why.clone()).into_frame(id));
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    }
    serve_on(channel, true)
}

/// A worker forked by the fork server: its end at fd 3 came from the server's parent,
/// which the server checked as [`serve`] checks its own.
fn serve_forked(end: Socket) -> io::Result<()> {
    // The end of a stream pair its parent made, as it was made.
    let mut channel = Channel::<Vec<u8>>::over_new_stream(end);
    channel.max_frame_len(usize::MAX);
    // It dies with the fork server (`PR_SET_PDEATHSIG`), which ends when its parent
    // does: no watch on the parent of its own.
    serve_on(channel, false)
}

/// Answers requests on `channel` until the parent closes it (or after a `last` one).
/// With `watch_parent`, the parent's hang-up ends this process while a function runs.
fn serve_on(mut channel: Channel<Vec<u8>>, watch_parent: bool) -> io::Result<()> {
    // The first request brings the word where this worker notes each request it takes.
    channel.accept_fds(true)?;
    // Under `panic = "abort"` a panic is answered from the hook, before the abort.
    if cfg!(panic = "abort") {
        *LAST_WORDS.lock().unwrap_or_else(|p| p.into_inner()) = Some(channel.socket().try_clone()?);
    }
    let mut taken: Option<OwnedFd> = None;
    let mut fds = Vec::new();
    loop {
        let request = match channel.recv_with_fds(&mut fds) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()), // the parent is done with us (or gone)
            Err(err) => return Err(err.into()),
        };
        if let Some(fd) = fds.pop() {
            taken = Some(fd);
        }
        fds.clear();
        let request = match wire::parse_request(&request) {
            Ok(parsed) => parsed,
            Err(why) => {
                let _ = channel.send(&Answer::NotFound(why.clone()).into_frame(wire::UNREAD));
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
        };
        // Asked while idle (every request answered) by a pool whose answer stalled part
        // way: the pair is out of step, and the pool takes this end as the sign.
        if request.probe {
            return Ok(());
        }
        // From here on the request counts as delivered: were this process to die now,
        // its parent would report that death as the task's, and not run it elsewhere.
        if let Some(taken) = &taken {
            SharedWord::write_through(taken, request.id)?;
        }
        RUNNING.store(request.id, Ordering::Relaxed);
        // While the function runs nothing more comes from the parent: the end turns
        // readable only when the parent is gone, and then SIGIO ends this process.
        if watch_parent {
            channel.socket().end_process_on_hang_up(true)?;
            if parent_gone(channel.socket())? {
                return Ok(());
            }
        }
        let answer = run(request.call, request.argument);
        if watch_parent {
            channel.socket().end_process_on_hang_up(false)?;
        }
        let _ = io::stdout().flush();
        // The parent gone (it hung up): nothing to answer. Any other failure (the
        // function closed fd 3, say) is this worker's, said on stderr, as an exec'd
        // worker's and a forked one's alike.
        if let Err(err) = channel.send(&answer.into_frame(request.id)) {
            let err = io::Error::from(err);
            return match err.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Ok(()),
                _ => Err(err),
            };
        }
        if request.last {
            return Ok(());
        }
    }
}

/// Calls the function, catching a panic.
fn run(call: entry::Call, argument: &[u8]) -> Answer {
    *PANIC
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    match panic::catch_unwind(AssertUnwindSafe(|| entry::call(call, argument))) {
        Ok(Ok(outcome)) => Answer::Outcome(outcome),
        Ok(Err(why)) => Answer::NotFound(why),
        Err(payload) => {
            let seen = PANIC
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            let (message, location) =
                seen.unwrap_or_else(|| (payload_text(payload.as_ref()), None));
            Answer::Panicked(message, location)
        }
    }
}

/// The id of the request whose function runs, for an answer from the panic hook.
static RUNNING: AtomicU64 = AtomicU64::new(wire::UNREAD);

/// A copy of the worker's end, under `panic = "abort"` (where nothing runs after the
/// hook), for the panic hook to send the answer itself.
static LAST_WORDS: Mutex<Option<Socket>> = Mutex::new(None);

/// Keeps the message and location of a panic on the worker's thread for the answer,
/// printing nothing: the parent gets it as [`Error::Panicked`](super::Error::Panicked),
/// and std's line ("thread 'main' panicked at ...") on the shared stderr would read as
/// the parent's. With [`LAST_WORDS`] set, the hook sends the answer itself. A panic on
/// another thread of the worker (one the function started) is printed as one line
/// that names the worker.
fn catch_panic_messages(worker: ThreadId) {
    panic::set_hook(Box::new(move |info| {
        let message = payload_text(info.payload());
        let location = info.location().map(ToString::to_string);
        let thread = thread::current();
        if thread.id() == worker {
            let last_words = LAST_WORDS.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(end) = &*last_words {
                let answer = Answer::Panicked(message, location);
                let _ = send_from_hook(end, &answer.into_frame(RUNNING.load(Ordering::Relaxed)));
                return;
            }
            *PANIC
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((message, location));
        } else {
            eprintln!(
                "sockpair worker {}: thread '{}' panicked at {}: {message}",
                std::process::id(),
                thread.name().unwrap_or("<unnamed>"),
                location.as_deref().unwrap_or("an unknown place"),
            );
        }
    }));
}

/// Writes one answer frame on the worker's end, whole, from the panic hook (the
/// channel that owns the end is not reachable there, and sends nothing meanwhile: its
/// function is running).
fn send_from_hook(end: &Socket, answer: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(answer.len() + 4);
    crate::frame::write_frame(&mut frame, crate::frame::Framing::Length, answer)?;
    let mut rest = &frame[..];
    while !rest.is_empty() {
        match end.send(rest) {
            Ok(n) => rest = &rest[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                poll_until(end, Events::OUT, None)?;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "(a panic payload that is not a string)".to_owned(),
    }
}

/// Whether the end has turned readable: with no request outstanding from the parent,
/// that is its hang-up.
fn parent_gone(socket: &Socket) -> io::Result<bool> {
    ready_now(&mut [PollFd::new(socket, Events::IN)])
}

/// Refuses a peer that is not this process's parent running this same executable:
/// only such a parent's `Call::of` computed the distances the requests carry.
fn check_parent(socket: &Socket) -> Result<(), String> {
    let parent = rustix::process::getppid().map_or(0, |pid| pid.as_raw_nonzero().get());
    let peer = socket
        .peer_cred()
        .map_err(|err| format!("fd 3: SO_PEERCRED: {err}"))?
        .pid()
        .unwrap_or(0);
    if peer == 0 || peer != parent {
        return Err(format!(
            "fd 3's peer (pid {peer}) is not this worker's parent (pid {parent})"
        ));
    }
    let identity = |path: &str| {
        rustix::fs::stat(path)
            .map(|stat| (stat.st_dev, stat.st_ino))
            .map_err(|err| format!("stat {path}: {}", io::Error::from(err)))
    };
    if identity("/proc/self/exe")? != identity(&format!("/proc/{parent}/exe"))? {
        return Err(format!(
            "the parent (pid {parent}) runs another executable than this worker"
        ));
    }
    Ok(())
}
