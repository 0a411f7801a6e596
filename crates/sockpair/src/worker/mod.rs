//! Run a Rust function in a child process and get its result, or an error saying why
//! not, never a hang (feature `worker`).
//!
//! In a program with threads, code after `fork` may only make async-signal-safe calls,
//! and `exec` per call is slow. So the first [`spawn`] starts a **fork server**: this
//! same executable started again (`/proc/self/exe`), whose [`init`] (first thing in
//! `main`) turns it into a small, single-threaded process that forks a worker for
//! each spawn, however large or threaded this process is. Each worker gets its end of
//! a new stream pair at fd 3 (no other descriptor of ours), and this process's
//! environment, working directory, umask and stdio as they are at the spawn (or as
//! [`Options`] set them); it receives the call, runs it and sends the result back.
//! There is nothing to connect to and nothing to accept: the worker's death is EOF on
//! our end, at once, whatever it died of. The server relays each worker's exit status
//! (only it can reap them); waiting and killing go through the worker's pidfd, so a
//! kill never reaches another process that got its pid. If the server dies, every
//! pending spawn and join fails at once (its workers die with it), and the next spawn
//! starts a new one; if this process dies, the server and its workers end.
//!
//! [`Options::exec`] starts a worker from a fresh `exec` of this executable instead (as
//! every worker is on kernels without pidfds, before Linux 5.3),
//! for code that must start from a fresh process image: the child is started with
//! `clone(CLONE_VM | CLONE_VFORK)` and `exec`, as
//! [`SpawnOptions::spawn_program`](crate::SpawnOptions::spawn_program) does.
//!
//! ```
//! # sockpair::worker::init_before_main!();
//! use sockpair::worker;
//!
//! fn add((a, b): (u64, u64)) -> u64 {
//!     a + b
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     sockpair::worker::init(); // first in main: a worker runs its call here, and exits
//!
//!     let handle = worker::spawn(add, (2, 40))?;
//!     println!("worker {:?} is adding", handle.pid());
//!     assert_eq!(handle.join()?, 42);
//!
//!     // A closure that captures nothing is a `fn` too.
//!     let boom = worker::spawn(|_: ()| -> u8 { panic!("no") }, ())?;
//!     match boom.join() {
//!         Err(worker::Error::Panicked { message, .. }) => assert_eq!(message, "no"),
//!         other => panic!("{other:?}"),
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # What comes back
//!
//! [`Handle::join`] returns the function's result, or an [`Error`]: a panic, with its
//! message ([`Error::Panicked`]); a worker that exited, aborted or was killed before
//! answering, with its exit status ([`Error::Died`]); a value that did not survive serde
//! ([`Error::Decode`]). [`Handle::join_timeout`] also gives up after a while
//! ([`Error::Timeout`]) and leaves the worker running, for [`Handle::kill`]. Once a
//! handle is joined or dropped no process or zombie is left. The worker inherits this
//! process's stdio, environment and working directory, and ends if this process dies
//! while it runs a function: a forked worker is killed when the fork server ends
//! (`PR_SET_PDEATHSIG`), which it does when this process does; an exec'd worker's end is
//! armed to raise `SIGIO` while the function runs, and the handler ends the worker by
//! `SIGIO` once the end has hung up, and ignores any other notification (a function
//! that installs its own `SIGIO` handler, or ignores `SIGIO`, turns that off).
//!
//! # How a worker ends
//!
//! A worker whose function returned ends once its parent is done with it (a forked one
//! with `_exit`, an exec'd one with `exit`). One whose function calls `exit` (`std::process::exit`, or C's) dies with that status,
//! which [`Handle::join`] reports as [`Error::Died`]; on the way out std's stdout and C's
//! streams are flushed and the exit handlers the function registered (`atexit`) run, on
//! both paths. The handlers the executable registered before `main` reached [`init`]
//! (C++ and library destructors, `atexit` calls of libraries, the loader's `_dl_fini`)
//! run in an exec'd worker, a fresh image whose own they are, and not in a forked one:
//! there they are the fork server's, inherited, and their work (flushing or removing
//! what that process made, saying goodbye to its peers) is not the worker's, as Python's
//! forked `multiprocessing` children end with `os._exit` for the same reason. (With
//! glibc; with another C library a forked worker runs them too.)
//!
//! Every request carries an id, and the answer names it: a frame that answers another
//! request (the function wrote to fd 3, say) is an [`Error::Decode`] saying the pair is
//! out of step, and that worker is never used again. So is a frame the function began
//! and did not finish (its header claims more than follows): a spawned worker ends after
//! answering, cutting it short; a pool's worker is asked, once the frame has stalled for
//! a second, to end if it has answered, and does. No stray write leaves a task waiting.
//!
//! Arguments and results travel in postcard (serde), one length-prefixed frame each way.
//!
//! # How the worker finds the function
//!
//! By its distance in the executable from a function of sockpair's, which is the same
//! in every process running the same file, wherever ASLR loads it. Before calling
//! anything the worker checks that the request comes from its parent and that the
//! parent runs the same executable file; the parent checks that the function lives in
//! the executable (not in a shared library, whose distance differs from process to
//! process: [`spawn`] refuses those); the worker checks that the address is inside its
//! executable. A call that cannot be found is an [`Error::NotFound`], never a jump into
//! the unknown. No registration, no names: any `fn(A) -> R`, generic instances and
//! non-capturing closures included.
//!
//! # Pools
//!
//! [`Pool`] keeps `n` workers and hands them task after task; a worker that dies fails
//! only the task it was running, and is replaced. A task reaches a worker only if that
//! worker is alive and in step; one whose worker died before taking it (each worker
//! notes the id of the request it takes in a word of memory it shares with the pool) is
//! given to a fresh worker, never reported as that death.
//!
//! # In tests
//!
//! A test binary's `main` is the test harness's, so there is no first line of `main` to
//! call [`init`] from. Put [`init_before_main!`] at the top level of the test crate
//! (once per test binary, in `tests/foo.rs` or the crate root of unit tests): it runs
//! [`init`] from the executable's `.init_array`, before the harness starts, and the
//! re-executed test binary serves the call without running a single test. Functions
//! defined in the tests run as they are. The doctests of this module use it too.
//!
//! ```no_run
//! // tests/workers.rs
//! sockpair::worker::init_before_main!();
//!
//! fn double(x: i32) -> i32 {
//!     x * 2
//! }
//!
//! #[test]
//! fn doubles_in_a_child() {
//!     assert_eq!(sockpair::worker::spawn(double, 21).unwrap().join().unwrap(), 42);
//! }
//! ```

