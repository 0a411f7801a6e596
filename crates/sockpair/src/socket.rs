//! [`Socket`], one end of a pair, and the functions that create pairs.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};

use crate::sys;
use crate::types::{Domain, Flags, Protocol, Type};

/// Creates a connected pair of `AF_UNIX` sockets of type `ty`, both close-on-exec and
/// blocking: `socketpair(AF_UNIX, ty | SOCK_CLOEXEC, 0)`.
///
/// Close-on-exec is the default, as in Rust's std: an end reaches a child only when it
/// is handed over on purpose. The pair is anonymous: bound to no path, so no other
/// process can find or connect to it.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use sockpair::{pair, Type};
///
/// let (mut a, mut b) = pair(Type::STREAM)?;
/// a.write_all(b"ping")?;
/// let mut buf = [0; 4];
/// b.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The kernel's error, e.g. `EMFILE` when the process is out of descriptors.
#[doc(alias = "socketpair")]
pub fn pair(ty: Type) -> io::Result<(Socket, Socket)> {
    pair_with(Domain::UNIX, ty, Flags::CLOEXEC, None)
}

/// Exactly `socketpair(domain, ty | flags, protocol)`; `None` is protocol 0.
///
/// Every value reaches the kernel unchanged and the kernel's answer comes back, so this
/// is also the way to ask what the kernel accepts. The flags are applied by the call
/// itself, atomically, never by a later `fcntl`. On error no descriptor is left open.
///
/// # Examples
///
/// ```
/// use sockpair::{pair_with, Domain, Flags, Type};
///
/// let (a, _b) = pair_with(Domain::UNIX, Type::SEQPACKET, Flags::CLOEXEC | Flags::NONBLOCK, None)?;
/// let mut buf = [0; 8];
/// assert_eq!(a.recv(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
///
/// // AF_INET (2) has no pairs: the kernel says EOPNOTSUPP (95).
/// let err = pair_with(Domain::from(2), Type::STREAM, Flags::CLOEXEC, None).unwrap_err();
/// assert_eq!(err.raw_os_error(), Some(95));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The kernel's errno, unchanged. On Linux: an unknown domain gives `EAFNOSUPPORT`,
/// `AF_INET`/`AF_INET6` give `EOPNOTSUPP`, an unknown type or unknown flag bits give
/// `EINVAL`, a type the domain lacks (`SOCK_RDM`) gives `ESOCKTNOSUPPORT`, and any
/// protocol but 0 gives `EPROTONOSUPPORT`.
#[doc(alias = "socketpair")]
pub fn pair_with(
    domain: Domain,
    ty: Type,
    flags: Flags,
    protocol: Option<Protocol>,
) -> io::Result<(Socket, Socket)> {
    let (a, b) = sys::socketpair(
        domain.raw(),
        ty.raw() | flags.raw(),
        protocol.map_or(0, Protocol::raw),
    )?;
    Ok((Socket::from(a), Socket::from(b)))
}

