//! [`fork`]: the seed's pattern, a pair shared between a parent and its forked child.
//!
//! It lives in `sys` because its public entry point is itself an `unsafe fn`; it is the
//! one part of `sys` that builds on [`Socket`], the layer above.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};

use super::{exit_immediately as sys_exit, fork as sys_fork};
use crate::socket::{Socket, pair};
use crate::types::Type;

/// Which side of a [`fork`] this process is on, with its end of the pair.
#[derive(Debug)]
#[must_use = "the child must end with `exit_immediately`, the parent should wait for it"]
pub enum Fork {
    /// The original process: the child's end is already closed here.
    Parent {
        /// The child, to wait for or kill.
        child: ForkedChild,
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
/// end that belongs to the other: the seed's program in one call.
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
/// The caller also owns the child: [`ForkedChild::wait`] reaps it. A child that is never
/// waited for stays a zombie until this process exits.
///
/// # Examples
///
/// The child echoes one message back; the crate-level example is the seed's full demo.
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
                child: ForkedChild {
                    pid: Pid::from_raw(pid).expect("fork returns a positive pid to the parent"),
                    status: None,
                },
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

/// A child made by [`fork`]: its pid, and its exit status once reaped.
///
/// Dropping it neither kills nor reaps the child, as with [`std::process::Child`].
#[derive(Debug)]
pub struct ForkedChild {
    pid: Pid,
    status: Option<ExitStatus>,
}

impl ForkedChild {
    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.pid.as_raw_pid() as u32
    }

    /// Waits for the child to exit and reaps it (`waitpid`); later calls return the same
    /// status.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.reap(WaitOptions::empty())
            .map(|status| status.expect("a blocking waitpid returns a status"))
    }

    /// Reaps the child if it has exited, without blocking (`waitpid(WNOHANG)`).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.reap(WaitOptions::NOHANG)
    }

    /// Waits at most `timeout` for the child to exit (a `pidfd` polled with a timeout),
    /// reaping it if it did; `Ok(None)` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let pidfd = rustix::process::pidfd_open(self.pid, PidfdFlags::empty())?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let left = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&left)) {
                Ok(0) => return Ok(None),
                Ok(_) => return self.try_wait(),
                Err(Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Kills the child with `SIGKILL`; does nothing if it was already reaped. Call
    /// [`wait`](ForkedChild::wait) afterwards to reap it.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_none() {
            rustix::process::kill_process(self.pid, Signal::KILL)?;
        }
        Ok(())
    }

    fn reap(&mut self, options: WaitOptions) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            let reaped = loop {
                match rustix::process::waitpid(Some(self.pid), options) {
                    Err(Errno::INTR) => continue,
                    other => break other?,
                }
            };
            self.status = reaped.map(|(_, status)| ExitStatus::from_raw(status.as_raw()));
        }
        Ok(self.status)
    }
}
