//! Starting a program with descriptors placed at chosen numbers, two ways:
//!
//! - [`spawn`]: sockpair's own path, `clone(CLONE_VM | CLONE_VFORK)` then `execve`, as
//!   `posix_spawn` does, without copying the parent's page tables; plus what
//!   `posix_spawn` cannot do: write the child's own pid into its environment (systemd's
//!   `LISTEN_PID`) and ask for `PR_SET_PDEATHSIG` between the clone and the exec.
//! - [`spawn_std`]: std's `Command::spawn`, which honours everything a `Command` says,
//!   with one `pre_exec` hook that carries out the same [`FdPlan`].
//!
//! On the direct path everything the child needs (paths, argv, envp, a stack) is
//! allocated by the parent before the clone. The child shares the parent's memory until
//! it execs, so it runs only raw, async-signal-safe system calls, allocates nothing and
//! cannot panic; the parent thread is suspended meanwhile (`CLONE_VFORK`), with every
//! signal blocked so that no handler of the parent's can run on the child's borrowed
//! stack. The child shares the parent thread's TLS too, so the `errno` it reads after a
//! failed call is that slot: it copies the value out at once, before any other call.
//!
//! `plan.rs` prepares and carries out where descriptors go, `clone.rs` is the direct
//! path, `std_hook.rs` the `pre_exec` hook of std's.

mod clone;
mod plan;
mod std_hook;

use std::ffi::c_int;
use std::io;
use std::os::fd::RawFd;

pub(crate) use clone::{Exec, spawn};
pub(crate) use plan::FdPlan;
pub(crate) use std_hook::spawn_std;

/// Room for a pid in decimal: `pid_max` is at most 2^22 on Linux, and `u32::MAX` has
/// 10 digits.
pub(crate) const PID_DIGITS: usize = 10;

/// The step of starting a child that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `clone` itself, in the parent.
    Clone,
    /// Changing to the working directory.
    Chdir,
    /// Joining or making the process group.
    ProcessGroup,
    /// `PR_SET_PDEATHSIG`, or the parent was already gone.
    DieWithParent,
    /// Putting a descriptor at this number.
    PlaceFd(RawFd),
    /// `execve` of every candidate path.
    Exec,
}

/// A failed start: which step, and the kernel's error.
#[derive(Debug)]
pub(crate) struct Failed {
    pub step: Step,
    pub error: io::Error,
}

/// The calling thread's errno.
fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// The soft `RLIMIT_NOFILE`: descriptor numbers must stay below it.
pub(crate) fn nofile_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}
