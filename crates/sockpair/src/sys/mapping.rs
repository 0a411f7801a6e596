//! Mapping a memfd's bytes into this process: read-write and shared (a writer, or a
//! word two processes share), or read-only (a sealed message), with the checks that
//! make every later access safe done before the mapping exists.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use rustix::fs::SealFlags;

/// How a memfd is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read-write, `MAP_SHARED`: what this process writes, the memfd holds.
    Write,
    /// Read-only, `MAP_SHARED` (`MAP_PRIVATE` where the kernel refuses to share a
    /// write-sealed memfd, before Linux 6.7: the same bytes, since nothing can write
    /// them any more).
    Read,
}

/// `len` bytes of a memfd, mapped; unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    at: NonNull<u8>,
    len: usize,
    access: Access,
}

// SAFETY: the mapping is plain memory owned by this value; shared access goes through
// `&[u8]` (or atomics), exclusive access through `&mut self`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes (more than 0) of `fd`, which must be a memfd sealed
    /// against shrinking and holding at least `len` bytes, and, for [`Access::Read`],
    /// sealed against writes: checked here, so that no access to the mapping can fault
    /// (`SIGBUS`) because the memfd shrank, and no byte of it can change.
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize, access: Access) -> io::Result<Mapping> {
        let seals = rustix::fs::fcntl_get_seals(fd)?;
        let size = rustix::fs::fstat(fd)?.st_size;
        let needed = match access {
            Access::Write => SealFlags::SHRINK,
            Access::Read => SealFlags::SHRINK | SealFlags::WRITE,
        };
        if len == 0 || !seals.contains(needed) || (size as u128) < len as u128 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a mapping needs a memfd sealed against shrinking (and, to read, against \
                 writes) that holds the bytes mapped",
            ));
        }
        let (prot, flags) = match access {
            Access::Write => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED),
            Access::Read => (libc::PROT_READ, libc::MAP_SHARED),
        };
        // SAFETY: a new mapping at an address the kernel chooses, of bytes the memfd
        // holds and cannot lose (sealed against shrinking, checked above); nothing
        // refers to it yet.
        let mut at =
            unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
        if at == libc::MAP_FAILED
            && access == Access::Read
            && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        {
            // SAFETY: as above; a private read-only mapping of the same bytes.
            at = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_PRIVATE,
                    fd.as_raw_fd(),
                    0,
                )
            };
        }
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = NonNull::new(at.cast::<u8>()).expect("mmap never maps address 0");
        Ok(Mapping { at, len, access })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `at` is a live mapping of `len` readable bytes that cannot be cut
        // short (checked in `map`) and is unmapped only when `self` drops; no `&mut`
        // to it exists while `&self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.at.as_ptr(), self.len) }
    }

    /// The bytes, to write; `None` for a read-only mapping.
    pub(crate) fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        if self.access == Access::Read {
            return None;
        }
        // SAFETY: as in `bytes`, writable (`Access::Write`), and `&mut self` makes this
        // the only reference into it in this process.
        Some(unsafe { std::slice::from_raw_parts_mut(self.at.as_ptr(), self.len) })
    }

    /// The first 8 bytes as a word other processes may change at the same time; `None`
    /// for a mapping shorter than that.
    #[cfg(feature = "worker")]
    pub(crate) fn word(&self) -> Option<&std::sync::atomic::AtomicU64> {
        if self.len < 8 || self.access == Access::Read {
            return None;
        }
        // SAFETY: the mapping starts on a page boundary (so is aligned for a u64) and
        // holds at least 8 bytes (checked); every process touches it only atomically.
        Some(unsafe { &*self.at.as_ptr().cast::<std::sync::atomic::AtomicU64>() })
    }

    /// Asks the kernel to fault in every page now, writable (`MADV_POPULATE_WRITE`,
    /// Linux 5.14): one call instead of a fault per page as they are first written.
    /// Nothing happens where the kernel lacks it.
    pub(crate) fn populate(&mut self) {
        if self.access == Access::Write {
            // SAFETY: advice on this process's own live mapping, of its exact extent;
            // it changes no byte (fresh pages are zero either way).
            unsafe { libc::madvise(self.at.as_ptr().cast(), self.len, libc::MADV_POPULATE_WRITE) };
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of `len` bytes, unmapped once; no reference
        // into it outlives `self` (every view borrows `self`).
        unsafe { libc::munmap(self.at.as_ptr().cast(), self.len) };
    }
}
