//! [`Channel`]: whole messages, typed, with descriptors, over one end of a pair; and its
//! halves, [`Sender`] and [`Receiver`], for two threads.
//!
//! Each transport is a state machine without system calls (`stream.rs`: length and line
//! frames over a byte stream, descriptors matched to frames by `fd_queue.rs`;
//! `records.rs`: one message per seqpacket or datagram record, large ones as a sealed
//! memfd checked by `memfd.rs`). `drive.rs` runs them over a socket, for this blocking
//! shell and for the async one (`crate::tokio`) alike; this file and `sender.rs`,
//! `receiver.rs` hold the public types.

pub(crate) mod drive;
pub(crate) mod fd_queue;
pub(crate) mod memfd;
pub(crate) mod receiver;
pub(crate) mod records;
pub(crate) mod sender;
pub(crate) mod stream;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::error::Error;
use crate::frame::{DEFAULT_MAX_FRAME_LEN, Framing};
use crate::message::{Encode, EncodeAs, Receive};
use crate::socket::Socket;
use crate::types::Type;
use drive::{RxCore, TxCore};
pub use receiver::{Messages, Receiver};
use records::{RecordRx, RecordTx};
pub use sender::Sender;
use stream::{StreamRx, StreamTx};

/// Whole messages over one end of a pair: `Tx` out, `Rx` in.
///
/// The framing follows the socket: on a stream, [`Framing::Length`] (`[u32 big-endian
/// length][payload]`, which Python's `Connection.send_bytes`/`recv_bytes` speak); on
/// seqpacket and datagram sockets one message per record, with no header (a message too
/// large for a record travels as a sealed `memfd`). Choose [`Framing::Lines`] with
/// [`with_framing`](Channel::with_framing) for Node's `json` IPC. The wire format is
/// specified in [`frame::wire_format`](crate::frame::wire_format).
///
/// # Examples
///
/// ```
/// use sockpair::{pair, Channel, Type};
///
/// let (a, b) = pair(Type::STREAM)?;
/// let mut a: Channel<String> = Channel::new(a)?;
/// let mut b: Channel<String> = Channel::new(b)?;
/// a.send("hello")?; // a &str, for a Channel<String>
/// assert_eq!(b.recv()?, Some("hello".to_string()));
/// drop(a);
/// assert_eq!(b.recv()?, None); // a clean end of stream between messages
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Two threads, one sending and one receiving, with [`split`](Channel::split):
///
/// ```
/// use sockpair::{pair, Channel, Type};
///
/// let (a, b) = pair(Type::SEQPACKET)?;
/// let (mut tx, mut rx) = Channel::<Vec<u8>>::new(a)?.split();
/// let mut b: Channel<Vec<u8>> = Channel::new(b)?;
/// let echo = std::thread::spawn(move || -> Result<(), sockpair::Error> {
///     while let Some(message) = b.recv()? {
///         b.send(&message)?;
///     }
///     Ok(())
/// });
/// let sender = std::thread::spawn(move || -> Result<(), sockpair::Error> {
///     for i in 0..100u8 {
///         tx.send(&[i][..])?;
///     }
///     Ok(()) // dropping `tx`: the peer reads the end, and so do we, after the echoes
/// });
/// let echoed: Vec<Vec<u8>> = rx.iter().collect::<Result<_, _>>()?;
/// assert_eq!(echoed.len(), 100);
/// sender.join().unwrap()?;
/// echo.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Who may block on what (the full-duplex rule)
///
/// A send blocks while the peer's receive buffer is full, that is, until the peer reads.
/// So two processes that both send large messages before either receives can wait for
/// each other forever. The safe pattern is **request/reply**: one side sends a request
/// and then receives the reply; the other receives, then replies. If both sides must
/// send freely, [`split`](Channel::split) the channel and receive on a thread of its
/// own. To bound every wait, set [`read_timeout`](Channel::read_timeout) and
/// [`write_timeout`](Channel::write_timeout): a peer that stops reading or answering
/// then costs an [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut), never a hang. A peer that dies ends the
/// channel: `recv` returns `Ok(None)` (or an error inside a frame), `send` fails with
/// `EPIPE`.
///
/// # Never out of step
///
/// A receive that fails (a timeout, a signal, a non-blocking socket that is not ready)
/// keeps what arrived: the next receive continues the message. A send that stops part
/// way through a frame (a timeout, `WouldBlock`) keeps the rest, and the next send, or
/// [`flush`](Channel::flush), writes it before anything else, so the peer never sees
/// half a frame followed by another. Descriptors go out with a frame's first byte, so
/// they are either sent with it or not at all.
pub struct Channel<Tx, Rx = Tx> {
    tx: Sender<Tx>,
    rx: Receiver<Rx>,
}

/// What the halves share.
#[derive(Debug)]
pub(crate) struct Shared {
    socket: Socket,
    /// Whether this end sent since it last read (see `Receiver::recv_stream`).
    sent_since_read: AtomicBool,
}

/// A channel's state without its socket: see [`Channel::into_parts`].
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) tx: TxCore,
    pub(crate) rx: RxCore,
    pub(crate) scratch: Vec<u8>,
}

