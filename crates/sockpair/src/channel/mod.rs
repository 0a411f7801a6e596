//! [`Channel`]: whole messages, typed, with descriptors, over one end of a pair; and its
//! halves, [`Sender`] and [`Receiver`], for two threads.
//!
//! Each transport is a state machine without system calls (`stream.rs`: length and line
//! frames over a byte stream, descriptors matched to frames by `fd_queue.rs`;
//! `records.rs`: one message per seqpacket or datagram record, large ones as a sealed
//! memfd checked by `memfd.rs`). This file drives them over a blocking socket.

mod fd_queue;
mod memfd;
mod records;
mod stream;

use std::fmt;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::net::SendFlags;

use crate::error::{Error, ErrorKind};
use crate::fds::MAX_FDS_PER_MESSAGE;
use crate::frame::{DEFAULT_MAX_FRAME_LEN, Framing, Payload, length};
use crate::message::{Decode, Encode, EncodeAs};
use crate::socket::Socket;
use crate::sys;
use crate::sys::poll::{Events, poll_until};
use crate::sys::recvmsg::Recv;
use crate::types::Type;
use records::{Record, RecordRx};
use stream::{StreamRx, StreamTx, TINY};

/// Frames with payloads up to this size are copied into one buffer to be sent.
const GATHER_BELOW: usize = 512;

/// Whole messages over one end of a pair: `Tx` out, `Rx` in.
///
/// The framing follows the socket: on a stream, [`Framing::Length`] (`[u32 big-endian
/// length][payload]`, which Python's `Connection.send_bytes`/`recv_bytes` speak); on
/// seqpacket and datagram sockets one message per record, with no header (a message too
/// large for a record travels as a sealed `memfd`). Choose [`Framing::Lines`] with
/// [`with_framing`](Channel::with_framing) for Node's `json` IPC. The wire format is
/// specified in `docs/wire-format.md`.
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
/// then costs an [`ErrorKind::TimedOut`], never a hang. A peer that dies ends the
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

/// The sending half of a [`Channel`] ([`Channel::split`]): `Send`, with its own
/// [`write_timeout`](Sender::write_timeout). Dropping it shuts down the writing side of
/// the socket (`shutdown(SHUT_WR)`, as tokio's write halves do): the peer reads the end
/// of the stream, while this end's [`Receiver`] goes on reading.
pub struct Sender<Tx> {
    shared: Arc<Shared>,
    /// Made by `split`: shuts down writing when dropped.
    split: bool,
    core: TxCore,
    /// The encoding of the message being sent.
    scratch: Vec<u8>,
    write_timeout: Option<Duration>,
    types: PhantomData<fn(&Tx)>,
}

/// The receiving half of a [`Channel`] ([`Channel::split`]): `Send`, with its own
/// [`read_timeout`](Receiver::read_timeout) and [`max_frame_len`](Receiver::max_frame_len).
pub struct Receiver<Rx> {
    shared: Arc<Shared>,
    core: RxCore,
    read_timeout: Option<Duration>,
    types: PhantomData<fn() -> Rx>,
}

/// What the halves share.
#[derive(Debug)]
struct Shared {
    socket: Socket,
    /// Whether this end sent since it last read (see `Receiver::recv_stream`).
    sent_since_read: AtomicBool,
}

#[derive(Debug)]
enum TxCore {
    Stream(StreamTx),
    Records,
}

