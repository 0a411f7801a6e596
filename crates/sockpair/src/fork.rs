//! [`fork`]: the classic pattern, a pair shared between a parent and its forked child.
//!
//! Its entry point is itself an `unsafe fn` (the caller upholds what the child may do),
//! so the crate's `unsafe_code` lint is lifted for this file; the system calls are in
//! `sys`.
#![allow(unsafe_code)]

use std::io;

use crate::child::Child;
use crate::socket::{Socket, pair};
use crate::sys::process::{exit_immediately as sys_exit, fork as sys_fork};
use crate::types::Type;

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
