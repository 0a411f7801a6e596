//! Process-level calls: `fork`, `_exit`, `dladdr`, and claiming a descriptor that this
//! process inherited by number.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// `fork()`: `Some(child pid)` in the parent, `None` in the child.
///
/// # Safety
///
/// In the child of a multithreaded parent, only async-signal-safe work may follow
/// (see the crate-level `fork` docs).
pub(crate) unsafe fn fork() -> io::Result<Option<i32>> {
    // SAFETY: the caller upholds the async-signal-safety contract for the child.
    match cvt(unsafe { libc::fork() })? {
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

/// Takes ownership of the socket that this process inherited as descriptor number
/// `fd`, close-on-exec from here on, after checking by number alone (no `BorrowedFd`
/// exists before the checks pass) that it is open and a socket.
///
/// # Errors
///
/// `EBADF` if no open descriptor has that number (a negative one included), `ENOTSOCK`
/// if it is not a socket, or the kernel's error from `fstat` or `fcntl`. On error the
/// descriptor is left as it was, unowned.
///
/// # Safety
///
/// Nothing else in this process may own or use descriptor `fd`: on success it belongs
/// to the returned `OwnedFd`, which closes it on drop.
pub(crate) unsafe fn claim_socket(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat takes a plain number (a closed one gives EBADF, nothing else) and
    // writes a whole `stat` into `stat`, valid for writes of one.
    cvt(unsafe { libc::fstat(fd, stat.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialised `stat`.
    let mode = unsafe { stat.assume_init_ref() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::from_raw_os_error(libc::ENOTSOCK));
    }
    // SAFETY: F_SETFD on a plain number takes an int and touches no memory.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: the descriptor is open (fstat succeeded) and, as the caller promises,
    // owned by nothing else: it gets exactly one owner here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// `close_range(first, ~0, 0)`: closes every descriptor from `first` on (with a loop
/// over `/proc/self/fd` where the kernel lacks the call, before 5.9).
///
/// # Safety
///
/// Values of this process may own some of those descriptors: nothing may use or drop
/// them afterwards (a forked child that never returns to them).
#[cfg(feature = "worker")]
pub(crate) unsafe fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range takes plain integers and touches no memory; what it closes
    // is the caller's concern (above).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in open {
        // SAFETY: as above; closing the directory's own descriptor (already closed) fails
        // harmlessly with EBADF.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// `dup2(fd, number)`: `number` now refers to what `fd` does (without close-on-exec).
///
/// # Safety
///
/// Whatever owned `number` before (if anything) must never use or close it again.
#[cfg(feature = "worker")]
pub(crate) unsafe fn dup_to(fd: std::os::fd::BorrowedFd<'_>, number: RawFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 takes plain integers and touches no memory; `fd` is open for the call
    // (borrowed); the former owner of `number` is the caller's concern (above).
    cvt(unsafe { libc::dup2(fd.as_raw_fd(), number) }).map(drop)
}