#[derive(Debug)]
enum RxCore {
    Stream(StreamRx),
    Records(RecordRx),
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
            Type::STREAM => Self::with_framing(socket, Framing::Length),
            ty => {
                let seqpacket = ty == Type::SEQPACKET;
                if seqpacket {
                    // Every record then carries a timestamp, and the end of the stream
                    // none: that tells an empty record from EOF (both read as 0 bytes).
                    sys::set_receive_timestamps(&socket)?;
                }
                let accept = accepts(&socket)?;
                Ok(Self::from_cores(
                    socket,
                    TxCore::Records,
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
                    "{framing:?} framing needs a stream; a {ty:?} socket keeps one message per record (Channel::new)"
                ),
            ));
        }
        let accept = accepts(&socket)?;
        Ok(Self::from_cores(
            socket,
            TxCore::Stream(StreamTx::new(framing)),
            RxCore::Stream(StreamRx::new(framing, accept)),
        ))
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

    /// The two halves, to send from one thread and receive on another (full duplex,
    /// descriptors both ways). Each keeps the options set so far. Dropping the
    /// [`Sender`] then ends this end's writing, so that the peer reads the end of the
    /// stream while the [`Receiver`] reads on.
    pub fn split(self) -> (Sender<Tx>, Receiver<Rx>) {
        let Channel { mut tx, rx } = self;
        tx.split = true;
        (tx, rx)
    }

    /// The socket back. What a send left unsent ([`flush`](Channel::flush) first) and
    /// what was read but not yet received as a message are dropped with the channel.
    pub fn into_socket(self) -> Socket {
        let Channel { tx, rx } = self;
        drop(tx);
        let shared = rx.shared.clone();
        drop(rx);
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
    pub fn accept_fds(&mut self, accept: bool) -> &mut Self {
        self.rx.accept_fds(accept);
        self
    }

    /// The framing of a stream channel; `None` on records, where a message is a record.
    pub fn framing(&self) -> Option<Framing> {
        self.rx.framing()
    }

    /// The socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.rx.shared.socket
    }

    /// Writes what a send left unsent, if anything; see [`Sender::flush`].
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

impl<Tx, Rx: Decode> Channel<Tx, Rx> {
    /// Receives one message; `Ok(None)` at a clean end of stream; see [`Receiver::recv`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv(&mut self) -> Result<Option<Rx>, Error> {
        self.rx.recv()
    }

    /// Receives one message and the descriptors that came with it; see
    /// [`Receiver::recv_with_fds`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv_with_fds(&mut self, fds: &mut Vec<OwnedFd>) -> Result<Option<Rx>, Error> {
        self.rx.recv_with_fds(fds)
    }

    /// The messages as they come, until the end of the stream; see [`Receiver::iter`].
    pub fn iter(&mut self) -> Messages<'_, Rx> {
        self.rx.iter()
    }
}

/// Whether `socket` takes descriptors: its `SO_PASSRIGHTS`, or yes where the kernel has
/// none (before Linux 6.16).
fn accepts(socket: &Socket) -> io::Result<bool> {
    Ok(socket.pass_rights()?.unwrap_or(true))
}

impl<Tx> Sender<Tx> {
    /// The longest a send may wait for the peer to make room (default: no limit; a
    /// duration too long for the clock is no limit too). When it passes, the send fails
    /// with [`ErrorKind::TimedOut`]; if part of the message had gone out, the rest goes
    /// out first with the next send or [`flush`](Sender::flush).
    pub fn write_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.write_timeout = timeout;
        self
    }

    /// The socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.shared.socket
    }

    /// Writes what an earlier send left unsent (after a timeout, or `WouldBlock` on a
    /// non-blocking socket), within [`write_timeout`](Sender::write_timeout). Does
    /// nothing if all went out.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TimedOut`], [`ErrorKind::WouldBlock`] (the rest is still kept), or
    /// [`ErrorKind::Io`] with the kernel's error.
    pub fn flush(&mut self) -> Result<(), Error> {
        let deadline = deadline(self.write_timeout);
        self.flush_until(deadline)
    }

    fn flush_until(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        let TxCore::Stream(tx) = &mut self.core else {
            return Ok(()); // a record goes whole or not at all
        };
        while !tx.unsent().is_empty() {
            let n = io_with(
                &self.shared.socket,
                deadline,
                deadline.is_some(),
                Events::OUT,
                ("write_timeout", self.write_timeout),
                |socket, nonblocking| {
                    socket.send_msg(&[IoSlice::new(tx.unsent())], &[], send_flags(nonblocking))
                },
            )
            .map_err(|err| io_error("send", err))?;
            tx.sent_unsent(n);
        }
        Ok(())
    }
}

