//! [`Receiver`]: the receiving half of a [`Channel`](super::Channel), blocking, over the
//! driver's receive (`drive.rs`); [`Messages`], its iterator.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;
use super::drive::{Drive, RxCore, ends_messages, receive, receive_with};
use crate::error::Error;
use crate::frame::{Framing, Payload};
use crate::message::Receive;
use crate::socket::Socket;

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
    /// larger one is refused before memory is spent on it, with [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge)
    /// and its real size; on a byte stream the receiver then stops
    /// ([`ErrorKind::Unusable`](crate::ErrorKind::Unusable)), since what follows cannot be trusted to be a frame;
    /// on records the next record comes next. Memory for a message within the limit
    /// grows as its bytes arrive, never for what a header merely claims.
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.core.set_max(max);
        self
    }

    /// The longest a receive may wait for a whole message (default: no limit; a duration
    /// too long for the clock is no limit too). When it passes, the receive fails with
    /// [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut); what had arrived of the message is kept, and the next
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
    /// once with [`ErrorKind::Fds`](crate::ErrorKind::Fds) and nothing of its message is sent. On seqpacket and
    /// datagram sockets, where large messages travel as a descriptor, and on kernels
    /// before 6.16, they arrive, are closed, and this end's next receive reports
    /// [`ErrorKind::Fds`](crate::ErrorKind::Fds) (the message itself comes with the receive after). Nothing is
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
    /// [`ErrorKind::UnexpectedEof`](crate::ErrorKind::UnexpectedEof) if the stream ends inside a message,
    /// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge), [`ErrorKind::BadHeader`](crate::ErrorKind::BadHeader), [`ErrorKind::Decode`](crate::ErrorKind::Decode),
    /// [`ErrorKind::Fds`](crate::ErrorKind::Fds) (descriptors refused or lost: see
    /// [`accept_fds`](Receiver::accept_fds)), [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut),
    /// [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) on a non-blocking socket, [`ErrorKind::Unusable`](crate::ErrorKind::Unusable) after a
    /// framing error, or [`ErrorKind::Io`](crate::ErrorKind::Io) with the kernel's error. A signal does not
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
        let (drive, poll_first) = receiving(&self.shared, self.read_timeout);
        receive::<Rx>(&mut self.core, poll_first, drive, fds)
    }

    /// The messages as they come, until the end of the stream. An error is yielded as
    /// it comes; after one that ends the stream ([`ErrorKind::Unusable`](crate::ErrorKind::Unusable),
    /// [`ErrorKind::UnexpectedEof`](crate::ErrorKind::UnexpectedEof), [`ErrorKind::Io`](crate::ErrorKind::Io)) the iterator ends.
    pub fn iter(&mut self) -> Messages<'_, Rx> {
        Messages {
            receiver: self,
            done: false,
        }
    }
}

impl Receiver<Vec<u8>> {
    /// Receives one message into `buf`, replacing what it held: `Ok(true)`, or
    /// `Ok(false)` at a clean end of stream. The buffer is the caller's to keep: hand
    /// the same one back with each call, and a steady stream of messages allocates
    /// nothing per message (a large or predicted message is read into a buffer of its
    /// own, which `buf` becomes; the buffer it held goes to the channel for a message to
    /// come; a few allocations happen when the pattern of reads changes).
    ///
    /// ```
    /// use sockpair::{pair, Channel, Type};
    ///
    /// let (a, b) = pair(Type::STREAM)?;
    /// let (mut a, mut b): (Channel<Vec<u8>>, Channel<Vec<u8>>) = (Channel::new(a)?, Channel::new(b)?);
    /// let mut buf = Vec::new();
    /// for i in 0..3u8 {
    ///     a.send(&[i; 4096])?;
    ///     assert!(b.recv_into(&mut buf)?);
    ///     assert_eq!(buf, [i; 4096]);
    /// }
    /// drop(a);
    /// assert!(!b.recv_into(&mut buf)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Receiver::recv); `buf` is left as it was.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<bool, Error> {
        self.recv_into_with_fds(buf, &mut Vec::new())
    }

    /// [`recv_into`](Receiver::recv_into), appending the descriptors that came with the
    /// message to `fds`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Receiver::recv).
    pub fn recv_into_with_fds(
        &mut self,
        buf: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<bool, Error> {
        let (drive, poll_first) = receiving(&self.shared, self.read_timeout);
        let mut old = None;
        let got = receive_with(
            &mut self.core,
            poll_first,
            drive,
            fds,
            &mut |payload, lent, _| {
                match payload {
                    Payload::Lent(range) => {
                        buf.clear();
                        buf.extend_from_slice(&lent[range]);
                    }
                    Payload::Own(own) => old = Some(std::mem::replace(buf, own)),
                }
                Ok(())
            },
        )?;
        if let Some(old) = old {
            self.core.recycle(old);
        }
        Ok(got.is_some())
    }
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

/// How a receive waits (blocking, within `read_timeout`), and whether it waits in `poll`
/// before its first read.
///
/// A reader blocked in `recv` on a stream is woken each time the peer takes data this
/// end sent (the kernel's wake-up for writers reaches it too), two context switches for
/// nothing. Right after a send that is what the peer does, so then wait in `poll` for
/// input, which nothing else ends. A load and a store, not a swap: no locked instruction
/// on the hot path (a send racing in between only costs one wait in `recv` instead of
/// `poll`).
#[inline]
fn receiving(shared: &Shared, read_timeout: Option<Duration>) -> (Drive<'_>, bool) {
    let drive = Drive::blocking(&shared.socket, "read_timeout", read_timeout);
    let sent = &shared.sent_since_read;
    let poll_first = sent.load(Ordering::Relaxed);
    if poll_first {
        sent.store(false, Ordering::Relaxed);
    }
    (drive, poll_first)
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
