//! The raw `libc` calls that `sockpair bench` measures everything else against: the
//! only `unsafe` in the command.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `send(fd, buf, MSG_NOSIGNAL)` through libc.
pub fn send(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length during the call; the fd is borrowed.
    let n = unsafe {
        libc::send(
            fd.as_fd().as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(fd, buf, 0)` through libc.
pub fn recv(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length during the call; the fd is borrowed.
    let n = unsafe {
        libc::recv(
            fd.as_fd().as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Makes the child of `cmd` die (`SIGKILL`) when this thread does, as
/// `SpawnOptions::die_with_parent` does for sockpair's own spawns: `sockpair pipe` must
/// not leave its commands running if it is killed.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    let hook = move || {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: getppid has no preconditions. If the parent is already gone, give up.
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook makes two async-signal-safe system calls and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
}
