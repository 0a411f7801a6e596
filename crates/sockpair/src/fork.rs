//! [`fork`]: the classic pattern, a pair shared between a parent and its forked child;
//! and, for the worker's fork server, the safe fork of a single-threaded process
//! ([`fork_alone`]) and what its child does to become a worker.
//!
//! The entry point of `fork` is itself an `unsafe fn` (the caller upholds what the child
//! may do), and the fork server's child changes the environment and descriptor numbers
//! that only a single-threaded process may (`Alone` is the proof), so the crate's
//! `unsafe_code` lint is lifted for this file; the system calls are in `sys`.
#![allow(unsafe_code)]

use std::io;

use crate::child::Child;
use crate::socket::{Socket, pair};
#[cfg(feature = "worker")]
use crate::sys::process::skip_exit_handlers_so_far;
#[cfg(feature = "worker")]
use crate::sys::process::{close_from as sys_close_from, dup_to as sys_dup_to};
use crate::sys::process::{exit_immediately as sys_exit, fork as sys_fork};
use crate::types::Type;
#[cfg(feature = "worker")]
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// Proof that this process has one thread, which holds this value: from
/// [`fork_alone`], in its child (a fork copies only the calling thread). Not `Send`:
/// it stays on that thread. Whoever holds it decides whether threads are started.
#[cfg(feature = "worker")]
#[derive(Debug)]
pub(crate) struct Alone {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// This process's thread count, kept at hand: the link count of `/proc/self/task`
/// (two, plus one per thread), from a descriptor opened once, so that each count is one
/// `fstat`. The pid it was opened by is kept: in a forked child the directory would
/// still be its parent's, and counting there is an error.
#[cfg(feature = "worker")]
#[derive(Debug)]
pub(crate) struct Threads {
    dir: OwnedFd,
    pid: rustix::process::Pid,
}

#[cfg(feature = "worker")]
impl Threads {
    /// Opens `/proc/self/task` of this process.
    pub(crate) fn open() -> io::Result<Threads> {
        let dir = rustix::fs::open(
            "/proc/self/task",
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(Threads {
            dir,
            pid: rustix::process::getpid(),
        })
    }

    /// How many threads this process has now.
    pub(crate) fn count(&self) -> io::Result<usize> {
        if rustix::process::getpid() != self.pid {
            return Err(io::Error::other(
                "a thread count opened by another process (a forked child's parent)",
            ));
        }
        let links = rustix::fs::fstat(&self.dir)?.st_nlink;
        match usize::try_from(links)
            .ok()
            .and_then(|links| links.checked_sub(2))
        {
            Some(threads) if threads > 0 => Ok(threads),
            _ => Err(io::Error::other(format!(
                "/proc/self/task has {links} links: no thread count"
            ))),
        }
    }

    /// Proof that this process has one thread now, or an error naming how many it has.
    pub(crate) fn alone(&self) -> io::Result<Alone> {
        match self.count()? {
            1 => Ok(Alone {
                _not_send: std::marker::PhantomData,
            }),
            threads => Err(io::Error::other(format!(
                "refusing to fork a process of {threads} threads: only a single-threaded one \
                 forks safely"
            ))),
        }
    }
}

#[cfg(feature = "worker")]
impl Alone {
    /// Forks this process, which has one thread (`self` is the proof, taken just
    /// before): then the child may do anything the parent could (allocate, print,
    /// panic), since no lock can be held by a thread that did not come along. `Ok(pid)`
    /// in the parent, `Err(Alone)` in the child.
    ///
    /// # Errors
    ///
    /// The kernel's error from `fork`.
    pub(crate) fn fork(self) -> io::Result<Result<i32, Alone>> {
        // SAFETY: this process has one thread (`self` proves it, and only this thread
        // could have started another since, which it did not: it holds `self`), so the
        // child, a copy of this thread, inherits no lock held by anyone else: all of std
        // works there.
        Ok(match unsafe { sys_fork()? } {
            Some(pid) => Ok(pid),
            None => Err(self),
        })
    }

