//! [`AsyncSocket`]: one end of a pair on tokio's reactor, and the readiness loop that
//! every async operation of this module runs in.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use super::reactor::register;
use crate::cred::PeerCred;
use crate::error::{Error, ErrorKind};
use crate::socket::Socket;

/// One end of a pair, registered with tokio's reactor: [`Socket`]'s calls as `async fn`s,
/// and [`AsyncRead`]/[`AsyncWrite`].
///
/// [`new`](AsyncSocket::new) makes **this end** non-blocking (`O_NONBLOCK` belongs to
/// the end, so the other end of the pair, a child's for instance, stays as it was), and
/// [`into_blocking`](AsyncSocket::into_blocking) makes it blocking again. Descriptors
/// received are [`OwnedFd`]s, close-on-exec from the moment they arrive, as with
/// [`Socket::recv_with_fds`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use sockpair::tokio::AsyncSocket;
/// use sockpair::{pair, Type};
///
/// let (a, b) = pair(Type::SEQPACKET)?;
/// let (a, b) = (AsyncSocket::new(a)?, AsyncSocket::new(b)?);
/// a.send(b"ping").await?;
/// let mut buf = [0; 16];
/// let n = b.recv(&mut buf).await?;
/// assert_eq!(&buf[..n], b"ping");
/// # Ok(())
/// # }
/// ```
pub struct AsyncSocket {
    io: AsyncFd<Socket>,
}

impl AsyncSocket {
    /// Registers `socket` with the tokio runtime of this thread, after making it
    /// non-blocking.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::Other`] outside a tokio runtime; otherwise the kernel's error.
    /// The socket is closed then.
    ///
    /// # Panics
    ///
    /// In a runtime built without I/O (no `enable_io` or `enable_all`), as tokio's
    /// `AsyncFd` does: tokio has no way to ask.
    pub fn new(socket: Socket) -> io::Result<AsyncSocket> {
        socket.set_nonblocking(true)?;
        Ok(AsyncSocket {
            io: register(socket, Interest::READABLE | Interest::WRITABLE)?,
        })
    }

    /// The socket back, blocking again and no longer registered with the runtime.
    pub fn into_blocking(self) -> Socket {
        let socket = self.io.into_inner();
        socket
            .set_nonblocking(false)
            .expect("fcntl(F_SETFL) on a descriptor we own cannot fail");
        socket
    }

    /// The socket underneath (non-blocking), for its options: [`Socket::ty`], ...
    pub fn get_ref(&self) -> &Socket {
        self.io.get_ref()
    }

    /// Sends bytes, waiting for room without blocking the runtime; see [`Socket::send`].
    ///
    /// # Errors
    ///
    /// The kernel's error (`EPIPE` once the peer is gone).
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_io(cx, Interest::WRITABLE, |socket| socket.send(buf))).await
    }

    /// Receives bytes, 0 at end of stream; see [`Socket::recv`].
    ///
    /// # Errors
    ///
    /// The kernel's error.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_io(cx, Interest::READABLE, |socket| socket.recv(buf))).await
    }

    /// Sends bytes with descriptors attached; see [`Socket::send_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`Socket::send_with_fds`]; on error nothing was sent.
    pub async fn send_with_fds(&self, buf: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        poll_fn(|cx| {
            self.poll_io(cx, Interest::WRITABLE, |socket| {
                socket.send_with_fds(buf, fds)
            })
        })
        .await
    }

    /// Receives bytes, appending the descriptors that came with them to `fds`; see
    /// [`Socket::recv_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`Socket::recv_with_fds`].
    pub async fn recv_with_fds(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        poll_fn(|cx| {
            self.poll_io(cx, Interest::READABLE, |socket| {
                socket.recv_with_fds(buf, fds)
            })
        })
        .await
    }

    /// Shuts down reading, writing or both; see [`Socket::shutdown`].
    ///
    /// # Errors
    ///
    /// The kernel's error.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.get_ref().shutdown(how)
    }

    /// Who is at the other end; see [`Socket::peer_cred`].
    ///
    /// # Errors
    ///
    /// The kernel's error.
    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        self.get_ref().peer_cred()
    }

    /// Runs `op` once the socket is ready for `interest`, again each time it fails with
    /// `WouldBlock` (which clears the readiness tokio saw, so that the task sleeps until
    /// the kernel says the socket is ready again). Every async operation of this module
    /// is `op`s of the cores tried this way.
    pub(crate) fn poll_io<T, E: Blocked>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&Socket) -> Result<T, E>,
    ) -> Poll<Result<T, E>> {
        loop {
            let ready = match interest.is_readable() {
                true => self.io.poll_read_ready(cx),
                false => self.io.poll_write_ready(cx),
            };
            let mut guard = match ready!(ready) {
                Ok(guard) => guard,
                Err(err) => return Poll::Ready(Err(E::from_io(err))),
            };
            match op(self.io.get_ref()) {
                Err(err) if err.blocked() => guard.clear_ready(),
                other => return Poll::Ready(other),
            }
        }
    }

    /// `op` once, if tokio last saw the socket ready for writing; a `WouldBlock` from
    /// it clears that readiness. `WouldBlock` without trying if tokio has not seen it
    /// ready.
    pub(crate) fn try_write<T>(
        &self,
        mut op: impl FnMut(&Socket) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut outcome = None;
        let tried = self
            .io
            .try_io(Interest::WRITABLE, |socket| match op(socket) {
                Err(err) if err.blocked() => Err(io::ErrorKind::WouldBlock.into()),
                other => {
                    outcome = Some(other);
                    Ok(())
                }
            });
        match (tried, outcome) {
            (Ok(()), Some(outcome)) => outcome,
            _ => Err(Error::new(
                ErrorKind::WouldBlock,
                "send: the socket is not ready for writing (await ready() first)",
            )),
        }
    }

    /// Waits until tokio sees the socket ready for writing.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.io
            .poll_write_ready(cx)
            .map(|ready| ready.map(drop).map_err(Error::from_io))
    }
}

/// An error that may say "not ready, try again" (`WouldBlock`), which [`poll_io`]
/// waits out.
///
/// [`poll_io`]: AsyncSocket::poll_io
pub(crate) trait Blocked {
    fn blocked(&self) -> bool;
    fn from_io(err: io::Error) -> Self;
}

impl Blocked for io::Error {
    fn blocked(&self) -> bool {
        self.kind() == io::ErrorKind::WouldBlock
    }

    fn from_io(err: io::Error) -> Self {
        err
    }
}

impl Blocked for Error {
    fn blocked(&self) -> bool {
        self.kind() == ErrorKind::WouldBlock
    }

    fn from_io(err: io::Error) -> Self {
        crate::channel::drive::io_error("wait for the socket", err)
    }
}

impl AsyncRead for AsyncSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = ready!(self.poll_io(cx, Interest::READABLE, |socket| {
            socket.recv(buf.initialize_unfilled())
        }))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for AsyncSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(cx, Interest::WRITABLE, |socket| socket.send(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // nothing is buffered here
    }

    /// Shuts down writing: the peer reads the end of the stream.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown(Shutdown::Write))
    }
}

impl AsFd for AsyncSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl AsRawFd for AsyncSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.get_ref().as_raw_fd()
    }
}

impl fmt::Debug for AsyncSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AsyncSocket").field(self.get_ref()).finish()
    }
}
