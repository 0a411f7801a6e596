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
use crate::sys::process::{close_from as sys_close_from, dup_to as sys_dup_to};
use crate::sys::process::{exit_immediately as sys_exit, fork as sys_fork};
use crate::types::Type;
#[cfg(feature = "worker")]
use std::os::fd::{AsFd, OwnedFd};

/// Proof that this process has one thread, which holds this value: from
/// [`fork_alone`], in its child (a fork copies only the calling thread). Not `Send`:
/// it stays on that thread. Whoever holds it decides whether threads are started.
#[cfg(feature = "worker")]
#[derive(Debug)]
pub(crate) struct Alone {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// How many threads this process has: `num_threads` of `/proc/self/stat`.
#[cfg(feature = "worker")]
pub(crate) fn thread_count() -> io::Result<usize> {
    static STAT: ProcSelf = ProcSelf::new("stat");
    let stat = STAT.read()?;
    // The fields after the command name (which may hold anything, `)` included):
    // state is the 3rd field of the line, num_threads the 20th.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17))
        .and_then(|threads| threads.parse().ok())
        .ok_or_else(|| io::Error::other("/proc/self/stat has no thread count"))
}

/// A file of `/proc/self`, kept open and read again from its start each time (the
/// kernel writes it anew): cheaper than opening it for every read. Reopened in a child
/// of the process that opened it (the open file names that process).
#[cfg(feature = "worker")]
pub(crate) struct ProcSelf {
    name: &'static str,
    file: std::sync::Mutex<Option<(u32, std::fs::File)>>,
}

#[cfg(feature = "worker")]
impl ProcSelf {
    pub(crate) const fn new(name: &'static str) -> ProcSelf {
        ProcSelf {
            name,
            file: std::sync::Mutex::new(None),
        }
    }

    /// The whole file, as the kernel writes it now.
    pub(crate) fn read(&self) -> io::Result<String> {
        use std::os::unix::fs::FileExt;
        let mut kept = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        let file = match kept.take() {
            Some((opened_by, file)) if opened_by == pid => file,
            _ => std::fs::File::open(format!("/proc/self/{}", self.name))?,
        };
        let mut text = Vec::with_capacity(2048);
        let mut chunk = [0; 2048];
        loop {
            match file.read_at(&mut chunk, text.len() as u64)? {
                0 => break,
                n => text.extend_from_slice(&chunk[..n]),
            }
        }
        *kept = Some((pid, file));
        String::from_utf8(text).map_err(io::Error::other)
    }
}

/// Forks this process, after checking that it has one thread: then the child may do
/// anything the parent could (allocate, print, panic), since no lock can be held by a
/// thread that did not come along. `Ok(Ok(pid))` in the parent, `Ok(Err(Alone))` in
/// the child.
///
/// # Errors
///
/// An error naming the thread count if there is more than one thread (nothing forks);
/// the kernel's error from `fork`.
#[cfg(feature = "worker")]
pub(crate) fn fork_alone() -> io::Result<Result<i32, Alone>> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process of {threads} threads: only a single-threaded one \
             forks safely"
        )));
    }
    // SAFETY: this process has one thread (checked just above; only this thread could
    // have started another since, and it did not), so the child, a copy of this thread,
    // inherits no lock held by anyone else: all of std works there.
    Ok(match unsafe { sys_fork()? } {
        Some(pid) => Ok(pid),
        None => Err(Alone {
            _not_send: std::marker::PhantomData,
        }),
    })
}

/// Removes `keys` from the environment if this process has one thread (the fork
/// server, at its start: the variables that made it the server are no worker's).
#[cfg(feature = "worker")]
pub(crate) fn remove_env_alone(keys: &[&str]) -> io::Result<()> {
    if thread_count()? != 1 {
        return Err(io::Error::other(
            "the environment is changed only with one thread",
        ));
    }
    for key in keys {
        // SAFETY: this process has one thread (checked just above, and only this
        // thread could have started another since): nothing else reads the environment.
        unsafe { std::env::remove_var(key) };
    }
    Ok(())
}

#[cfg(feature = "worker")]
impl Alone {
    /// Makes the environment exactly `vars`, changing only what differs.
    pub(crate) fn replace_environment(&self, vars: Vec<(std::ffi::OsString, std::ffi::OsString)>) {
        let mut wanted: std::collections::HashMap<_, _> = vars
            .into_iter()
            .filter(|(key, _)| !key.is_empty() && !key.as_encoded_bytes().contains(&b'='))
            .collect();
        for (key, value) in std::env::vars_os() {
            match wanted.get(&key) {
                Some(same) if *same == value => {
                    wanted.remove(&key);
                }
                Some(_) => {}
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

    /// Turns this forked child into a process that holds `end` at fd 3, `stdio` at 0,
    /// 1 and 2, and no other descriptor; `owners` is every value that owned one of this
    /// process's descriptors (all of them: the server's state), which is leaked, never
    /// dropped, so that no number is closed twice. The process is also killed if its
    /// parent ends (`PR_SET_PDEATHSIG`), and exits at once if that already happened.
    pub(crate) fn become_worker_process<T>(
        &self,
        end: OwnedFd,
        stdio: Vec<OwnedFd>,
        owners: T,
    ) -> io::Result<()> {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        if rustix::process::getppid().is_none_or(|pid| pid.as_raw_nonzero().get() == 1) {
            exit_immediately(0); // the server is gone already
        }
        std::mem::forget(owners);
        for (number, fd) in stdio.iter().enumerate() {
            // SAFETY: numbers 0 to 2 are stdio, which no value owns (the server's are
            // `/dev/null`, opened by its spawn); `self` proves no other thread uses them.
            unsafe { sys_dup_to(fd.as_fd(), number as i32)? };
        }
        // SAFETY: number 3 was the server's end, owned by `owners`, leaked above.
        unsafe { sys_dup_to(end.as_fd(), 3)? };
        // Their own numbers (from 4 on, or one of 0 to 3 they now hold) are closed
        // below, with the rest, or kept.
        std::mem::forget((end, stdio));
        // SAFETY: every value that owned a descriptor from 4 on was `owners`, `end` or
        // `stdio`, all leaked above; no other thread exists.
        unsafe { sys_close_from(4) }
    }
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
