//! [`SharedWord`]: one 64-bit word that two processes share, in a memfd each maps: a
//! worker notes there which request it has taken, and its parent reads it without a
//! system call, even after the worker died.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::SealFlags;

use crate::sys::mapping::{Access, Mapping};

/// A word of shared memory: create it, hand its memfd to another process, which
/// [`open`](SharedWord::open)s it.
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

    /// The word of a memfd that [`new`](SharedWord::new) made (in this process or
    /// another); the descriptor may be closed afterwards.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for anything but a memfd of 8 bytes or more sealed against
    /// shrinking; the kernel's error.
    pub(crate) fn open(fd: impl AsFd) -> io::Result<SharedWord> {
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