impl<Tx: Encode> Sender<Tx> {
    /// Sends one message: a `Tx`, or a borrowed form of it ([`EncodeAs`]: `&[u8]` or
    /// `b"..."` for `Vec<u8>`, `&str` for `String`), which encodes the same.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if the message cannot be encoded (nothing is sent),
    /// [`ErrorKind::TimedOut`] or [`ErrorKind::WouldBlock`] (see
    /// [Never out of step](Channel#never-out-of-step)), or [`ErrorKind::Io`] with the
    /// kernel's error (`EPIPE` once the peer is gone).
    pub fn send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.send_with_fds(message, &[])
    }

    /// Sends one message with descriptors; the receiver gets exactly these, in this
    /// order, with this message, if its end [accepts them](Receiver::accept_fds).
    ///
    /// # Errors
    ///
    /// As [`send`](Sender::send); also [`ErrorKind::Fds`] for more than
    /// [`MAX_FDS_PER_MESSAGE`](crate::MAX_FDS_PER_MESSAGE) descriptors, or when the
    /// peer's end refuses descriptors (nothing is sent then).
    pub fn send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(Error::new(
                ErrorKind::Fds,
                format!(
                    "{} descriptors in one message; at most {MAX_FDS_PER_MESSAGE}",
                    fds.len()
                ),
            ));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = match message.encode(&mut scratch) {
            Ok(payload) => self.send_payload(payload, fds),
            Err(err) => Err(err),
        };
        self.scratch = scratch;
        result
    }

    /// Sends several messages with as few system calls as possible: on a byte stream
    /// their frames are gathered into one buffer and written together (one `sendmsg`
    /// while the socket has room), which multiplies the message rate for small
    /// messages. On records each message is still one record, sent one by one.
    ///
    /// # Errors
    ///
    /// As [`send`](Sender::send). If one message cannot be encoded, none is sent.
    pub fn send_batch<'m, M: EncodeAs<Tx> + ?Sized + 'm>(
        &mut self,
        messages: impl IntoIterator<Item = &'m M>,
    ) -> Result<(), Error> {
        let TxCore::Stream(tx) = &mut self.core else {
            return messages
                .into_iter()
                .try_for_each(|message| self.send(message));
        };
        let mut gather = std::mem::take(&mut tx.gather);
        let mut scratch = std::mem::take(&mut self.scratch);
        gather.clear();
        let gathered = messages.into_iter().try_for_each(|message| {
            scratch.clear();
            let mut header = [0; length::MAX_HEADER];
            let payload = message.encode(&mut scratch)?;
            for part in tx.parts(payload, &mut header)? {
                gather.extend_from_slice(part);
            }
            Ok(())
        });
        self.scratch = scratch;
        let result = gathered.and_then(|()| {
            let deadline = deadline(self.write_timeout);
            self.flush_until(deadline)?;
            self.write_frame(&[&gather], &[], deadline)
        });
        if let TxCore::Stream(tx) = &mut self.core {
            tx.gather = gather;
        }
        result
    }

    fn send_payload(&mut self, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
        self.shared.sent_since_read.store(true, Ordering::Relaxed);
        let deadline = deadline(self.write_timeout);
        let TxCore::Stream(tx) = &mut self.core else {
            return self.send_record(payload, fds, deadline);
        };
        if !tx.unsent().is_empty() {
            self.flush_until(deadline)?;
            return self.send_frame(payload, fds, deadline);
        }
        if fds.is_empty() && deadline.is_none() {
            // The most common message of all, on the shortest path: built on the stack
            // and written with one `send`.
            let mut frame = [0; TINY + 4];
            if let Some(len) = tx.tiny(payload, &mut frame) {
                match self.shared.socket.send(&frame[..len]) {
                    Ok(n) if n == len => return Ok(()),
                    Ok(n) => {
                        tx.keep_unsent(&[&frame[n..len]]);
                        return self.flush_until(None);
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {} // retried below
                    Err(err) => return Err(peer_refused(io_error("send", err), fds)),
                }
            }
        }
        self.send_frame(payload, fds, deadline)
    }

    fn send_frame(
        &mut self,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        let TxCore::Stream(tx) = &mut self.core else {
            unreachable!("only streams have frames")
        };
        let mut header = [0; length::MAX_HEADER];
        let parts = tx.parts(payload, &mut header)?;
        if !fds.is_empty() || payload.len() > GATHER_BELOW {
            return self.write_frame(&parts, fds, deadline);
        }
        // A small frame is cheaper copied into one buffer and sent with a plain `send`
        // than gathered by `sendmsg`.
        let mut gather = std::mem::take(&mut tx.gather);
        gather.clear();
        for part in parts {
            gather.extend_from_slice(part);
        }
        let result = self.write_frame(&[&gather], &[], deadline);
        if let TxCore::Stream(tx) = &mut self.core {
            tx.gather = gather;
        }
        result
    }

    /// Writes `parts` (one or more whole frames), `fds` with the first byte; keeps what
    /// is left unsent if it stops part way.
    fn write_frame(
        &mut self,
        parts: &[&[u8]],
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
        let mut slices = &mut slices[..];
        let mut fds = fds;
        let mut sent_any = false;
        while !slices.iter().all(|slice| slice.is_empty()) {
            match io_with(
                &self.shared.socket,
                deadline,
                deadline.is_some(),
                Events::OUT,
                ("write_timeout", self.write_timeout),
                |socket, nonblocking| socket.send_msg(slices, fds, send_flags(nonblocking)),
            ) {
                Ok(n) => {
                    fds = &[]; // they went with the first byte
                    sent_any |= n > 0;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(err) => {
                    if sent_any {
                        // The peer is inside a frame: the next send completes it first.
                        let rest: Vec<&[u8]> = slices.iter().map(|slice| &**slice).collect();
                        if let TxCore::Stream(tx) = &mut self.core {
                            tx.keep_unsent(&rest);
                        }
                    }
                    return Err(peer_refused(io_error("send", err), fds));
                }
            }
        }
        Ok(())
    }

    fn send_record(
        &mut self,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        if payload.is_empty() && fds.last().is_some_and(|&fd| memfd::is_sealed(fd)) {
            return Err(Error::new(
                ErrorKind::Encode,
                "an empty message whose last descriptor is a sealed memfd is how a large message \
                 is marked on records; add a byte or put another descriptor last",
            ));
        }
        let socket = &self.shared.socket;
        let timeout = ("write_timeout", self.write_timeout);
        let sent = io_with(
            socket,
            deadline,
            deadline.is_some(),
            Events::OUT,
            timeout,
            |socket, nonblocking| {
                socket.send_msg(&[IoSlice::new(payload)], fds, send_flags(nonblocking))
            },
        );
        match sent {
            // Too large for one record (EMSGSIZE), or for the kernel's allocator
            // (ENOBUFS, past about 4 MiB whatever the socket buffer).
            Err(err) if matches!(err.raw_os_error(), Some(libc::EMSGSIZE | libc::ENOBUFS)) => {}
            other => {
                return other
                    .map(drop)
                    .map_err(|err| peer_refused(io_error("send", err), fds));
            }
        }
        // Too large for one record: hand it over as a sealed memfd.
        if fds.len() == MAX_FDS_PER_MESSAGE {
            return Err(Error::new(
                ErrorKind::Fds,
                "a message too large for a record needs one descriptor more than the 253 given",
            ));
        }
        let sealed =
            memfd::seal(payload).map_err(|err| io_error("seal a large message in a memfd", err))?;
        let mut all: Vec<BorrowedFd<'_>> = fds.to_vec();
        all.push(sealed.as_fd());
        io_with(
            socket,
            deadline,
            deadline.is_some(),
            Events::OUT,
            timeout,
            |socket, nonblocking| socket.send_msg(&[], &all, send_flags(nonblocking)),
        )
        .map(drop)
        .map_err(|err| peer_refused(io_error("send", err), &all))
    }
}

impl<Rx> Receiver<Rx> {
    /// The largest message accepted (default [`DEFAULT_MAX_FRAME_LEN`], 64 MiB). A
    /// larger one is refused before memory is spent on it, with [`ErrorKind::TooLarge`]
    /// and its real size; on a byte stream the receiver then stops
    /// ([`ErrorKind::Unusable`]), since what follows cannot be trusted to be a frame;
    /// on records the next record comes next. Memory for a message within the limit
    /// grows as its bytes arrive, never for what a header merely claims.
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        match &mut self.core {
            RxCore::Stream(rx) => rx.set_max(max),
            RxCore::Records(rx) => rx.set_max(max),
        }
        self
    }

    /// The longest a receive may wait for a whole message (default: no limit; a duration
    /// too long for the clock is no limit too). When it passes, the receive fails with
    /// [`ErrorKind::TimedOut`]; what had arrived of the message is kept, and the next
    /// receive continues it.
    pub fn read_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.read_timeout = timeout;
        self
    }

    /// Whether this end takes descriptors that come with messages.
    ///
    /// Acceptance belongs to the socket, not to a channel: a new channel follows its
    /// socket (Linux 6.16's `SO_PASSRIGHTS`, on for a new pair, and set before the
    /// child exists by [`SpawnOptions::accept_fds`](crate::SpawnOptions::accept_fds)),
    /// and this call changes the socket, for every channel and copy of it.
    ///
    /// An end that does not accept descriptors keeps them out: on a stream the kernel
    /// refuses them, so the peer's [`send_with_fds`](Sender::send_with_fds) fails at
    /// once with [`ErrorKind::Fds`] and nothing of its message is sent. On seqpacket and
    /// datagram sockets, where large messages travel as a descriptor, and on kernels
    /// before 6.16, they arrive, are closed, and this end's next receive reports
    /// [`ErrorKind::Fds`] (the message itself comes with the receive after). Nothing is
    /// ever dropped without an error somewhere.
    pub fn accept_fds(&mut self, accept: bool) -> &mut Self {
        match &mut self.core {
            RxCore::Stream(rx) => {
                // Before Linux 6.16 the kernel cannot refuse: our own check remains.
                let _ = self.shared.socket.set_pass_rights(accept);
                rx.set_accept(accept);
            }
            RxCore::Records(rx) => rx.set_accept(accept),
        }
        self
    }

    /// The framing of a stream; `None` on records.
    pub fn framing(&self) -> Option<Framing> {
        match &self.core {
            RxCore::Stream(rx) => Some(rx.framing()),
            RxCore::Records(_) => None,
        }
    }

    /// The socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.shared.socket
    }
}

