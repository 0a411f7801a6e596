//! Messages too large for one seqpacket or datagram record travel as a sealed `memfd`.
//!
//! The kernel caps a record at the sender's socket buffer (about 208 KiB by default). A
//! larger message is written to an anonymous `memfd`, sealed against any change, and sent
//! as the last descriptor of an otherwise empty record. The receiver reads it back; the
//! seals guarantee the sender can no longer change or resize what it sent. What a
//! receiver accepts as such a message is decided by [`check`], without system calls.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};

use crate::error::{Error, ErrorKind};

/// The seals of a message memfd: no writes, no resizing, no more seals (those of a
/// [`Shared`](crate::shm::Shared)).
pub(crate) use crate::shm::SEALS;

/// A sealed memfd holding `payload`. Created with `MFD_NOEXEC_SEAL` (Linux 6.3: it can
/// never be made executable) where the kernel has it; older kernels answer `EINVAL`, and
/// then it is made without.
pub(crate) fn seal(payload: &[u8]) -> io::Result<OwnedFd> {
    seal_with(payload, true)
}

/// [`seal`], asking for `MFD_NOEXEC_SEAL` or not (for the test of the fallback).
pub(crate) fn seal_with(payload: &[u8], noexec: bool) -> io::Result<OwnedFd> {
    let fd = match noexec {
        true => crate::shm::memfd("sockpair-message")?,
        false => rustix::fs::memfd_create(
            "sockpair-message",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?,
    };
    let mut file = File::from(fd);
    file.write_all(payload)?;
    rustix::fs::fcntl_add_seals(&file, SEALS)?;
    Ok(file.into())
}

/// Whether `fd` is a memfd with all of our seals: the mark of a large message.
pub(crate) fn is_sealed(fd: impl AsFd) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|seals| seals.contains(SEALS))
}

/// What a sealed memfd says about itself: its seals, its size and the bytes it really
/// holds (`st_blocks` × 512).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    pub seals: SealFlags,
    pub size: u64,
    pub stored: u64,
}

/// Whether a memfd with these `facts` is a message this end takes, and its length: it
/// must carry all of our seals, be at most `max` bytes, and hold the bytes it claims (a
/// sparse file claims memory its sender never spent: reading it would make us spend it).
pub(crate) fn check(facts: Facts, max: usize) -> Result<usize, Error> {
    if !facts.seals.contains(SEALS) {
        return Err(Error::new(
            ErrorKind::Decode,
            "a large message's memfd must be sealed against writes, shrinking and growing",
        ));
    }
    if facts.size > max as u64 {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "a message of {} bytes is over the limit of {max} (max_frame_len)",
                facts.size
            ),
        ));
    }
    // Pages are filled whole: a file written to the end holds at least its size,
    // rounded down to a page.
    if facts.stored < facts.size & !4095 {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "a large message's memfd claims {} bytes but holds {}: a sparse file is refused",
                facts.size, facts.stored
            ),
        ));
    }
    Ok(facts.size as usize)
}

/// The contents of the memfd of a large message, after [`check`]: read as it comes,
/// into memory that grows with what was read.
pub(crate) fn read(fd: OwnedFd, max: usize) -> Result<Vec<u8>, Error> {
    let io = |err: io::Error| Error::with_source(ErrorKind::Io, "reading a large message", err);
    let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|err| io(err.into()))?;
    let stat = rustix::fs::fstat(&fd).map_err(|err| io(err.into()))?;
    let len = check(
        Facts {
            seals,
            size: stat.st_size as u64,
            stored: stat.st_blocks as u64 * 512,
        },
        max,
    )?;
    let mut payload = Vec::new();
    payload.try_reserve_exact(len).map_err(|_| {
        Error::new(
            ErrorKind::TooLarge,
            format!("no memory for a message of {len} bytes"),
        )
    })?;
    // From offset 0: the sender's writes moved the file offset, which we share with it
    // (a passed descriptor is the same open file description).
    rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0)).map_err(|err| io(err.into()))?;
    File::from(fd)
        .take(len as u64)
        .read_to_end(&mut payload)
        .map_err(io)?;
    if payload.len() != len {
        return Err(Error::new(
            ErrorKind::Decode,
            "a large message's memfd ended early",
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    #[test]
    fn a_memfd_made_with_or_without_noexec_reads_back() {
        let payload: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
        // `false` is the branch taken where the kernel answers EINVAL (before 6.3).
        for noexec in [true, false] {
            let fd = seal_with(&payload, noexec).unwrap();
            assert!(is_sealed(&fd));
            assert!(read(fd, usize::MAX).unwrap() == payload, "noexec: {noexec}");
        }
        let fd = seal(&payload).unwrap();
        let err = read(fd, 99_999).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
    }

    #[test]
    fn only_a_sealed_dense_file_within_the_limit_passes() {
        let facts = |seals, size, stored| Facts {
            seals,
            size,
            stored,
        };
        assert_eq!(
            check(facts(SEALS, 10_000, 3 * PAGE), 10_000).unwrap(),
            10_000
        );
        let err = check(facts(SEALS, 10_001, 3 * PAGE), 10_000).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert!(err.to_string().contains("10001"), "{err}");
        let unsealed = SEALS.difference(SealFlags::WRITE);
        assert_eq!(
            check(facts(unsealed, 10, PAGE), 100).unwrap_err().kind(),
            ErrorKind::Decode
        );
        // 1 TiB claimed, one page held.
        let sparse = check(facts(SEALS, 1 << 40, PAGE), usize::MAX).unwrap_err();
        assert!(sparse.to_string().contains("sparse"), "{sparse}");
    }
}
