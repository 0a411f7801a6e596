//! [`AsyncChannel`] and its halves, [`AsyncSender`] and [`AsyncReceiver`]: the
//! blocking channel's transport cores, driven by tokio's reactor instead of `poll`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use tokio::io::Interest;

use super::socket::AsyncSocket;
use crate::channel::receiver::{ends_messages, receive};
use crate::channel::sender::{flush_core, has_unsent, send_message};
use crate::channel::{Channel, Parts, RxCore, TxCore, Waits};
use crate::error::Error;
use crate::frame::Framing;
use crate::message::{Encode, EncodeAs, Receive};
use crate::socket::Socket;

/// Whole messages over one end of a pair, on tokio: the async twin of [`Channel`], with
/// the same framings, limits, errors and descriptor rules, so that a blocking `Channel`
/// at one end and an `AsyncChannel` at the other understand each other.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sockpair::tokio::AsyncChannel;
/// use sockpair::{pair, Channel, Type};
///
/// let (a, b) = pair(Type::STREAM)?;
/// let mut a: AsyncChannel<String> = AsyncChannel::new(a)?;
/// // A blocking channel on a thread: the child's side, say.
/// let echo = std::thread::spawn(move || -> Result<(), sockpair::Error> {
///     let mut b: Channel<String> = Channel::new(b)?;
///     while let Some(text) = b.recv()? {
///         b.send(&text.to_uppercase())?;
///     }
///     Ok(())
/// });
/// a.send("hello").await?;
/// assert_eq!(a.recv().await?.as_deref(), Some("HELLO"));
/// drop(a); // the thread reads the end of the stream and returns
/// echo.join().unwrap()?;
/// # Ok(())
/// # }
/// ```
///
/// # Cancel safety
///
/// - **Receiving** ([`recv`](AsyncChannel::recv), [`recv_with_fds`](AsyncChannel::recv_with_fds),
///   the [`AsyncReceiver`] stream) is cancel safe: what has arrived of a message, and
///   its descriptors, stay in the channel when the future is dropped, and the next
///   receive gets the message whole.
/// - **Sending** never leaves half a frame followed by another on the wire. A
///   [`send`](AsyncChannel::send) first waits for room, having sent nothing; then, in one
///   step that does not wait, it writes what the socket takes of the frame, with its
///   descriptors on the first byte; then it waits until the rest is written. Dropped
///   while waiting for room, **nothing of the message was sent**. Dropped after that
///   step, the message is **committed**: its rest is kept, and the next send, or
///   [`flush`](AsyncChannel::flush), writes it before anything else.
/// - To know which of the two happened, send in the three steps yourself:
///   [`ready`](AsyncChannel::ready) (waits, sends nothing new), then
///   [`try_send`](AsyncChannel::try_send) (does not wait: `Ok` means committed,
///   [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) means nothing was sent), then
///   [`flush`](AsyncChannel::flush) (writes only the committed rest). Each step may be
///   cancelled; none sends a message twice.
///
/// Timeouts are the runtime's: wrap any call in `tokio::time::timeout`.
pub struct AsyncChannel<Tx, Rx = Tx> {
    tx: AsyncSender<Tx>,
    rx: AsyncReceiver<Rx>,
}

impl<Tx, Rx> AsyncChannel<Tx, Rx> {
    /// A channel over `socket`, framed as its type suggests, as [`Channel::new`]; the
    /// socket is made non-blocking ([`AsyncSocket::new`]).
    ///
    /// # Errors
    ///
    /// As [`Channel::new`] and [`AsyncSocket::new`].
    pub fn new(socket: Socket) -> io::Result<Self> {
        Self::from_blocking(Channel::new(socket)?)
    }

    /// A channel over a stream `socket` with the given framing, as
    /// [`Channel::with_framing`].
    ///
    /// # Errors
    ///
    /// As [`Channel::with_framing`] and [`AsyncSocket::new`].
    pub fn with_framing(socket: Socket, framing: Framing) -> io::Result<Self> {
        Self::from_blocking(Channel::with_framing(socket, framing)?)
    }

