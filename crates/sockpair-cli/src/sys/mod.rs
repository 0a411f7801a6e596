//! The command's system calls: the raw `libc` calls that `sockpair bench` measures
//! everything else against, and the signal mask calls of `descendants`. The crate denies
//! `unsafe_code`; this file allows it, and so do `demo.rs` and `bench/child.rs` for one
//! call each of an `unsafe fn` of the library (`fork`, `Socket::from_inherited`).
#![allow(unsafe_code)]

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

/// A set of signals, blocked in every thread started after [`block`].
pub struct Blocked(libc::sigset_t);

/// Blocks `signals` in the calling thread (and so in every thread it starts later), so
/// that only [`wait`] receives them. Children do not inherit the mask: both spawn paths
/// give them an empty one.
pub fn block(signals: &[libc::c_int]) -> io::Result<Blocked> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises `set`; sigaddset and pthread_sigmask read it.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &signal in signals {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        set.assume_init()
    };
    // SAFETY: `set` is an initialised signal set; no old mask is asked for.
    match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(Blocked(set)),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Waits for one of the blocked signals (`sigwait`) and returns it.
pub fn wait(blocked: &Blocked) -> io::Result<libc::c_int> {
    let mut signal = 0;
    // SAFETY: `blocked.0` is an initialised set and `signal` a writable int.
    match unsafe { libc::sigwait(&blocked.0, &mut signal) } {
        0 => Ok(signal),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Ends this process by `signal` itself, as if it had not been caught, so that our own
/// parent sees how we ended; exits with 128 + `signal` should the signal not end us.
pub fn die_of(signal: libc::c_int) -> ! {
    // SAFETY: restoring the default action and unblocking the signal in this thread
    // touch no memory of ours; raise sends it to this thread, where it now terminates
    // the process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), std::ptr::null_mut());
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}

/// Whether descriptor 1 was closed when the process started (`sockpair ... >&-`): std
/// opens `/dev/null` in its place before `main`, which would make every write to stdout
/// succeed and vanish. Read before std does that, from `.init_array`.
static STDOUT_CLOSED_AT_START: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

sockpair::__run_before_main!(note_closed_stdout);

fn note_closed_stdout() {
    // SAFETY: F_GETFD on a plain number reads its flags and touches no memory; a closed
    // number gives EBADF, nothing else.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } == -1 {
        STDOUT_CLOSED_AT_START.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether descriptor 1 was closed when the process started.
pub fn stdout_closed_at_start() -> bool {
    STDOUT_CLOSED_AT_START.load(std::sync::atomic::Ordering::Relaxed)
}

/// Control space for a `recvmsg` with room for descriptors: `CMSG_SPACE(253 fds)`.
const CONTROL: usize = (16 + 253 * 4usize).div_ceil(8) * 8;

/// One `sendmsg(fd, [header, payload], MSG_NOSIGNAL)`: a frame written by hand, as the
/// `libc-framed` row does (an empty `header` on records).
pub fn sendmsg(fd: impl AsFd, header: &[u8], payload: &[u8]) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: header.as_ptr().cast_mut().cast(),
            iov_len: header.len(),
        },
        libc::iovec {
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        },
    ];
    // SAFETY: an all-zero msghdr is valid (no name, no iovec, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` points to two iovecs over buffers valid for reads of their lengths
    // during the call (sendmsg only reads them); the fd is borrowed.
    let n = unsafe { libc::sendmsg(fd.as_fd().as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One `recvmsg(fd, [header, payload], MSG_CMSG_CLOEXEC)` with room for descriptors,
/// as a hand-written framed reader makes it (it closes any descriptor that came).
pub fn recvmsg(fd: impl AsFd, header: &mut [u8], payload: &mut [u8]) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: header.as_mut_ptr().cast(),
            iov_len: header.len(),
        },
        libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        },
    ];
    let mut control = [0u64; CONTROL / 8];
    // SAFETY: an all-zero msghdr is valid (no name, no iovec, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL as _;
    // SAFETY: `msg` points to two iovecs over buffers valid for writes of their lengths
    // and to `CONTROL` bytes of `control`; the fd is borrowed.
    let n = unsafe { libc::recvmsg(fd.as_fd().as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if msg.msg_controllen > 0 {
        return Err(io::Error::other("the benchmark sends no descriptors"));
    }
    Ok(n as usize)
}
