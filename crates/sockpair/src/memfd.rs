//! Messages too large for one seqpacket or datagram record travel as a sealed `memfd`.
//!
//! The kernel caps a record at the sender's socket buffer (about 208 KiB by default). A
//! larger message is written to an anonymous `memfd`, sealed against any change, and sent
//! as the last descriptor of an otherwise empty record. The receiver reads it back; the
//! seals guarantee the sender can no longer change or resize what it sent.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use rustix::fs::{MemfdFlags, SealFlags};

use crate::error::{Error, ErrorKind};

/// The seals of a message memfd: no writes, no resizing, no more seals.
const SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// A sealed memfd holding `payload`.
pub(crate) fn seal(payload: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        "sockpair-message",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = File::from(fd);
    file.write_all(payload)?;
    rustix::fs::fcntl_add_seals(&file, SEALS)?;
    Ok(file.into())
}

/// Whether `fd` is a memfd with all of our seals: the mark of a large message.
pub(crate) fn is_sealed(fd: impl AsFd) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|seals| seals.contains(SEALS))
}

/// The contents of a sealed memfd, refused if longer than `max`.
pub(crate) fn read(fd: OwnedFd, max: usize) -> Result<Vec<u8>, Error> {
    let len = rustix::fs::fstat(&fd).map_err(io::Error::from)?.st_size as u64;
    if len > max as u64 {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("a message of {len} bytes is over the limit of {max} (max_frame_len)"),
        ));
    }
    // From offset 0: the sender's writes moved the file offset, which we share with it
    // (a passed descriptor is the same open file description).
    let mut payload = vec![0; len as usize];
    File::from(fd).read_exact_at(&mut payload, 0)?;
    Ok(payload)
}