    /// Makes a call to `exit` here, and in every child forked from here on, skip the
    /// exit handlers registered so far (with glibc; elsewhere nothing changes): a forked
    /// child's are its parent's, and their work (flushing or removing what the parent
    /// made, saying goodbye to its peers) is not the child's. C's streams are still
    /// flushed, and the handlers the child registers itself still run.
    pub(crate) fn skip_exit_handlers_so_far(&self) -> io::Result<()> {
        skip_exit_handlers_so_far()
    }

    /// Removes `keys` from the environment (the fork server, at its start: the
    /// variables that made it the server are no worker's).
    pub(crate) fn remove_env(&self, keys: &[&str]) {
        for key in keys {
            // SAFETY: `self` proves this process has one thread (the caller's): nothing
            // else reads the environment.
            unsafe { std::env::remove_var(key) };
        }
    }

    /// Makes the environment exactly `vars` (keys and values as bytes), changing only
    /// what differs, except for what no variable can be set to (see below).
    pub(crate) fn replace_environment(&self, vars: &[(&[u8], &[u8])]) {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        // What `set_var` and `remove_var` cannot take (they would panic) is left as it
        // is: a name that is empty or holds `=` or NUL, a value that holds NUL. (Our
        // parent checks what it asks for; such a name can come only from the
        // environment it was started with, where it stays.)
        let mut wanted: std::collections::HashMap<&OsStr, &OsStr> = vars
            .iter()
            .filter(|(key, value)| settable_name(key) && !value.contains(&0))
            .map(|(key, value)| (OsStr::from_bytes(key), OsStr::from_bytes(value)))
            .collect();
        for (key, value) in std::env::vars_os() {
            match wanted.get(key.as_os_str()) {
                Some(same) if *same == value => {
                    wanted.remove(key.as_os_str());
                }
                Some(_) => {}
                None if !settable_name(key.as_bytes()) => {}
                // SAFETY: `self` proves this process has one thread (the caller's): no
                // other thread can read or write the environment during the call.
                None => unsafe { std::env::remove_var(key) },
            }
        }
        for (key, value) in wanted {
            // SAFETY: as above.
            unsafe { std::env::set_var(key, value) };
        }
    }

    /// Turns this forked child into a process that holds `end` at fd 3 (returned,
    /// close-on-exec), `stdio` at 0, 1 and 2, and no other descriptor; `owners` is every
    /// value that owned one of this process's descriptors (all of them: the server's
    /// state), which is leaked, never dropped, so that no number is closed twice. The
    /// process is also killed if its parent ends (`PR_SET_PDEATHSIG`), and exits at once
    /// if that already happened.
    pub(crate) fn become_worker_process<T>(
        &self,
        end: OwnedFd,
        stdio: Vec<OwnedFd>,
        owners: T,
    ) -> io::Result<Socket> {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        if rustix::process::getppid().is_none_or(|pid| pid.as_raw_nonzero().get() == 1) {
            exit_immediately(0); // the server is gone already
        }
        std::mem::forget(owners);
        for (number, fd) in stdio.iter().enumerate() {
            // SAFETY: numbers 0 to 2 are stdio, which no value owns (the server's are
            // `/dev/null`, opened by its spawn); `self` proves no other thread uses them.
            unsafe { sys_dup_to(fd.as_fd(), number as i32, false)? };
        }
        // SAFETY: number 3 was the server's end, owned by `owners`, leaked above.
        unsafe { sys_dup_to(end.as_fd(), 3, true)? };
        // Their own numbers (from 4 on, or one of 0 to 3 they now hold) are closed
        // below, with the rest, or kept.
        std::mem::forget((end, stdio));
        // SAFETY: every value that owned a descriptor from 4 on was `owners`, `end` or
        // `stdio`, all leaked above; no other thread exists.
        unsafe { sys_close_from(4)? };
        // SAFETY: number 3 holds the end (placed just above), and nothing owns it: its
        // former owner was leaked with `owners`.
        Ok(Socket::from(unsafe { OwnedFd::from_raw_fd(3) }))
    }
}

/// Whether `name` can name an environment variable (`set_var` and `remove_var` take it):
/// not empty, and holding neither `=` nor a NUL byte.
#[cfg(feature = "worker")]
pub(crate) fn settable_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'=') && !name.contains(&0)
}

