//! [`Receiver`]: the receiving half of a [`Channel`](super::Channel), driving the
//! transports' receive sides; [`Messages`], its iterator.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::records::Record;
use super::records::RecordRx;
use super::stream::StreamRx;
use super::{RxCore, Shared, Waits, io_error, memfd};
use crate::error::{Error, ErrorKind};
use crate::fds::Recv;
use crate::frame::{Framing, Payload};
use crate::message::Receive;
use crate::socket::Socket;
use crate::wait::Events;

/// The receiving half of a [`Channel`](crate::Channel) ([`Channel::split`](crate::Channel::split)): `Send`, with its own
/// [`read_timeout`](Receiver::read_timeout) and [`max_frame_len`](Receiver::max_frame_len).
pub struct Receiver<Rx> {
    pub(super) shared: Arc<Shared>,
    pub(super) core: RxCore,
    pub(super) read_timeout: Option<Duration>,
    pub(super) types: PhantomData<fn() -> Rx>,
}

impl<Rx> Receiver<Rx> {
    /// The largest message accepted (default [`DEFAULT_MAX_FRAME_LEN`](crate::frame::DEFAULT_MAX_FRAME_LEN), 64 MiB). A
    /// larger one is refused before memory is spent on it, with [`ErrorKind::TooLarge`]
    /// and its real size; on a byte stream the receiver then stops
    /// ([`ErrorKind::Unusable`]), since what follows cannot be trusted to be a frame;
    /// on records the next record comes next. Memory for a message within the limit
    /// grows as its bytes arrive, never for what a header merely claims.
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.core.set_max(max);
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
    /// refuses them, so the peer's [`send_with_fds`](crate::Sender::send_with_fds) fails at
    /// once with [`ErrorKind::Fds`] and nothing of its message is sent. On seqpacket and
    /// datagram sockets, where large messages travel as a descriptor, and on kernels
    /// before 6.16, they arrive, are closed, and this end's next receive reports
    /// [`ErrorKind::Fds`] (the message itself comes with the receive after). Nothing is
    /// ever dropped without an error somewhere.
    ///
    /// # Errors
    ///
    /// The kernel's error from `setsockopt(SO_PASSRIGHTS)` (a kernel before 6.16, which
    /// has no such option, is not an error: this end's own check keeps descriptors
    /// out); the setting is then unchanged.
    pub fn accept_fds(&mut self, accept: bool) -> io::Result<&mut Self> {
        self.core.set_accept(&self.shared.socket, accept)?;
        Ok(self)
    }

    /// The framing of a stream; `None` on records.
    pub fn framing(&self) -> Option<Framing> {
        self.core.framing()
    }

    /// The socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.shared.socket
    }
}

impl<Rx: Receive> Receiver<Rx> {
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
    pub fn recv(&mut self) -> Result<Option<Rx::Value>, Error> {
        self.recv_with_fds(&mut Vec::new())
    }