mod client;
mod entry;
mod error;
mod forkserver;
mod options;
mod pool;
mod process;
mod serve;
mod wire;

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::Error;
pub use options::{Options, Stdio};
pub use pool::Pool;
pub use serve::init;

use entry::Call;
use pool::Slot;
use process::{NoAnswer, Process};

/// Runs [`init`] before `main`, from the executable's `.init_array`: for test
/// binaries (whose `main` is the harness's) and programs whose `main` you do not write.
/// Use it once per executable, at the top level of a module.
///
/// ```no_run
/// sockpair::worker::init_before_main!();
/// # fn main() {}
/// ```
///
/// In a worker, the function then runs before Rust's `main` would have started: std
/// works there (the arguments, threads, I/O, panics), but a stack overflow is reported
/// as a plain `SIGSEGV` ([`Error::Died`]) rather than std's message.
#[macro_export]
#[doc(hidden)]
macro_rules! __worker_init_before_main {
    () => {
        $crate::__run_before_main!($crate::worker::init);
    };
}

#[doc(inline)]
pub use crate::__worker_init_before_main as init_before_main;

/// Runs `f(arg)` in a new worker process and returns a handle to its result. `f` is any
/// `fn(A) -> R` of this executable, or a closure that captures nothing. `A` and `R` are
/// both `Serialize` and `DeserializeOwned`: this side encodes `A` and decodes `R`, the
/// worker (the same code) the other way round.
///
/// The worker is forked by the fork server (see the [module docs](self)), a copy of this
/// executable, so its `main` must call [`init`] first (or the executable must use
/// [`init_before_main!`]). It sees this process's stdio, environment, working directory
/// and umask as they are now; of descriptors only its end of the pair, at fd 3.
/// Spawning is safe from any thread, in a process with any number of threads. For
/// another environment, directory or stdio, or a fresh `exec`, use [`Options`].
///
/// # Errors
///
/// - an error naming [`init`], before anything starts, if this process did not call it
///   (a worker would run `main` instead of `f`);
/// - [`io::ErrorKind::InvalidInput`]: `f` lives in a shared library, or `arg` does not
///   encode;
/// - the kernel's error from starting the process (no `/proc`, say); the fork server's
///   refusal, or its death while it was asked.
pub fn spawn<A, R>(f: fn(A) -> R, arg: A) -> io::Result<Handle<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    spawn_with(&Options::default(), f, arg)
}

/// [`spawn`] as `options` say.
fn spawn_with<A, R>(options: &Options, f: fn(A) -> R, arg: A) -> io::Result<Handle<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    serve::check_initialized()?;
    let call = Call::of(f)?;
    let (id, request) = wire::request(call, true, &arg)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let (process, early_end) = Process::start(options, None, Some(&request))?;
    Ok(Handle {
        id,
        inner: Inner::Own {
            pid: process.pid(),
            process: Some(Box::new(process)),
            early_end,
        },
        result: PhantomData,
    })
}

