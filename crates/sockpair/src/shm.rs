//! Zero-copy large messages: bytes in sealed shared memory, handed over as a
//! descriptor, so that a message of any size costs what passing one descriptor costs.
//!
//! [`SharedMut::new`] makes a writable buffer in a fresh anonymous memfd; fill it, then
//! [`freeze`](SharedMut::freeze) it into a [`Shared`]: the writable mapping is dropped
//! and the memfd sealed (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), so
//! nobody, the sender included, can change, shrink or grow it again. A
//! [`Channel<Shared>`](crate::Channel) sends it as one small frame with the memfd
//! attached; the receiver checks the memfd before it maps anything ([`Shared::from_fd`]):
//! it must carry those seals, hold every byte of its size (not sparse, so that reading
//! it allocates nothing on the reader's account) and stay within a size limit. Then it is
//! mapped read-only, and a hostile sender can neither change the bytes under the reader
//! nor make a read fault (`SIGBUS`).
//!
//! ```
//! use std::io::Write;
//! use sockpair::shm::{Shared, SharedMut};
//! use sockpair::{Channel, Type, pair};
//!
//! let (a, b) = pair(Type::STREAM)?;
//! let mut sender: Channel<Shared> = Channel::new(a)?;
//! let mut receiver: Channel<Shared> = Channel::new(b)?;
//! receiver.accept_fds(true)?; // a Shared travels as a descriptor
//!
//! let mut buffer = SharedMut::new(1 << 20)?;
//! buffer.write_all(b"a large message")?;
//! sender.send(&buffer.freeze()?)?;
//!
//! let message = receiver.recv()?.expect("a message");
//! assert_eq!(message.len(), 1 << 20);
//! assert_eq!(&message[..15], b"a large message");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What a large message still costs is its fresh pages: the kernel allocates and zeroes
//! each, and maps it where it is touched through a mapping (see `docs/benchmarks.md`).
//! Filling a [`SharedMut`] through [`io::Write`] touches no mapping on the sender's side.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{FallocateFlags, FileType, MemfdFlags, SealFlags};
use rustix::io::Errno;

use crate::sys::mapping::{Access, Mapping};

/// The seals a [`Shared`] memfd carries: no writes, no shrinking, no growing, no more
/// seals.
pub const SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// A new anonymous memfd named `name`, close-on-exec, that can be sealed; with
/// `MFD_NOEXEC_SEAL` (Linux 6.3: never executable) where the kernel has it.
pub(crate) fn memfd(name: &str) -> io::Result<OwnedFd> {
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    match rustix::fs::memfd_create(name, flags | MemfdFlags::NOEXEC_SEAL) {
        Err(Errno::INVAL) => Ok(rustix::fs::memfd_create(name, flags)?),
        other => Ok(other?),
    }
}

/// A writable buffer of a fixed length in a fresh anonymous memfd, to fill and then
/// [`freeze`](SharedMut::freeze) into a [`Shared`]. Fill it as an [`io::Write`] (from the
/// start: each write is a `pwrite` into the memfd, the cheapest way to fill fresh pages),
/// or in place as a `[u8]` (`Deref`, `DerefMut`: each page is faulted in as it is first
/// touched, or all at once by [`populate`](SharedMut::populate)). Bytes never written
/// are zero.
pub struct SharedMut {
    fd: OwnedFd,
    map: Option<Mapping>,
    /// Where the next `io::Write` goes.
    written: usize,
}

impl SharedMut {
    /// A buffer of `len` bytes, all zero: a new memfd, sealed against shrinking and
    /// growing, mapped read-write. No page is allocated yet: each is, zeroed, when it is
    /// first written (or by [`populate`](SharedMut::populate), or at the freeze).
    ///
    /// # Errors
    ///
    /// The kernel's: too many descriptors, a `len` too large for a file (`EFBIG`,
    /// `EINVAL`), no address space for the mapping (`ENOMEM`).
    pub fn new(len: usize) -> io::Result<SharedMut> {
        let fd = memfd("sockpair-shared")?;
        let size = u64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        rustix::fs::ftruncate(&fd, size)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW)?;
        let map = match len {
            0 => None,
            _ => Some(Mapping::map(fd.as_fd(), len, Access::Write)?),
        };
        Ok(SharedMut {
            fd,
            map,
            written: 0,
        })
    }

    /// Allocates and maps every page now (`fallocate`, then `MADV_POPULATE_WRITE`,
    /// Linux 5.14; where either fails, the pages come as they are touched): for a
    /// buffer that will be filled in place, two calls instead of a fault per page, and a
    /// way to pay for fresh pages ahead of time (on another thread, before the data is
    /// ready).
    pub fn populate(&mut self) {
        if let Some(map) = &mut self.map {
            // Allocated first, in one call: then mapping them is all that is left.
            let len = map.bytes().len() as u64;
            if rustix::fs::fallocate(&self.fd, FallocateFlags::empty(), 0, len).is_ok() {
                map.populate();
            }
        }
    }

    /// Seals the bytes as they are now and hands them out read-only: the writable
    /// mapping is dropped first (the kernel refuses `F_SEAL_WRITE` while one exists),
    /// every page never written is allocated (so that the memfd is not sparse), and the
    /// memfd is sealed for good ([`SEALS`]).
    ///
    /// # Errors
    ///
    /// The kernel's: no memory for the pages never written (`ENOSPC`), or from sealing
    /// or mapping.
    pub fn freeze(self) -> io::Result<Shared> {
        let SharedMut { fd, map, .. } = self;
        drop(map);
        let stat = rustix::fs::fstat(&fd)?;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        let stored = u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512);
        if stored < size {
            rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, size)?;
        }
        rustix::fs::fcntl_add_seals(&fd, SealFlags::WRITE | SealFlags::SEAL)?;
        Shared::from_fd(fd, u64::MAX)
    }
}