    /// A blocking channel carried on in async code: what it had read of a message and
    /// left unsent of one carry over. Its timeouts do not (use the runtime's).
    ///
    /// # Errors
    ///
    /// As [`AsyncSocket::new`].
    pub fn from_blocking(channel: Channel<Tx, Rx>) -> io::Result<Self> {
        let (socket, parts) = channel.into_parts();
        let socket = Arc::new(AsyncSocket::new(socket)?);
        Ok(AsyncChannel {
            tx: AsyncSender {
                socket: socket.clone(),
                split: false,
                core: parts.tx,
                scratch: parts.scratch,
                types: PhantomData,
            },
            rx: AsyncReceiver {
                socket,
                core: parts.rx,
                done: false,
                types: PhantomData,
            },
        })
    }

    /// The blocking channel again, carrying on where this one stopped; its socket is
    /// blocking again.
    pub fn into_blocking(self) -> Channel<Tx, Rx> {
        let AsyncChannel { mut tx, rx } = self;
        let parts = Parts {
            tx: std::mem::replace(&mut tx.core, TxCore::Records),
            rx: rx.core,
            scratch: std::mem::take(&mut tx.scratch),
        };
        drop(tx);
        let socket = match Arc::try_unwrap(rx.socket) {
            Ok(socket) => socket.into_blocking(),
            Err(_) => unreachable!("a channel holds the only two references"),
        };
        Channel::from_parts(socket, parts)
    }

    /// The two halves, to send and receive in two tasks; see [`Channel::split`].
    /// Dropping the [`AsyncSender`] shuts down writing, so that the peer reads the end
    /// of the stream while the [`AsyncReceiver`] reads on.
    pub fn split(self) -> (AsyncSender<Tx>, AsyncReceiver<Rx>) {
        let AsyncChannel { mut tx, rx } = self;
        tx.split = true;
        (tx, rx)
    }

    /// The largest message accepted; see [`Receiver::max_frame_len`](crate::Receiver::max_frame_len).
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.rx.max_frame_len(max);
        self
    }

    /// Whether this end takes descriptors; see [`Receiver::accept_fds`](crate::Receiver::accept_fds).
    ///
    /// # Errors
    ///
    /// As [`Receiver::accept_fds`](crate::Receiver::accept_fds).
    pub fn accept_fds(&mut self, accept: bool) -> io::Result<&mut Self> {
        self.rx.accept_fds(accept)?;
        Ok(self)
    }

    /// The framing of a stream channel; `None` on records.
    pub fn framing(&self) -> Option<Framing> {
        self.rx.framing()
    }

    /// The socket underneath (non-blocking).
    pub fn socket(&self) -> &Socket {
        self.rx.socket()
    }

    /// Writes what a cancelled send left unsent, if anything; see [`AsyncSender::flush`].
    ///
    /// # Errors
    ///
    /// As [`AsyncSender::flush`].
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.tx.flush().await
    }

    /// Waits until a message can be sent; see [`AsyncSender::ready`].
    ///
    /// # Errors
    ///
    /// As [`AsyncSender::ready`].
    pub async fn ready(&mut self) -> Result<(), Error> {
        self.tx.ready().await
    }
}

impl<Tx: Encode, Rx> AsyncChannel<Tx, Rx> {
    /// Sends one message; see [`AsyncSender::send`].
    ///
    /// # Errors
    ///
    /// As [`AsyncSender::send`].
    pub async fn send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.tx.send(message).await
    }

    /// Sends one message with descriptors; see [`AsyncSender::send_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`AsyncSender::send_with_fds`].
    pub async fn send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        self.tx.send_with_fds(message, fds).await
    }

    /// Commits one message without waiting; see [`AsyncSender::try_send`].
    ///
    /// # Errors
    ///
    /// As [`AsyncSender::try_send`].
    pub fn try_send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.tx.try_send(message)
    }

    /// Commits one message with descriptors without waiting; see
    /// [`AsyncSender::try_send_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`AsyncSender::try_send_with_fds`].
    pub fn try_send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        self.tx.try_send_with_fds(message, fds)
    }
}

impl<Tx, Rx: Receive> AsyncChannel<Tx, Rx> {
    /// Receives one message, `Ok(None)` at a clean end of stream; see
    /// [`AsyncReceiver::recv`].
    ///
    /// # Errors
    ///
    /// As [`AsyncReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<Rx::Value>, Error> {
        self.rx.recv().await
    }

    /// Receives one message and the descriptors that came with it; see
    /// [`AsyncReceiver::recv_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`AsyncReceiver::recv`].
    pub async fn recv_with_fds(
        &mut self,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Option<Rx::Value>, Error> {
        self.rx.recv_with_fds(fds).await
    }
}

