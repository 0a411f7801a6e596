//! Mapping one 64-bit word of a memfd, shared with other processes that map it too.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::SealFlags;

/// The first 8 bytes of a memfd, mapped `MAP_SHARED` read-write: what one process
/// stores there, another that maps the same memfd loads.
#[derive(Debug)]
pub(crate) struct Mapped {
    word: NonNull<AtomicU64>,
}

// SAFETY: the mapping is only reached through `&AtomicU64`, which any thread may use.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first word of `fd`, which must be sealed against shrinking and hold at
    /// least 8 bytes (checked here: a memfd that could shrink under the mapping would
    /// make a later access fault).
    pub(crate) fn map(fd: BorrowedFd<'_>) -> io::Result<Mapped> {
        let seals = rustix::fs::fcntl_get_seals(fd)?;
        let size = rustix::fs::fstat(fd)?.st_size;
        if !seals.contains(SealFlags::SHRINK) || size < 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a shared word needs a memfd of at least 8 bytes sealed against shrinking",
            ));
        }
        // SAFETY: a new mapping chosen by the kernel (no address given) of 8 bytes of a
        // memfd that holds them and cannot shrink; nothing else refers to it yet.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let word = NonNull::new(at.cast::<AtomicU64>()).expect("mmap never maps address 0");
        Ok(Mapped { word })
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: `word` points to the start of a live, page-aligned mapping of at least
        // 8 bytes that cannot be cut short (the memfd is sealed against shrinking) and
        // is unmapped only when `self` drops; other processes change it only through
        // atomic accesses of their own mapping.
        unsafe { self.word.as_ref() }
    }

    pub(crate) fn load(&self) -> u64 {
        self.word().load(Ordering::SeqCst)
    }

    pub(crate) fn store(&self, value: u64) {
        self.word().store(value, Ordering::SeqCst);
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of 8 bytes, unmapped once; no reference
        // into it outlives `self` (`word` borrows `self`).
        unsafe { libc::munmap(self.word.as_ptr().cast(), 8) };
    }
}