/// Which side of a [`fork`] this process is on, with its end of the pair.
#[derive(Debug)]
#[must_use = "the child must end with `exit_immediately`, the parent should wait for it"]
pub enum Fork {
    /// The original process: the child's end is already closed here.
    Parent {
        /// The child, to wait for or kill.
        child: Child,
        /// The parent's end of the pair.
        socket: Socket,
    },
    /// The new process: the parent's end is already closed here.
    Child {
        /// The child's end of the pair.
        socket: Socket,
    },
}

/// Creates a pair of type `ty` (close-on-exec), forks, and closes in each process the
/// end that belongs to the other: TLPI §57.5's program in one call.
///
/// # Safety
///
/// In the child only the thread that called `fork` exists. If the parent had other
/// threads, any lock one of them held at that instant (the allocator's, stdout's, the
/// environment's) stays locked forever in the child, and the first call that needs it
/// deadlocks or worse. So, unless the parent is single-threaded, the child may do only
/// async-signal-safe work (`signal-safety(7)`) and must end with [`exit_immediately`]
/// or `execve`: no allocation (`Vec`, `String`, `format!`), no `println!`, no panics
/// (unwinding allocates), no `std::env`, no mutexes, and no return from the function
/// that forked (that would run the parent's code and destructors twice).
///
/// What this crate offers that fits: [`Socket::send`], [`Socket::recv`],
/// [`Socket::shutdown`], [`Socket::peer_cred`], dropping a [`Socket`] (`close`), and
/// [`exit_immediately`]. They make one system call each and allocate nothing, except to
/// describe errors of their own (not the kernel's), which the child should treat as
/// fatal anyway.
///
/// The caller also owns the child: [`Child::wait`] reaps it. A child that is never
/// waited for stays a zombie until this process exits.
///
/// # Examples
///
/// The child echoes one message back; the crate-level example is the full demo.
///
/// ```
/// use sockpair::{exit_immediately, fork, Fork, Type};
///
/// // SAFETY: the child below only calls recv, send and _exit.
/// match unsafe { fork(Type::SEQPACKET)? } {
///     Fork::Child { socket } => {
///         let mut buf = [0; 64];
///         let echoed = socket.recv(&mut buf).and_then(|n| socket.send(&buf[..n]));
///         exit_immediately(if echoed.is_ok() { 0 } else { 1 })
///     }
///     Fork::Parent { mut child, socket } => {
///         socket.send(b"echo me")?;
///         let mut buf = [0; 64];
///         let n = socket.recv(&mut buf)?;
///         assert_eq!(&buf[..n], b"echo me");
///         assert!(child.wait()?.success());
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The kernel's error from `socketpair` or `fork` (e.g. `EAGAIN` at the process limit);
/// nothing is left open and no child exists then.
pub unsafe fn fork(ty: Type) -> io::Result<Fork> {
    let (parent_end, child_end) = pair(ty)?;
    // SAFETY: the caller promises the child does only async-signal-safe work; between
    // here and the return, the child only closes a descriptor.
    match unsafe { sys_fork()? } {
        Some(pid) => {
            drop(child_end);
            Ok(Fork::Parent {
                child: Child::from_pid(pid, false),
                socket: parent_end,
            })
        }
        None => {
            drop(parent_end);
            Ok(Fork::Child { socket: child_end })
        }
    }
}

/// Ends the calling process at once with `code` (`_exit(2)`): no destructors, no
/// `atexit` handlers, no flushing of std's buffers.
///
/// The way for a forked child to finish: `std::process::exit` would run the parent's
/// exit handlers and flush its buffers a second time, and neither is async-signal-safe.
pub fn exit_immediately(code: i32) -> ! {
    sys_exit(code)
}