/// The sending half of an [`AsyncChannel`] ([`AsyncChannel::split`]): `Send`, to move into
/// a task of its own. Dropping it shuts down writing (`shutdown(SHUT_WR)`); what a
/// cancelled send left unsent is dropped with it, so [`flush`](AsyncSender::flush) first.
pub struct AsyncSender<Tx> {
    socket: Arc<AsyncSocket>,
    split: bool,
    core: TxCore,
    scratch: Vec<u8>,
    types: PhantomData<fn(&Tx)>,
}

impl<Tx> AsyncSender<Tx> {
    /// Writes what a cancelled send (or a [`try_send`](AsyncSender::try_send)) left
    /// unsent, descriptors included; at once if nothing is. Cancel safe: dropped, the
    /// rest stays for the next send or flush.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) with the kernel's error (`EPIPE` once the
    /// peer is gone).
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Waits until a message can be sent: writes what is left unsent, then waits until
    /// the socket has room. Sends nothing new; cancel safe. A
    /// [`try_send`](AsyncSender::try_send) right after usually commits its message
    /// (it may still find the room too small: a large record, another writer).
    ///
    /// # Errors
    ///
    /// As [`flush`](AsyncSender::flush).
    pub async fn ready(&mut self) -> Result<(), Error> {
        self.flush().await?;
        poll_fn(|cx| self.socket.poll_writable(cx)).await
    }

    /// The socket underneath (non-blocking).
    pub fn socket(&self) -> &Socket {
        self.socket.get_ref()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !has_unsent(&self.core) {
            return Poll::Ready(Ok(()));
        }
        let core = &mut self.core;
        self.socket.poll_io(cx, Interest::WRITABLE, |socket| {
            flush_core(core, Waits::once(socket))
        })
    }
}

impl<Tx: Encode> AsyncSender<Tx> {
    /// Sends one message: a `Tx` or a borrowed form of it, as [`Sender::send`](crate::Sender::send),
    /// waiting for room without blocking the runtime. For what a dropped send has sent,
    /// see [cancel safety](AsyncChannel#cancel-safety).
    ///
    /// # Errors
    ///
    /// As [`Sender::send`](crate::Sender::send), without timeouts.
    pub async fn send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.send_with_fds(message, &[]).await
    }

    /// Sends one message with descriptors, as [`Sender::send_with_fds`](crate::Sender::send_with_fds).
    ///
    /// # Errors
    ///
    /// As [`Sender::send_with_fds`](crate::Sender::send_with_fds), without timeouts.
    pub async fn send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        let (core, scratch) = (&mut self.core, &mut self.scratch);
        poll_fn(|cx| {
            self.socket.poll_io(cx, Interest::WRITABLE, |socket| {
                commit(core, scratch, socket, message, fds)
            })
        })
        .await?;
        self.flush().await
    }

    /// Commits one message without waiting: writes what the socket takes of it now,
    /// descriptors with the first byte, and keeps the rest for the next send or
    /// [`flush`](AsyncSender::flush), which you then owe the peer. Call after
    /// [`ready`](AsyncSender::ready).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) if the socket has no room
    /// now, or an earlier message's rest is still unsent: **nothing of the message was
    /// sent**. Otherwise as [`send`](AsyncSender::send).
    pub fn try_send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.try_send_with_fds(message, &[])
    }

    /// [`try_send`](AsyncSender::try_send) with descriptors.
    ///
    /// # Errors
    ///
    /// As [`try_send`](AsyncSender::try_send) and [`send_with_fds`](AsyncSender::send_with_fds).
    pub fn try_send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        let (core, scratch) = (&mut self.core, &mut self.scratch);
        self.socket
            .try_write(|socket| commit(core, scratch, socket, message, fds))
    }
}

/// Writes what an earlier message left unsent, then what the socket takes of this one
/// now. `Ok` once the message is committed: all of it written, or its first part, the
/// rest kept in `core`. `WouldBlock` if nothing of it was written.
fn commit<Tx, M: EncodeAs<Tx> + ?Sized>(
    core: &mut TxCore,
    scratch: &mut Vec<u8>,
    socket: &Socket,
    message: &M,
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    let once = Waits::once(socket);
    flush_core(core, once)?;
    match send_message(core, scratch, once, message, fds) {
        // Only this message's rest can be unsent: the earlier one's was flushed.
        Err(err) if err.kind() == crate::ErrorKind::WouldBlock && has_unsent(core) => Ok(()),
        other => other,
    }
}