impl<Tx, Rx> Channel<Tx, Rx> {
    /// A channel over `socket`, framed as its type suggests: [`Framing::Length`] on a
    /// stream, one message per record on seqpacket and datagram sockets. It takes
    /// descriptors if the socket does ([`accept_fds`](Channel::accept_fds)).
    ///
    /// # Errors
    ///
    /// The kernel's error from asking the socket its type or its options.
    pub fn new(socket: Socket) -> io::Result<Self> {
        match socket.ty()? {
            Type::STREAM => Self::stream(socket, Framing::Length),
            ty => {
                let seqpacket = ty == Type::SEQPACKET;
                if seqpacket {
                    // Every record then carries a timestamp, and the end of the stream
                    // none: that tells an empty record from EOF (both read as 0 bytes).
                    socket.set_receive_timestamps()?;
                }
                let accept = accepts(&socket)?;
                Ok(Self::from_cores(
                    socket,
                    TxCore::Records(RecordTx::default()),
                    RxCore::Records(RecordRx::new(seqpacket, accept, DEFAULT_MAX_FRAME_LEN)),
                ))
            }
        }
    }

    /// A channel over a stream `socket` with the given framing.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for a socket that is not a stream (a read shorter
    /// than a record loses the rest of it: use [`new`](Channel::new)); otherwise the
    /// kernel's error.
    pub fn with_framing(socket: Socket, framing: Framing) -> io::Result<Self> {
        let ty = socket.ty()?;
        if ty != Type::STREAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} framing needs a stream socket; a {ty} socket keeps one message per record (Channel::new)",
                    match framing {
                        Framing::Length => "length",
                        Framing::Lines => "line",
                    }
                ),
            ));
        }
        Self::stream(socket, framing)
    }

    /// A channel over `socket`, a stream, with the given framing.
    fn stream(socket: Socket, framing: Framing) -> io::Result<Self> {
        let accept = accepts(&socket)?;
        Ok(Self::stream_accepting(socket, framing, accept))
    }

    fn stream_accepting(socket: Socket, framing: Framing, accept: bool) -> Self {
        Self::from_cores(
            socket,
            TxCore::Stream(StreamTx::new(framing)),
            RxCore::Stream(StreamRx::new(framing, accept)),
        )
    }

    /// A length-framed channel over an end of a stream pair this crate made, whose
    /// options nobody changed (it takes descriptors, as every new socket does): no
    /// need to ask the kernel what it is.
    #[cfg(feature = "worker")]
    pub(crate) fn over_new_stream(socket: Socket) -> Self {
        Self::stream_accepting(socket, Framing::Length, true)
    }

    fn from_cores(socket: Socket, tx: TxCore, rx: RxCore) -> Self {
        let shared = Arc::new(Shared {
            socket,
            sent_since_read: AtomicBool::new(false),
        });
        Channel {
            tx: Sender {
                shared: shared.clone(),
                split: false,
                core: tx,
                scratch: Vec::new(),
                write_timeout: None,
                types: PhantomData,
            },
            rx: Receiver {
                shared,
                core: rx,
                read_timeout: None,
                types: PhantomData,
            },
        }
    }

    /// The socket and the state of both directions, for an async channel to carry on
    /// from (what a send left unsent and what has arrived of a message go with them).
    #[cfg(feature = "tokio")]
    pub(crate) fn into_parts(self) -> (Socket, Parts) {
        let Channel { mut tx, mut rx } = self;
        let core = std::mem::replace(&mut tx.core, TxCore::Records(RecordTx::default()));
        let scratch = std::mem::take(&mut tx.scratch);
        let parts = Parts {
            tx: core,
            rx: std::mem::replace(
                &mut rx.core,
                RxCore::Records(RecordRx::new(false, false, 0)),
            ),
            scratch,
        };
        (Channel { tx, rx }.into_socket(), parts)
    }

    /// A blocking channel carrying on from an async one's [`Parts`].
    #[cfg(feature = "tokio")]
    pub(crate) fn from_parts(socket: Socket, parts: Parts) -> Self {
        let mut channel = Self::from_cores(socket, parts.tx, parts.rx);
        channel.tx.scratch = parts.scratch;
        channel
    }

    /// The two halves, to send from one thread and receive on another (full duplex,
    /// descriptors both ways). Each keeps the options set so far. Dropping the
    /// [`Sender`] then ends this end's writing, so that the peer reads the end of the
    /// stream while the [`Receiver`] reads on.
    pub fn split(self) -> (Sender<Tx>, Receiver<Rx>) {
        let Channel { mut tx, rx } = self;
        tx.split = true;
        (tx, rx)
    }

    /// The socket back. Messages [`feed`](Channel::feed) queued are flushed first, as
    /// when the channel is dropped (errors ignored: [`flush`](Channel::flush) to see
    /// them); what was read but not yet received as a message is dropped.
    pub fn into_socket(self) -> Socket {
        let Channel { tx, rx } = self;
        let shared = rx.shared.clone();
        drop((tx, rx));
        match Arc::try_unwrap(shared) {
            Ok(shared) => shared.socket,
            Err(_) => unreachable!("a channel holds the only two references"),
        }
    }

    /// The largest message accepted (default [`DEFAULT_MAX_FRAME_LEN`], 64 MiB); see
    /// [`Receiver::max_frame_len`].
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.rx.max_frame_len(max);
        self
    }

    /// The longest a receive may wait for a whole message; see
    /// [`Receiver::read_timeout`].
    pub fn read_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.rx.read_timeout(timeout);
        self
    }

    /// The longest a send may wait for room; see [`Sender::write_timeout`].
    pub fn write_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.tx.write_timeout(timeout);
        self
    }

    /// Whether this end takes descriptors that come with messages; see
    /// [`Receiver::accept_fds`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::accept_fds`].
    pub fn accept_fds(&mut self, accept: bool) -> io::Result<&mut Self> {
        self.rx.accept_fds(accept)?;
        Ok(self)
    }

    /// The framing of a stream channel; `None` on records, where a message is a record.
    pub fn framing(&self) -> Option<Framing> {
        self.rx.framing()
    }

    /// The socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.rx.shared.socket
    }

    /// How many fed messages are not written yet; see [`Sender::queued`].
    pub fn queued(&self) -> usize {
        self.tx.queued()
    }

    /// Writes what a send left unsent and what [`feed`](Channel::feed) queued; see
    /// [`Sender::flush`].
    ///
    /// # Errors
    ///
    /// As [`Sender::flush`].
    pub fn flush(&mut self) -> Result<(), Error> {
        self.tx.flush()
    }
}