impl Deref for SharedMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], Mapping::bytes)
    }
}

impl DerefMut for SharedMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self.map.as_mut().and_then(Mapping::bytes_mut) {
            Some(bytes) => bytes,
            None => &mut [],
        }
    }
}

impl io::Write for SharedMut {
    /// Writes what fits after what was written before (a `pwrite` into the memfd: the
    /// bytes show in the mapping too); `Ok(0)` once the buffer is full (so `write_all`
    /// of more than it holds fails with `WriteZero`).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.len() - self.written;
        let n = room.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let n = rustix::io::pwrite(&self.fd, &buf[..n], self.written as u64)?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for SharedMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMut")
            .field("len", &self.len())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// Read-only bytes in a sealed memfd: made by [`SharedMut::freeze`], or received
/// ([`Shared::from_fd`], a [`Channel<Shared>`](crate::Channel)). Cloning it is cheap
/// (one mapping, shared); the memfd is closed and unmapped when the last clone drops.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Frozen>,
}

struct Frozen {
    fd: OwnedFd,
    map: Option<Mapping>,
}

impl Shared {
    /// The size limit of [`TryFrom<OwnedFd>`](Shared#impl-TryFrom<OwnedFd>-for-Shared)
    /// and of a [`Channel<Shared>`](crate::Channel): 16 GiB.
    pub const DEFAULT_MAX_LEN: u64 = 16 << 30;

    /// Takes `fd` as a `Shared` if it is a memfd that carries [`SEALS`], holds every byte
    /// of its size (not sparse) and is at most `max_len` bytes long; then maps it
    /// read-only (`MAP_SHARED`, or `MAP_PRIVATE` where a kernel before 6.7 refuses to
    /// share a write-sealed memfd). Nothing is mapped before every check passed.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidData`], saying which check failed: not a memfd (a pipe, a
    /// socket, a regular file), a seal missing, sparse, over the limit; or the kernel's
    /// error from mapping it.
    pub fn from_fd(fd: OwnedFd, max_len: u64) -> io::Result<Shared> {
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        let stat = rustix::fs::fstat(&fd)?;
        let seals = match rustix::fs::fcntl_get_seals(&fd) {
            Ok(seals) => seals,
            Err(Errno::INVAL) => {
                let kind = FileType::from_raw_mode(stat.st_mode);
                return Err(invalid(format!(
                    "a shared message must be a sealed memfd, not {}",
                    match kind {
                        FileType::Fifo => "a pipe",
                        FileType::Socket => "a socket",
                        FileType::RegularFile => "a file that cannot be sealed",
                        _ => "this kind of file",
                    }
                )));
            }
            Err(err) => return Err(err.into()),
        };
        if !seals.contains(SEALS) {
            let missing: Vec<&str> = [
                (SealFlags::WRITE, "F_SEAL_WRITE"),
                (SealFlags::SHRINK, "F_SEAL_SHRINK"),
                (SealFlags::GROW, "F_SEAL_GROW"),
                (SealFlags::SEAL, "F_SEAL_SEAL"),
            ]
            .into_iter()
            .filter(|(seal, _)| !seals.contains(*seal))
            .map(|(_, name)| name)
            .collect();
            return Err(invalid(format!(
                "a shared message's memfd lacks {}: its sender could still change it",
                missing.join(", ")
            )));
        }
        let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        let stored = u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512);
        if stored < size {
            return Err(invalid(format!(
                "a sparse shared message: {stored} of its {size} bytes are stored (reading \
                 the rest would allocate memory on the reader's account)"
            )));
        }
        if size > max_len {
            return Err(invalid(format!(
                "a shared message of {size} bytes; the limit is {max_len}"
            )));
        }
        let len = usize::try_from(size)
            .map_err(|_| invalid(format!("{size} bytes do not fit in memory")))?;
        let map = match len {
            0 => None,
            _ => Some(Mapping::map(fd.as_fd(), len, Access::Read)?),
        };
        Ok(Shared {
            inner: Arc::new(Frozen { fd, map }),
        })
    }
}

impl TryFrom<OwnedFd> for Shared {
    type Error = io::Error;

    /// [`Shared::from_fd`] with [`Shared::DEFAULT_MAX_LEN`].
    fn try_from(fd: OwnedFd) -> io::Result<Shared> {
        Shared::from_fd(fd, Shared::DEFAULT_MAX_LEN)
    }
}

impl Deref for Shared {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.inner.map.as_ref().map_or(&[], Mapping::bytes)
    }
}

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsFd for Shared {
    /// The sealed memfd (to send it yourself, or to `dup` it).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "bytes")]
impl From<Shared> for bytes::Bytes {
    /// The same bytes, not copied: the `Bytes` keeps the mapping alive.
    fn from(shared: Shared) -> bytes::Bytes {
        bytes::Bytes::from_owner(shared)
    }
}