impl<Tx> Drop for AsyncSender<Tx> {
    fn drop(&mut self) {
        if self.split {
            // Best effort: the peer may be gone already.
            let _ = self.socket.shutdown(std::net::Shutdown::Write);
        }
    }
}

/// The receiving half of an [`AsyncChannel`] ([`AsyncChannel::split`]): `Send`, to move
/// into a task of its own, and a [`Stream`] of messages.
///
/// The stream yields each message, or error, as it comes, and ends at the end of the
/// stream or after an error that ends it (as [`Messages`](crate::Messages)); it is cancel
/// safe as [`recv`](AsyncReceiver::recv) is.
pub struct AsyncReceiver<Rx> {
    socket: Arc<AsyncSocket>,
    core: RxCore,
    /// The stream ended.
    done: bool,
    types: PhantomData<fn() -> Rx>,
}

impl<Rx> AsyncReceiver<Rx> {
    /// The largest message accepted; see [`Receiver::max_frame_len`](crate::Receiver::max_frame_len).
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.core.set_max(max);
        self
    }

    /// Whether this end takes descriptors; see [`Receiver::accept_fds`](crate::Receiver::accept_fds).
    ///
    /// # Errors
    ///
    /// As [`Receiver::accept_fds`](crate::Receiver::accept_fds).
    pub fn accept_fds(&mut self, accept: bool) -> io::Result<&mut Self> {
        self.core.set_accept(self.socket.get_ref(), accept)?;
        Ok(self)
    }

    /// The framing of a stream; `None` on records.
    pub fn framing(&self) -> Option<Framing> {
        self.core.framing()
    }

    /// The socket underneath (non-blocking).
    pub fn socket(&self) -> &Socket {
        self.socket.get_ref()
    }
}

impl<Rx: Receive> AsyncReceiver<Rx> {
    /// Receives one message, waiting without blocking the runtime; `Ok(None)` at a
    /// clean end of stream. Descriptors that came with it are closed: use
    /// [`recv_with_fds`](AsyncReceiver::recv_with_fds) to keep them. Cancel safe.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`](crate::Receiver::recv), without timeouts.
    pub async fn recv(&mut self) -> Result<Option<Rx::Value>, Error> {
        self.recv_with_fds(&mut Vec::new()).await
    }

    /// Receives one message and appends the descriptors that came with it to `fds`
    /// (close-on-exec, in the order sent). Cancel safe: `fds` grows only when the
    /// message is whole.
    ///
    /// # Errors
    ///
    /// As [`recv`](AsyncReceiver::recv).
    pub async fn recv_with_fds(
        &mut self,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Option<Rx::Value>, Error> {
        poll_fn(|cx| self.poll_recv(cx, fds)).await
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        fds: &mut Vec<OwnedFd>,
    ) -> Poll<Result<Option<Rx::Value>, Error>> {
        let core = &mut self.core;
        self.socket.poll_io(cx, Interest::READABLE, |socket| {
            receive::<Rx>(core, false, Waits::once(socket), fds)
        })
    }
}

impl<Rx: Receive> Stream for AsyncReceiver<Rx> {
    type Item = Result<Rx::Value, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let received = ready!(this.poll_recv(cx, &mut Vec::new()));
        Poll::Ready(match received {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) => {
                this.done = true;
                None
            }
            Err(err) => {
                this.done = ends_messages(&err);
                Some(Err(err))
            }
        })
    }
}

impl<Tx, Rx> fmt::Debug for AsyncChannel<Tx, Rx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncChannel")
            .field("socket", self.socket())
            .field("framing", &self.framing())
            .finish_non_exhaustive()
    }
}

impl<Tx> fmt::Debug for AsyncSender<Tx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncSender")
            .field("socket", self.socket())
            .finish_non_exhaustive()
    }
}

impl<Rx> fmt::Debug for AsyncReceiver<Rx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncReceiver")
            .field("socket", self.socket())
            .field("framing", &self.framing())
            .finish_non_exhaustive()
    }
}
