//! [`SharedWord`]: one 64-bit word that two processes share, in a memfd: a worker notes
//! there which request it has taken (with `pwrite`, [`SharedWord::write_through`]), and
//! its parent, which maps it, reads it without a system call, even after the worker
//! died.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::SealFlags;

use crate::sys::mapping::{Access, Mapping};

/// A word of shared memory, mapped here: create it, hand its memfd to another process,
/// which writes it with [`write_through`](SharedWord::write_through).
#[derive(Debug)]
pub(crate) struct SharedWord {
    mapping: Mapping,
}

impl SharedWord {
    /// A new word holding 0, and its memfd (close-on-exec), sealed so that no process
    /// can shrink or grow it.
    pub(crate) fn new() -> io::Result<(SharedWord, OwnedFd)> {
        let fd = crate::shm::memfd("sockpair-word")?;
        rustix::fs::ftruncate(&fd, 8)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let word = SharedWord::open(fd.as_fd())?;
        Ok((word, fd))
    }

    /// The word of a memfd that [`new`](SharedWord::new) made, mapped once more; the
    /// descriptor may be closed afterwards.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for anything but a memfd of 8 bytes or more sealed against
    /// shrinking; the kernel's error.
    fn open(fd: impl AsFd) -> io::Result<SharedWord> {
        let mapping = Mapping::map(fd.as_fd(), 8, Access::Write)?;
        Ok(SharedWord { mapping })
    }

    fn word(&self) -> &AtomicU64 {
        self.mapping.word().expect("an 8-byte writable mapping")
    }

    pub(crate) fn load(&self) -> u64 {
        self.word().load(Ordering::SeqCst)
    }

    pub(crate) fn store(&self, value: u64) {
        self.word().store(value, Ordering::SeqCst);
    }

    /// Writes `value` into the word of memfd `fd` without mapping it (`pwrite`): for a
    /// process that writes it now and then and would rather not pay for a mapping (two
    /// checks, `mmap`, a page fault, and `munmap` at its end). A mapping of the word
    /// sees the value once the call returns.
    ///
    /// # Errors
    ///
    /// The kernel's error (`ESPIPE` if `fd` is a pipe or a socket), or `WriteZero` if
    /// fewer than 8 bytes went in.
    pub(crate) fn write_through(fd: impl AsFd, value: u64) -> io::Result<()> {
        match rustix::io::pwrite(fd, &value.to_ne_bytes(), 0)? {
            8 => Ok(()),
            _ => Err(io::ErrorKind::WriteZero.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_seen_through_another_mapping_and_unsealed_memfds_are_refused() {
        let (word, fd) = SharedWord::new().unwrap();
        let other = SharedWord::open(&fd).unwrap();
        drop(fd); // the mappings outlive the descriptor
        assert_eq!(other.load(), 0);
        word.store(u64::MAX - 1);
        assert_eq!(other.load(), u64::MAX - 1);
        // Written through a descriptor, with no mapping: seen by the mappings at once.
        let (word, fd) = SharedWord::new().unwrap();
        SharedWord::write_through(&fd, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(word.load(), 0x0102_0304_0506_0708);
        let (_, pipe) = std::io::pipe().unwrap();
        let err = SharedWord::write_through(&pipe, 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESPIPE), "{err}");
        // Nothing can shrink it under a mapping.
        let (_, fd) = SharedWord::new().unwrap();
        assert!(rustix::fs::ftruncate(&fd, 0).is_err());
        // A memfd that could shrink, or is too short, is not mapped.
        let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
        let unsealed = rustix::fs::memfd_create("test", flags).unwrap();
        rustix::fs::ftruncate(&unsealed, 8).unwrap();
        let err = SharedWord::open(&unsealed).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let short = rustix::fs::memfd_create("test", flags).unwrap();
        rustix::fs::ftruncate(&short, 4).unwrap();
        rustix::fs::fcntl_add_seals(&short, SealFlags::SHRINK).unwrap();
        assert_eq!(
            SharedWord::open(&short).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        // Not a memfd at all.
        let (pipe, _) = std::io::pipe().unwrap();
        assert!(SharedWord::open(&pipe).is_err());
    }
}
