//! The only module with `unsafe`: the few system calls that rustix cannot make for us
//! with the exact semantics we promise.
//!
//! - `socketpair` takes raw `i32` values, so that any domain, type or protocol a caller
//!   names reaches the kernel unchanged and the kernel's errno comes back (rustix's typed
//!   `AddressFamily` is a `u16` and would silently truncate larger values).
//! - `SO_PEERCRED` is read into a plain `ucred`, whose `pid` may legitimately be 0.
//! - `SO_PASSRIGHTS` and `SO_TIMESTAMP`, which rustix does not set.
//! - `fork` and `_exit` have no safe form anywhere.
//! - `dladdr`, and `SIGIO` on a socket's hang-up, for the worker.
//!
//! It is the bottom layer: nothing here imports from the modules above it.
//! - `recvmsg` without asking for an address (see `recvmsg.rs`).
//! - spawning with `clone(CLONE_VM | CLONE_VFORK)` (see `spawn.rs`).
#![allow(unsafe_code)]

pub(crate) mod poll;
pub(crate) mod recvmsg;
pub(crate) mod spawn;

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// `socketpair(domain, ty, protocol)`, with both descriptors owned before anything else
/// can fail.
pub(crate) fn socketpair(domain: i32, ty: i32, protocol: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a writable array of two `c_int`s, as socketpair(2) requires.
    let rc = unsafe { libc::socketpair(domain, ty, protocol, fds.as_mut_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel stored two new, open descriptors that nothing else
    // owns; each gets exactly one owner here, before any other call can fail.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`: `(pid, uid, gid)` of the peer.
pub(crate) fn peer_cred(fd: impl AsFd) -> io::Result<(i32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable `ucred` and `len` holds its exact size; the borrowed
    // fd stays open for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid, cred.gid))
}

/// `SO_PASSRIGHTS` (Linux 6.16): whether a socket accepts `SCM_RIGHTS`. The value of
/// the generic socket options (x86, ARM, RISC-V...); libc does not name it yet.
const SO_PASSRIGHTS: libc::c_int = 83;

/// Whether a socket accepts `SCM_RIGHTS` (`SO_PASSRIGHTS`); `None` on kernels before
/// 6.16, which know no such option (`ENOPROTOOPT`) and always accept.
pub(crate) fn pass_rights(fd: impl AsFd) -> io::Result<Option<bool>> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a writable c_int and `len` holds its size; the fd is borrowed.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PASSRIGHTS,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    match rc {
        0 => Ok(Some(value != 0)),
        _ => match io::Error::last_os_error() {
            err if err.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(None),
            err => Err(err),
        },
    }
}

/// Turns `SO_PASSRIGHTS` on or off. Off, a peer's `sendmsg` with descriptors fails with
/// `EPERM`. Kernels before 6.16 answer `ENOPROTOOPT`.
pub(crate) fn set_pass_rights(fd: impl AsFd, accept: bool) -> io::Result<()> {
    set_socket_option(fd, SO_PASSRIGHTS, accept.into())
}

/// Turns on `SO_TIMESTAMP`: every record (or stream chunk) read with `recvmsg` then
/// comes with an `SCM_TIMESTAMP` control message, and the end of the stream with none.
/// Unlike `SO_PASSCRED`, it does not make the kernel bind the socket to an address.
pub(crate) fn set_receive_timestamps(fd: impl AsFd) -> io::Result<()> {
    set_socket_option(fd, libc::SO_TIMESTAMP, 1)
}

/// `setsockopt(fd, SOL_SOCKET, name, &value)` for an `int` option.
fn set_socket_option(fd: impl AsFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a readable c_int of the size passed; the fd is borrowed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fork()`: `Some(child pid)` in the parent, `None` in the child.
///
/// # Safety
///
/// In the child of a multithreaded parent, only async-signal-safe work may follow
/// (see the crate-level `fork` docs).
pub(crate) unsafe fn fork() -> io::Result<Option<i32>> {
    // SAFETY: the caller upholds the async-signal-safety contract for the child.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// `_exit(code)`: end the process now, running no destructors, no `atexit` handlers
/// and flushing no buffers.
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe, touches no memory of ours and never returns.
    unsafe { libc::_exit(code) }
}

/// The address at which the loaded object (the executable or a shared library) that
/// holds `addr` starts (`dladdr`'s `dli_fbase`); `None` if no loaded object holds it, or
/// the process has no dynamic loader to ask (a static executable).
#[cfg(feature = "worker")]
pub(crate) fn object_base(addr: usize) -> Option<usize> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only looks `addr` up in the loader's tables (it never dereferences
    // it) and writes into `info`, a writable `Dl_info`.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    (found != 0 && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

/// Makes this process end when `fd`'s peer hangs up, or stops that (`on == false`):
/// `SIGIO` to this process on the socket's state changes (`F_SETOWN`, `O_ASYNC`), with
/// `SIGIO`'s default action, which is to terminate. Turning it on also restores that
/// default (a parent may have left `SIGIO` ignored, which `execve` keeps) and unblocks
/// `SIGIO` in the calling thread.
#[cfg(feature = "worker")]
pub(crate) fn end_on_hang_up(fd: impl AsFd, on: bool) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    if on {
        // SAFETY: `SIG_DFL` installs no handler of ours; signal(2) touches no memory.
        if unsafe { libc::signal(libc::SIGIO, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `mask` is a writable sigset_t, initialised by sigemptyset before use;
        // pthread_sigmask only reads it.
        let rc = unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut mask);
            libc::sigaddset(&mut mask, libc::SIGIO);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &mask, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: fcntl with F_SETOWN takes an int argument and touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: F_GETFL/F_SETFL take and return plain ints; no memory is touched.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        match flags {
            -1 => -1,
            _ if on => libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC),
            _ => libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_ASYNC),
        }
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