impl<Rx: Decode> Receiver<Rx> {
    /// Receives one message; `Ok(None)` at a clean end of stream (the peer closed or
    /// shut down writing, between messages). Descriptors that came with the message are
    /// closed: use [`recv_with_fds`](Receiver::recv_with_fds) to keep them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnexpectedEof`] if the stream ends inside a message,
    /// [`ErrorKind::TooLarge`], [`ErrorKind::BadHeader`], [`ErrorKind::Decode`],
    /// [`ErrorKind::Fds`] (descriptors refused or lost: see
    /// [`accept_fds`](Receiver::accept_fds)), [`ErrorKind::TimedOut`],
    /// [`ErrorKind::WouldBlock`] on a non-blocking socket, [`ErrorKind::Unusable`] after a
    /// framing error, or [`ErrorKind::Io`] with the kernel's error. A signal does not
    /// end a receive: it goes on, within its timeout.
    pub fn recv(&mut self) -> Result<Option<Rx>, Error> {
        self.recv_with_fds(&mut Vec::new())
    }

    /// Receives one message and appends the descriptors that came with it to `fds`
    /// (close-on-exec, in the order they were sent).
    ///
    /// # Errors
    ///
    /// As [`recv`](Receiver::recv).
    pub fn recv_with_fds(&mut self, fds: &mut Vec<OwnedFd>) -> Result<Option<Rx>, Error> {
        let deadline = deadline(self.read_timeout);
        match &mut self.core {
            RxCore::Stream(_) => self.recv_stream(fds, deadline),
            RxCore::Records(_) => self.recv_record(fds, deadline),
        }
    }

