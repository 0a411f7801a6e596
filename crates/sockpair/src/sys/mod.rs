//! The system calls that rustix cannot make for us with the exact semantics we promise,
//! split by concept. This is the bottom layer: it imports nothing from the modules above
//! it (CI checks), and above it only the OS layer (`socket.rs`, `fds.rs`, `cred.rs`,
//! `fork.rs`, `child.rs`, `exe.rs`, `shared_word.rs`, `shm.rs`, `spawn/`) calls into it.
//!
//! - here: `socketpair` with raw `i32` values, so that any domain, type or protocol a
//!   caller names reaches the kernel unchanged (rustix's typed `AddressFamily` is a `u16`
//!   and would silently truncate larger values), and [`cvt`], the one `-1 → errno` check;
//! - `sockopt.rs`: socket options rustix does not read or set as we need
//!   (`SO_PEERCRED` with a pid of 0, `SO_PASSRIGHTS`, `SO_TIMESTAMP`, `O_ASYNC` owners);
//! - `recvmsg.rs`: `recvmsg` without an address, every descriptor it brings owned;
//! - `process.rs`: `fork`, `_exit`, `dup3`, `close_range`, the loader's list of objects
//!   (`dl_iterate_phdr`), and claiming an inherited descriptor;
//! - `spawn/`: starting a program with descriptors at chosen numbers;
//! - `mapping.rs`: a memfd's bytes mapped, read-write or read-only, after the checks
//!   that keep every access from faulting.
#![allow(unsafe_code)]

pub(crate) mod mapping;
pub(crate) mod process;
pub(crate) mod recvmsg;
pub(crate) mod sockopt;
pub(crate) mod spawn;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// The result of a libc call that returns `-1` and sets `errno` on failure: the value,
/// or the kernel's error, unchanged.
#[inline]
pub(crate) fn cvt<T: Copy + PartialEq + From<i8>>(rc: T) -> io::Result<T> {
    if rc == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `socketpair(domain, ty, protocol)`, with both descriptors owned before anything else
/// can fail.
pub(crate) fn socketpair(domain: i32, ty: i32, protocol: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a writable array of two `c_int`s, as socketpair(2) requires.
    cvt(unsafe { libc::socketpair(domain, ty, protocol, fds.as_mut_ptr()) })?;
    // SAFETY: on success the kernel stored two new, open descriptors that nothing else
    // owns; each gets exactly one owner here, before any other call can fail.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