/// The result to come of one call in a worker, from [`spawn`] or [`Pool::spawn`].
///
/// Dropping it without joining: a [`spawn`]ed worker is killed (`SIGKILL`) and reaped;
/// a pool task not yet started is cancelled, a running one finishes and its result is
/// dropped.
#[must_use = "dropping a Handle ends its worker; join it for the result"]
pub struct Handle<R> {
    /// The id of its request, which the answer must name.
    id: u64,
    inner: Inner,
    /// `R` is only decoded here: the handle is `Send` and `Sync` whatever `R` is.
    result: PhantomData<fn() -> R>,
}

enum Inner {
    /// A worker of its own; `None` once its outcome was taken.
    Own {
        pid: u32,
        process: Option<Box<Process>>,
        /// The request could not be handed over: the worker is already gone.
        early_end: Option<NoAnswer>,
    },
    Pooled(Arc<Slot>),
}

impl<R> std::fmt::Debug for Handle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> Handle<R> {
    pub(crate) fn pooled(id: u64, slot: Arc<Slot>) -> Handle<R> {
        Handle {
            id,
            inner: Inner::Pooled(slot),
            result: PhantomData,
        }
    }

    /// Waits for the result, however long the function runs; see [`Error`] for what
    /// comes back instead. The worker is reaped before this returns.
    ///
    /// # Errors
    ///
    /// [`Error`]: a panic, a worker that died before answering, a value that did not
    /// survive serde. Never [`Error::Timeout`].
    pub fn join(mut self) -> Result<R, Error> {
        self.outcome(None)
    }

    /// Waits at most `timeout` for the result (any `timeout` works, `Duration::MAX`
    /// included). If none came, returns [`Error::Timeout`] and leaves the worker
    /// running: call `join_timeout` or [`join`](Handle::join) again, or
    /// [`kill`](Handle::kill) it. Once a result or another error came, the worker is
    /// reaped (a worker that answered has up to one second to exit before it is killed),
    /// and later calls return [`Error::Io`].
    ///
    /// # Errors
    ///
    /// As [`join`](Handle::join), and [`Error::Timeout`].
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, Error> {
        self.outcome(Instant::now().checked_add(timeout).map(|at| (at, timeout)))
    }

    fn outcome(&mut self, deadline: Option<(Instant, Duration)>) -> Result<R, Error> {
        let answer = match &mut self.inner {
            Inner::Own {
                process, early_end, ..
            } => {
                let Some(mut worker) = process.take() else {
                    return Err(Error::Io(io::Error::other(
                        "the result was already taken by an earlier join_timeout",
                    )));
                };
                let answer = match early_end.take() {
                    Some(no_answer) => Err(no_answer),
                    None => worker.answer(deadline.map(|(at, _)| at)),
                };
                match answer {
                    Ok(answer) => {
                        if !wire::answers(&answer, self.id) {
                            // Out of step: its real answer would come, or not; stop it.
                            let _ = worker.kill();
                        }
                        worker.reap().map_err(Error::Io)?;
                        answer
                    }
                    Err(NoAnswer::Timeout) => {
                        *process = Some(worker);
                        let (_, after) = deadline.expect("only a deadline times out");
                        return Err(Error::Timeout(after));
                    }
                    Err(NoAnswer::Ended) => return Err(worker.death()),
                    Err(NoAnswer::Failed(err)) => {
                        let _ = worker.kill();
                        let _ = worker.reap();
                        return Err(err);
                    }
                }
            }
            Inner::Pooled(slot) => match slot.wait(deadline.map(|(at, _)| at)) {
                Some(answer) => answer?,
                None => {
                    let (_, after) = deadline.expect("only a deadline times out");
                    return Err(Error::Timeout(after));
                }
            },
        };
        wire::parse_answer(&answer, self.id)
    }
}

impl<R> Handle<R> {
    /// Kills the worker (`SIGKILL`) if it has not answered yet; [`join`](Handle::join)
    /// then reports [`Error::Died`] (or [`Error::Killed`] for a pool task that had not
    /// started). A pool task's worker is replaced.
    ///
    /// # Errors
    ///
    /// The kernel's error from `kill`.
    pub fn kill(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Own {
                process: Some(process),
                ..
            } => process.kill(),
            Inner::Own { process: None, .. } => Ok(()),
            Inner::Pooled(slot) => slot.kill(),
        }
    }

    /// The worker's process id: always for a [`spawn`]ed worker (also once it is
    /// reaped); for a pool task, that of the worker running it, `None` while it is queued
    /// or once it is done.
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Own { pid, .. } => Some(*pid),
            Inner::Pooled(slot) => slot.pid(),
        }
    }
}

impl<R> Drop for Handle<R> {
    fn drop(&mut self) {
        match &mut self.inner {
            // Its `Child` kills (if it still runs) and reaps on drop.
            Inner::Own { .. } => {}
            Inner::Pooled(slot) => slot.abandon(),
        }
    }
}

#[cfg(test)]
mod tests;