    /// The messages as they come, until the end of the stream. An error is yielded as
    /// it comes; after one that ends the stream ([`ErrorKind::Unusable`],
    /// [`ErrorKind::UnexpectedEof`], [`ErrorKind::Io`]) the iterator ends.
    pub fn iter(&mut self) -> Messages<'_, Rx> {
        Messages {
            receiver: self,
            done: false,
        }
    }

    fn recv_stream(
        &mut self,
        fds: &mut Vec<OwnedFd>,
        deadline: Option<Instant>,
    ) -> Result<Option<Rx>, Error> {
        let RxCore::Stream(rx) = &mut self.core else {
            unreachable!("called for streams")
        };
        let socket = &self.shared.socket;
        loop {
            if let Some(frame) = rx.next()? {
                if !frame.fds.is_empty() {
                    fds.extend(frame.fds);
                }
                return decode(frame.payload, rx.buffer()).map(Some);
            }
            // A reader blocked in `recv` on a stream is woken each time the peer takes
            // data this end sent (the kernel's wake-up for writers reaches it too), two
            // context switches for nothing. Right after a send that is what the peer
            // does, so then wait in `poll` for input, which nothing else ends.
            let sent = self.shared.sent_since_read.swap(false, Ordering::Relaxed);
            let poll_first = sent || deadline.is_some();
            let timeout = ("read_timeout", self.read_timeout);
            let mut arrived = Vec::new();
            let (into, most) = rx.read_into()?;
            let received = io_with(
                socket,
                deadline,
                poll_first,
                Events::IN,
                timeout,
                |socket, nonblocking| {
                    socket.recv_append(into, most, &mut arrived, recv_how(nonblocking))
                },
            )
            .map_err(|err| io_error("receive", err))?;
            if received.bytes == 0 {
                rx.eof()?;
                return Ok(None);
            }
            rx.received(received.bytes, arrived, received.fds_lost);
        }
    }

    fn recv_record(
        &mut self,
        fds: &mut Vec<OwnedFd>,
        deadline: Option<Instant>,
    ) -> Result<Option<Rx>, Error> {
        let RxCore::Records(rx) = &mut self.core else {
            unreachable!("called for records")
        };
        if let Some(payload) = rx.held() {
            return decode(payload, rx.lent()).map(Some);
        }
        let mut arrived = Vec::new();
        let buffer = rx.buffer()?;
        let received = io_with(
            &self.shared.socket,
            deadline,
            deadline.is_some(),
            Events::IN,
            ("read_timeout", self.read_timeout),
            |socket, nonblocking| {
                let how = Recv {
                    nonblocking,
                    record_len: true,
                };
                socket.recv_append(buffer, buffer.capacity(), &mut arrived, how)
            },
        )
        .map_err(|err| io_error("receive", err))?;
        let (payload, got) = match rx.received(received, arrived)? {
            Record::Eof => return Ok(None),
            Record::Message(payload, got) => (payload, got),
            Record::MaybeLarge(mut got) if got.last().is_some_and(memfd::is_sealed) => {
                let sealed = got.pop().expect("checked above");
                let payload = memfd::read(sealed, rx.max())?;
                rx.deliver(Payload::Own(payload), got)?
            }
            Record::MaybeLarge(got) => rx.deliver(Payload::Lent(0..0), got)?,
        };
        if !got.is_empty() {
            fds.extend(got);
        }
        decode(payload, rx.lent()).map(Some)
    }
}

