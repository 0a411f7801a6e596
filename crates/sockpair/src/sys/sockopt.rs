//! Socket options that rustix does not read or set as we need them.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::cvt;

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`: `(pid, uid, gid)` of the peer, read into a
/// plain `ucred`, whose `pid` may legitimately be 0.
pub(crate) fn peer_cred(fd: impl AsFd) -> io::Result<(i32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable `ucred` and `len` holds its exact size; the borrowed
    // fd stays open for the duration of the call.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    })?;
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
    let rc = cvt(unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PASSRIGHTS,
            (&raw mut value).cast(),
            &mut len,
        )
    });
    match rc {
        Ok(_) => Ok(Some(value != 0)),
        Err(err) if err.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Turns `SO_PASSRIGHTS` on or off. Off, a peer's `sendmsg` with descriptors fails with
/// `EPERM`. Kernels before 6.16 answer `ENOPROTOOPT`.
pub(crate) fn set_pass_rights(fd: impl AsFd, accept: bool) -> io::Result<()> {
    set_int(fd, SO_PASSRIGHTS, accept.into())
}

/// Turns on `SO_TIMESTAMP`: every record (or stream chunk) read with `recvmsg` then
/// comes with an `SCM_TIMESTAMP` control message, and the end of the stream with none.
/// Unlike `SO_PASSCRED`, it does not make the kernel bind the socket to an address.
pub(crate) fn set_receive_timestamps(fd: impl AsFd) -> io::Result<()> {
    set_int(fd, libc::SO_TIMESTAMP, 1)
}

/// `setsockopt(fd, SOL_SOCKET, name, &value)` for an `int` option.
fn set_int(fd: impl AsFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a readable c_int of the size passed; the fd is borrowed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Makes this process end when `fd`'s peer hangs up, or stops that (`on == false`):
/// `SIGIO` to this process on the socket's state changes (`F_SETOWN`, `O_ASYNC`), whose
/// handler ends the process (by `SIGIO`'s default action) only if the peer has hung up
/// (`poll` says `POLLRDHUP` or `POLLHUP`). The kernel also signals input that arrived
/// before `O_ASYNC` was set, late (it wakes the reader first, then signals): such a
/// `SIGIO` finds no hang-up and is ignored. Turning it on the first time for a socket
/// also installs the handler, makes this process the socket's owner and unblocks
/// `SIGIO` in the calling thread (a parent may have left it blocked, which `execve`
/// keeps); later turns only set or clear `O_ASYNC` (`FIOASYNC`).
#[cfg(feature = "worker")]
pub(crate) fn end_on_hang_up(fd: impl AsFd, on: bool) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    // The handler, the signal mask and the owner are set once per socket watched; each
    // turn on and off after that is only the `O_ASYNC` flag.
    if on && HANG_UP_WATCHED.swap(fd, std::sync::atomic::Ordering::SeqCst) != fd {
        // SAFETY: an all-zero sigaction is valid (empty mask, no flags); it then names
        // `on_sigio`, an `extern "C" fn(c_int)` that makes only async-signal-safe calls.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigio as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGIO, &action, std::ptr::null_mut())
        };
        cvt(rc)?;
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
        // SAFETY: fcntl with F_SETOWN takes an int argument and touches no memory; the
        // descriptor is borrowed for the call.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) })?;
    }
    let on = libc::c_int::from(on);
    // SAFETY: FIOASYNC reads one int through the pointer, which points at `on`.
    cvt(unsafe { libc::ioctl(fd, libc::FIOASYNC, &on) })?;
    Ok(())
}

/// The socket whose hang-up [`on_sigio`] checks.
#[cfg(feature = "worker")]
static HANG_UP_WATCHED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// `SIGIO`'s handler: ends the process by `SIGIO` if the watched socket's peer hung up,
/// and otherwise returns, `errno` unchanged.
#[cfg(feature = "worker")]
extern "C" fn on_sigio(_: libc::c_int) {
    let fd = HANG_UP_WATCHED.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    let mut watched = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `watched` is one writable pollfd; a timeout of 0 never waits. poll(2) is
    // async-signal-safe.
    let ready = unsafe { libc::poll(&mut watched, 1, 0) };
    if ready == 1 && watched.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0 {
        // SAFETY: signal(2) and raise(3) are async-signal-safe and touch no memory of
        // ours; the raised SIGIO, blocked while this handler runs, is taken with its
        // default action (terminate) as the handler returns.
        unsafe {
            libc::signal(libc::SIGIO, libc::SIG_DFL);
            libc::raise(libc::SIGIO);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}