impl<Tx: Encode, Rx> Channel<Tx, Rx> {
    /// Sends one message: a `Tx`, or a borrowed form of it ([`EncodeAs`]: `&[u8]` or
    /// `b"..."` for a `Channel<Vec<u8>>`, `&str` for a `Channel<String>`); see
    /// [`Sender::send`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub fn send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.tx.send(message)
    }

    /// Sends one message with descriptors; see [`Sender::send_with_fds`].
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use sockpair::{pair, Channel, Type};
    ///
    /// let (a, b) = pair(Type::STREAM)?;
    /// let (mut a, mut b): (Channel<String>, Channel<String>) = (Channel::new(a)?, Channel::new(b)?);
    /// let (_read, write) = std::io::pipe()?;
    /// a.send_with_fds("a pipe for you", &[write.as_fd()])?;
    /// let mut fds = Vec::new();
    /// assert_eq!(b.recv_with_fds(&mut fds)?.as_deref(), Some("a pipe for you"));
    /// assert_eq!(fds.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Sender::send_with_fds`].
    pub fn send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        self.tx.send_with_fds(message, fds)
    }

    /// Queues one message for the next [`flush`](Channel::flush); see [`Sender::feed`].
    ///
    /// # Errors
    ///
    /// As [`Sender::feed`].
    pub fn feed<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.tx.feed(message)
    }

    /// Queues one message with descriptors; see [`Sender::feed_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`Sender::feed_with_fds`].
    pub fn feed_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        self.tx.feed_with_fds(message, fds)
    }

    /// Sends several messages with as few system calls as possible; see
    /// [`Sender::send_batch`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send_batch`].
    pub fn send_batch<'m, M: EncodeAs<Tx> + ?Sized + 'm>(
        &mut self,
        messages: impl IntoIterator<Item = &'m M>,
    ) -> Result<(), Error> {
        self.tx.send_batch(messages)
    }
}

impl<Tx, Rx: Receive> Channel<Tx, Rx> {
    /// Receives one message; `Ok(None)` at a clean end of stream; see [`Receiver::recv`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv(&mut self) -> Result<Option<Rx::Value>, Error> {
        self.rx.recv()
    }

    /// Receives one message and the descriptors that came with it; see
    /// [`Receiver::recv_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv_with_fds(&mut self, fds: &mut Vec<OwnedFd>) -> Result<Option<Rx::Value>, Error> {
        self.rx.recv_with_fds(fds)
    }

    /// The messages as they come, until the end of the stream; see [`Receiver::iter`].
    pub fn iter(&mut self) -> Messages<'_, Rx> {
        self.rx.iter()
    }
}

impl<Tx> Channel<Tx, Vec<u8>> {
    /// Receives one message into `buf`, with no allocation in a steady stream; see
    /// [`Receiver::recv_into`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<bool, Error> {
        self.rx.recv_into(buf)
    }

    /// Receives one message into `buf`, and its descriptors; see
    /// [`Receiver::recv_into_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv_into_with_fds(
        &mut self,
        buf: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<bool, Error> {
        self.rx.recv_into_with_fds(buf, fds)
    }
}

/// Whether `socket` takes descriptors: its `SO_PASSRIGHTS`, or yes where the kernel has
/// none (before Linux 6.16).
fn accepts(socket: &Socket) -> io::Result<bool> {
    Ok(socket.pass_rights()?.unwrap_or(true))
}

impl<Tx, Rx> fmt::Debug for Channel<Tx, Rx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}