/// The messages of a [`Receiver`] (or [`Channel`]) as an iterator: [`Receiver::iter`].
#[derive(Debug)]
pub struct Messages<'a, Rx> {
    receiver: &'a mut Receiver<Rx>,
    done: bool,
}

impl<Rx: Decode> Iterator for Messages<'_, Rx> {
    type Item = Result<Rx, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.receiver.recv() {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(err) => {
                self.done = matches!(
                    err.kind(),
                    ErrorKind::Unusable | ErrorKind::UnexpectedEof | ErrorKind::Io
                );
                Some(Err(err))
            }
        }
    }
}

fn decode<Rx: Decode>(payload: Payload, buffer: &[u8]) -> Result<Rx, Error> {
    match payload {
        Payload::Lent(range) => Rx::decode(&buffer[range]),
        Payload::Own(payload) => Rx::decode_owned(payload),
    }
}

/// When a timeout that starts now ends; `None` for none, or one too long for the clock.
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|timeout| Instant::now().checked_add(timeout))
}

/// Runs `op` on the socket until it succeeds: first waiting in `poll` (until `deadline`)
/// if `poll_first`, and then telling `op` it must not block; else letting `op` block.
/// A signal never ends the wait; a deadline that passes is `TimedOut`, naming `timeout`.
fn io_with<T>(
    socket: &Socket,
    deadline: Option<Instant>,
    poll_first: bool,
    events: Events,
    timeout: (&str, Option<Duration>),
    mut op: impl FnMut(&Socket, bool) -> io::Result<T>,
) -> io::Result<T> {
    loop {
        if poll_first && !poll_until(socket, events, deadline)? {
            let (name, after) = timeout;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{name} of {:?} passed", after.unwrap_or_default()),
            ));
        }
        match op(socket, poll_first) {
            Ok(value) => return Ok(value),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock && poll_first => {}
            Err(err) => return Err(err),
        }
    }
}