/// One end of a socket pair, of any type; it owns its descriptor and closes it on drop.
///
/// Reading and writing work through `&Socket` too, so one end can be shared between a
/// reading and a writing thread without cloning the descriptor.
///
/// **Signals**: a `Socket` makes one system call per method, as std's sockets do, so a
/// signal handler installed without `SA_RESTART` that interrupts a blocked call makes it
/// fail with [`io::ErrorKind::Interrupted`]; call it again (`read_exact` and
/// `write_all` retry by themselves). A [`Channel`](crate::Channel) and
/// [`Child`](crate::Child) retry for you and keep their deadlines.
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Sends bytes: `send(fd, buf, MSG_NOSIGNAL)`.
    ///
    /// Returns how many bytes the kernel took: on a stream socket possibly fewer than
    /// `buf.len()` (use [`Write::write_all`] for all of them); on seqpacket and datagram
    /// sockets one call is one whole record.
    ///
    /// # Errors
    ///
    /// A closed peer gives `EPIPE` (stream, seqpacket) or `ECONNREFUSED` (datagram), and
    /// never raises `SIGPIPE`. A non-blocking end that cannot take the data gives
    /// [`io::ErrorKind::WouldBlock`]; a record larger than the send buffer gives
    /// `EMSGSIZE`.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(&self.fd, buf, SendFlags::NOSIGNAL)?)
    }

    /// Receives bytes: `recv(fd, buf, 0)`.
    ///
    /// Returns 0 at end of stream: after the peer closed (stream, seqpacket) or shut down
    /// its writing side. A zero-length seqpacket or datagram record also reads as 0. On
    /// seqpacket and datagram sockets one call takes one record; whatever does not fit
    /// in `buf` is discarded.
    ///
    /// # Errors
    ///
    /// If the peer closed while data it had not read was still queued for it, the next
    /// read fails once with `ECONNRESET` instead of returning EOF.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::net::recv(&self.fd, buf, RecvFlags::empty())?.0)
    }

    /// Shuts down reading, writing or both: `shutdown(fd, how)`.
    ///
    /// `Shutdown::Write` is the half-close: the peer reads EOF, and the other direction
    /// keeps working. It acts on the connection, so it is seen through every copy of
    /// this end (after [`try_clone`](Socket::try_clone) or `fork`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => rustix::net::Shutdown::Read,
            Shutdown::Write => rustix::net::Shutdown::Write,
            Shutdown::Both => rustix::net::Shutdown::Both,
        };
        Ok(rustix::net::shutdown(&self.fd, how)?)
    }

    /// Moves this end into or out of non-blocking mode (`ioctl(FIONBIO)`).
    ///
    /// The mode belongs to the open file description, which this end shares with its
    /// [`try_clone`](Socket::try_clone)s and with copies inherited over `fork`, but not
    /// with the other end of the pair: each end of a pair is its own description, so one
    /// end can be non-blocking while the other is blocking.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        Ok(rustix::io::ioctl_fionbio(&self.fd, nonblocking)?)
    }

    /// A second descriptor for this same end (`fcntl(F_DUPFD_CLOEXEC)`), close-on-exec
    /// like every descriptor this crate makes.
    pub fn try_clone(&self) -> io::Result<Socket> {
        Ok(Socket::from(rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?))
    }

    /// The socket type, as the kernel reports it (`getsockopt(SO_TYPE)`).
    pub fn ty(&self) -> io::Result<Type> {
        let ty = rustix::net::sockopt::socket_type(&self.fd)?;
        Ok(Type::from(ty.as_raw() as i32))
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes use `MSG_NOSIGNAL`, like [`Socket::send`]: a closed peer is `EPIPE`, never
/// `SIGPIPE`.
impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }

    /// One `sendmsg` for all the slices.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut no_control = SendAncillaryBuffer::default();
        Ok(rustix::net::sendmsg(
            &self.fd,
            bufs,
            &mut no_control,
            SendFlags::NOSIGNAL,
        )?)
    }

    /// Nothing to flush: a socket has no user-space buffer.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Socket");
        s.field("fd", &self.fd.as_raw_fd());
        match self.ty() {
            Ok(ty) => s.field("type", &ty),
            Err(err) => s.field("type", &err),
        };
        s.finish()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Takes ownership of a descriptor, which should be a socket; nothing is checked.
impl From<OwnedFd> for Socket {
    fn from(fd: OwnedFd) -> Socket {
        Socket { fd }
    }
}

impl From<Socket> for OwnedFd {
    fn from(socket: Socket) -> OwnedFd {
        socket.fd
    }
}

/// For a stream end; on another type std's `UnixStream` still works, without boundaries.
impl From<Socket> for UnixStream {
    fn from(socket: Socket) -> UnixStream {
        UnixStream::from(socket.fd)
    }
}

/// For a datagram end (or a seqpacket end, whose records std reads the same way).
impl From<Socket> for UnixDatagram {
    fn from(socket: Socket) -> UnixDatagram {
        UnixDatagram::from(socket.fd)
    }
}

impl From<UnixStream> for Socket {
    fn from(stream: UnixStream) -> Socket {
        Socket::from(OwnedFd::from(stream))
    }
}

impl From<UnixDatagram> for Socket {
    fn from(datagram: UnixDatagram) -> Socket {
        Socket::from(OwnedFd::from(datagram))
    }
}
