//! Process-level calls: `fork`, `_exit`, `on_exit`, the loader's list of objects, and
//! claiming a descriptor that this process inherited by number.

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

/// Makes a call to `exit` in this process, and in every child it forks from here on,
/// end as `_exit` does once C's streams are flushed: the exit handlers registered
/// later still run (first, as always), those registered so far do not. glibc's
/// `on_exit`, whose handler learns the status; elsewhere nothing changes.
///
/// # Errors
///
/// `OutOfMemory` if libc has no room for one more handler.
#[cfg(feature = "worker")]
pub(crate) fn skip_exit_handlers_so_far() -> io::Result<()> {
    #[cfg(target_env = "gnu")]
    {
        unsafe extern "C" {
            /// glibc's `on_exit(3)`: `atexit` whose handler is given `exit`'s status.
            fn on_exit(
                handler: extern "C" fn(libc::c_int, *mut libc::c_void),
                argument: *mut libc::c_void,
            ) -> libc::c_int;
        }
        extern "C" fn end_now(status: libc::c_int, _: *mut libc::c_void) {
            // SAFETY: fflush(NULL) flushes every C stream, as `exit` would next, and
            // touches no memory of ours; `_exit` never returns (a handler may call it,
            // unlike `exit`).
            unsafe {
                libc::fflush(std::ptr::null_mut());
                libc::_exit(status)
            }
        }
        // SAFETY: `end_now` matches the handler type and ignores its argument (null);
        // on_exit only appends it to libc's list (it fails only without memory).
        match unsafe { on_exit(end_now, std::ptr::null_mut()) } {
            0 => Ok(()),
            _ => Err(io::Error::from(io::ErrorKind::OutOfMemory)),
        }
    }
    #[cfg(not(target_env = "gnu"))]
    Ok(())
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

/// The address ranges of the code (the executable `PT_LOAD` segments) of the loaded
/// object (the executable, or a shared library) that holds `addr`, from the loader's
/// own list (`dl_iterate_phdr`); empty if no loaded object holds `addr`.
#[cfg(feature = "worker")]
pub(crate) fn code_ranges(addr: usize) -> Vec<std::ops::Range<usize>> {
    struct Search {
        addr: usize,
        code: Vec<std::ops::Range<usize>>,
    }
    extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        search: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the call,
        // whose `dlpi_phdr` points at `dlpi_phnum` program headers; `search` is the
        // `&mut Search` passed to dl_iterate_phdr below, used by nothing else meanwhile.
        let (info, search) = unsafe { (&*info, &mut *search.cast::<Search>()) };
        let headers: &[libc::Elf64_Phdr] = match info.dlpi_phdr.is_null() {
            true => &[],
            // SAFETY: as above.
            false => unsafe {
                std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum))
            },
        };
        let loaded = headers
            .iter()
            .filter(|header| header.p_type == libc::PT_LOAD);
        let range = |header: &libc::Elf64_Phdr| {
            let start = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
            start..start.saturating_add(header.p_memsz as usize)
        };
        if !loaded
            .clone()
            .any(|header| range(header).contains(&search.addr))
        {
            return 0; // another object: go on
        }
        search.code = loaded
            .filter(|header| header.p_flags & libc::PF_X != 0)
            .map(range)
            .collect();
        1
    }
    let mut search = Search {
        addr,
        code: Vec::new(),
    };
    // SAFETY: `visit` matches the callback type, reads only what the loader passes it,
    // and writes only into `search`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.code
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

/// `dup3(fd, number)`: `number` now refers to what `fd` does, close-on-exec or not as
/// `cloexec` says (also when `fd` already is `number`).
///
/// # Safety
///
/// Whatever owned `number` before (if anything) must never use or close it again.
#[cfg(feature = "worker")]
pub(crate) unsafe fn dup_to(
    fd: std::os::fd::BorrowedFd<'_>,
    number: RawFd,
    cloexec: bool,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() == number {
        let flags = if cloexec { libc::FD_CLOEXEC } else { 0 };
        // SAFETY: F_SETFD takes an int and touches no memory; `fd` is open (borrowed).
        return cvt(unsafe { libc::fcntl(number, libc::F_SETFD, flags) }).map(drop);
    }
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 takes plain integers and touches no memory; `fd` is open for the call
    // (borrowed); the former owner of `number` is the caller's concern (above).
    cvt(unsafe { libc::dup3(fd.as_raw_fd(), number, flags) }).map(drop)
}