fn send_flags(nonblocking: bool) -> SendFlags {
    match nonblocking {
        true => SendFlags::DONTWAIT,
        false => SendFlags::empty(),
    }
}

fn recv_how(nonblocking: bool) -> Recv {
    Recv {
        nonblocking,
        record_len: false,
    }
}

/// An `io::Error` of the socket as this layer's [`Error`], saying what failed.
fn io_error(what: &str, err: io::Error) -> Error {
    match err.kind() {
        io::ErrorKind::TimedOut => Error::new(ErrorKind::TimedOut, err.to_string()),
        io::ErrorKind::WouldBlock => Error::with_source(
            ErrorKind::WouldBlock,
            format!("{what}: the socket is non-blocking and not ready"),
            err,
        ),
        _ => Error::with_source(ErrorKind::Io, format!("{what} failed"), err),
    }
}

/// The peer refused the descriptors of a message (`EPERM`), if that is what `err` is.
fn peer_refused(err: Error, fds: &[BorrowedFd<'_>]) -> Error {
    let eperm = std::error::Error::source(&err)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .is_some_and(|source| source.raw_os_error() == Some(libc::EPERM));
    if fds.is_empty() || !eperm {
        return err;
    }
    Error::new(
        ErrorKind::Fds,
        "the peer does not accept descriptors (SO_PASSRIGHTS is off on its end; a sockpair \
         channel accepts them after accept_fds(true)); nothing was sent",
    )
}

impl<Tx, Rx> fmt::Debug for Channel<Tx, Rx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}

impl<Tx> Drop for Sender<Tx> {
    fn drop(&mut self) {
        if self.split {
            // Best effort: the peer may be gone already.
            let _ = self.shared.socket.shutdown(std::net::Shutdown::Write);
        }
    }
}

impl<Tx> fmt::Debug for Sender<Tx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("socket", &self.shared.socket)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

impl<Rx> fmt::Debug for Receiver<Rx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("socket", &self.shared.socket)
            .field("framing", &self.framing())
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}