    /// Receives one message and appends the descriptors that came with it to `fds`
    /// (close-on-exec, in the order they were sent).
    ///
    /// # Errors
    ///
    /// As [`recv`](Receiver::recv).
    pub fn recv_with_fds(&mut self, fds: &mut Vec<OwnedFd>) -> Result<Option<Rx::Value>, Error> {
        let waits = Waits::new(&self.shared.socket, "read_timeout", self.read_timeout);
        // A reader blocked in `recv` on a stream is woken each time the peer takes data
        // this end sent (the kernel's wake-up for writers reaches it too), two context
        // switches for nothing. Right after a send that is what the peer does, so then
        // wait in `poll` for input, which nothing else ends. A load and a store, not a
        // swap: no locked instruction on the hot path (a send racing in between only
        // costs one wait in `recv` instead of `poll`).
        let sent = &self.shared.sent_since_read;
        let poll_first = sent.load(Ordering::Relaxed);
        if poll_first {
            sent.store(false, Ordering::Relaxed);
        }
        receive::<Rx>(&mut self.core, poll_first, waits, fds)
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
}

/// Receives one message, and appends its descriptors to `fds`: the receive of both
/// shells, the blocking one waiting in `waits` (in `poll` before the first read if
/// `poll_first`), the async ones trying once ([`Waits::once`]). Whatever has arrived of
/// a message when a read fails is kept in `core`, and the next call continues it.
pub(crate) fn receive<Rx: Receive>(
    core: &mut RxCore,
    poll_first: bool,
    waits: Waits<'_>,
    fds: &mut Vec<OwnedFd>,
) -> Result<Option<Rx::Value>, Error> {
    match core {
        RxCore::Stream(rx) => recv_frame::<Rx>(rx, poll_first, waits, fds),
        RxCore::Records(rx) => recv_record::<Rx>(rx, waits, fds),
    }
}

/// Receives one frame from a stream, reading until one is whole.
fn recv_frame<Rx: Receive>(
    rx: &mut StreamRx,
    mut poll_first: bool,
    waits: Waits<'_>,
    fds: &mut Vec<OwnedFd>,
) -> Result<Option<Rx::Value>, Error> {
    loop {
        if let Some(frame) = rx.next()? {
            if !frame.fds.is_empty() {
                fds.extend(frame.fds);
            }
            return decode::<Rx>(frame.payload, rx.buffer()).map(Some);
        }
        let mut arrived = Vec::new();
        rx.prepare_read()?;
        let received = waits
            .run(Events::IN, poll_first, |socket, nonblocking| {
                socket.recv_append(rx.targets(), &mut arrived, recv_how(nonblocking))
            })
            .map_err(|err| io_error("receive", err))?;
        poll_first = false;
        if received.bytes == 0 {
            rx.eof()?;
            return Ok(None);
        }
        rx.received(received.bytes, arrived, received.fds_lost);
    }
}

/// Receives one record, and the message it carries (a large one from its memfd).
fn recv_record<Rx: Receive>(
    rx: &mut RecordRx,
    waits: Waits<'_>,
    fds: &mut Vec<OwnedFd>,
) -> Result<Option<Rx::Value>, Error> {
    if let Some(payload) = rx.held() {
        return decode::<Rx>(payload, rx.lent()).map(Some);
    }
    let mut arrived = Vec::new();
    let buffer = rx.buffer()?;
    let received = waits
        .run(Events::IN, false, |socket, nonblocking| {
            let how = Recv {
                nonblocking,
                record_len: true,
            };
            let most = buffer.capacity();
            socket.recv_append([(&mut *buffer, most)], &mut arrived, how)
        })
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
    decode::<Rx>(payload, rx.lent()).map(Some)
}

/// The messages of a [`Receiver`] (or [`Channel`](crate::Channel)) as an iterator: [`Receiver::iter`].
#[derive(Debug)]
pub struct Messages<'a, Rx> {
    receiver: &'a mut Receiver<Rx>,
    done: bool,
}

impl<Rx: Receive> Iterator for Messages<'_, Rx> {
    type Item = Result<Rx::Value, Error>;

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
                self.done = ends_messages(&err);
                Some(Err(err))
            }
        }
    }
}

/// Whether an error of a receive ends a stream of messages: the channel is unusable, or
/// the stream ended inside a message, or the kernel failed.
pub(crate) fn ends_messages(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Unusable | ErrorKind::UnexpectedEof | ErrorKind::Io
    )
}

fn decode<Rx: Receive>(payload: Payload, buffer: &[u8]) -> Result<Rx::Value, Error> {
    match payload {
        Payload::Lent(range) => Rx::receive(&buffer[range]),
        Payload::Own(payload) => Rx::receive_owned(payload),
    }
}

fn recv_how(nonblocking: bool) -> Recv {
    Recv {
        nonblocking,
        record_len: false,
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
