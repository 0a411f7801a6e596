//! [`AsyncChannel`] and its halves, [`AsyncSender`] and [`AsyncReceiver`]: the
//! blocking channel's transport cores and driver (`channel/drive.rs`), each operation
//! tried once and waited for on tokio's reactor instead of in `poll`.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

mod receiver;
mod sender;

use super::socket::AsyncSocket;
use crate::channel::drive::TxCore;
use crate::channel::{Channel, Parts};
use crate::error::Error;
use crate::frame::Framing;
use crate::message::{Encode, EncodeAs, Receive};
use crate::socket::Socket;
pub use receiver::AsyncReceiver;
pub use sender::AsyncSender;

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
            tx: std::mem::replace(&mut tx.core, TxCore::Records(Default::default())),
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

    /// How many fed messages are not written yet; see [`AsyncSender::queued`].
    pub fn queued(&self) -> usize {
        self.tx.queued()
    }

    /// Writes what a cancelled send left unsent and what [`feed`](AsyncChannel::feed)
    /// queued; see [`AsyncSender::flush`].
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
    /// Queues one message for the next [`flush`](AsyncChannel::flush); see
    /// [`AsyncSender::feed`].
    ///
    /// # Errors
    ///
    /// As [`AsyncSender::feed`].
    pub async fn feed<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.tx.feed(message).await
    }

    /// Queues one message with descriptors; see [`AsyncSender::feed_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`AsyncSender::feed_with_fds`].
    pub async fn feed_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        self.tx.feed_with_fds(message, fds).await
    }

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

impl<Tx, Rx> fmt::Debug for AsyncChannel<Tx, Rx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncChannel")
            .field("socket", self.socket())
            .field("framing", &self.framing())
            .finish_non_exhaustive()
    }
}
