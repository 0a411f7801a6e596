//! [`Sender`]: the sending half of a [`Channel`](super::Channel), blocking, over the
//! driver's send (`drive.rs`).

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;
use super::drive::{self, Drive, TxCore, flush_core, send_message};
use crate::error::Error;
use crate::message::{Encode, EncodeAs};
use crate::socket::Socket;

/// The sending half of a [`Channel`](crate::Channel) ([`Channel::split`](crate::Channel::split)): `Send`, with its own
/// [`write_timeout`](Sender::write_timeout). Dropping it shuts down the writing side of
/// the socket (`shutdown(SHUT_WR)`, as tokio's write halves do): the peer reads the end
/// of the stream, while this end's [`Receiver`](crate::Receiver) goes on reading.
pub struct Sender<Tx> {
    pub(super) shared: Arc<Shared>,
    /// Made by `split`: shuts down writing when dropped.
    pub(super) split: bool,
    pub(super) core: TxCore,
    /// The encoding of the message being sent.
    pub(super) scratch: Vec<u8>,
    pub(super) write_timeout: Option<Duration>,
    pub(super) types: PhantomData<fn(&Tx)>,
}

impl<Tx> Sender<Tx> {
    /// The longest a send may wait for the peer to make room (default: no limit; a
    /// duration too long for the clock is no limit too). When it passes, the send fails
    /// with [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut); if part of the message had gone out, the rest goes
    /// out first with the next send or [`flush`](Sender::flush).
    pub fn write_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.write_timeout = timeout;
        self
    }

    /// The socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.shared.socket
    }

    /// How many messages [`feed`](Sender::feed) queued that are not written yet.
    pub fn queued(&self) -> usize {
        drive::queued_messages(&self.core)
    }

    /// Writes what an earlier send left unsent (after a timeout, or `WouldBlock` on a
    /// non-blocking socket) and every message [`feed`](Sender::feed) queued, in as few
    /// system calls as the socket allows, within [`write_timeout`](Sender::write_timeout).
    /// Does nothing if all went out.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut), [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) (what was not written is
    /// still kept, and the message says how many queued messages that is), or
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) with the kernel's error.
    pub fn flush(&mut self) -> Result<(), Error> {
        let drive = waiting(&self.shared, self.write_timeout);
        flush_core(&mut self.core, drive)
    }
}

impl<Tx: Encode> Sender<Tx> {
    /// Sends one message: a `Tx`, or a borrowed form of it ([`EncodeAs`]: `&[u8]` or
    /// `b"..."` for `Vec<u8>`, `&str` for `String`), which encodes the same.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode) if the message cannot be encoded (nothing is sent),
    /// [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) or [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) (see
    /// [Never out of step](crate::Channel#never-out-of-step)), or [`ErrorKind::Io`](crate::ErrorKind::Io) with the
    /// kernel's error (`EPIPE` once the peer is gone).
    pub fn send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.send_with_fds(message, &[])
    }

    /// Sends one message with descriptors; the receiver gets exactly these, in this
    /// order, with this message, if its end [accepts them](crate::Receiver::accept_fds).
    ///
    /// # Errors
    ///
    /// As [`send`](Sender::send); also [`ErrorKind::Fds`](crate::ErrorKind::Fds) for more than
    /// [`MAX_FDS_PER_MESSAGE`](crate::MAX_FDS_PER_MESSAGE) descriptors, or when the
    /// peer's end refuses descriptors (nothing is sent then).
    pub fn send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        let drive = sending(&self.shared, self.write_timeout);
        send_message(&mut self.core, &mut self.scratch, drive, message, fds)
    }

    /// Queues one message, to be written with others by [`flush`](Sender::flush): no
    /// system call until the queue holds 64 KiB (then this feed writes it) or `flush`
    /// is called. A burst of small messages fed and flushed once goes out in a few
    /// writes instead of one per message, as with tokio-util's `Framed` (`feed`, then
    /// `flush`). On seqpacket and datagram sockets, where each message is a record of
    /// its own, a feed is a [`send`](Sender::send).
    ///
    /// Queued messages are sent in order, before anything sent later. Dropping the
    /// sender (or its channel) flushes them, as `std::io::BufWriter` does, waiting
    /// within [`write_timeout`](Sender::write_timeout) and ignoring errors: call `flush`
    /// to see them.
    ///
    /// ```
    /// use sockpair::{pair, Channel, Type};
    ///
    /// let (a, b) = pair(Type::STREAM)?;
    /// let (mut a, mut b): (Channel<Vec<u8>>, Channel<Vec<u8>>) = (Channel::new(a)?, Channel::new(b)?);
    /// for i in 0..100u8 {
    ///     a.feed(&[i; 64])?; // queued, no system call
    /// }
    /// assert_eq!(a.queued(), 100);
    /// a.flush()?; // one write
    /// assert_eq!(b.recv()?, Some(vec![0; 64]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Sender::send) (a message that cannot be encoded is not queued), and
    /// those of [`flush`](Sender::flush) when the queue is written.
    pub fn feed<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.feed_with_fds(message, &[])
    }

    /// Queues one message with descriptors; as [`feed`](Sender::feed), except that a
    /// message with descriptors is written at once, after what is queued: the
    /// descriptors go with their own frame's first byte, and holding them in a queue
    /// would take a `dup` each.
    ///
    /// # Errors
    ///
    /// As [`send_with_fds`](Sender::send_with_fds).
    pub fn feed_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        let drive = sending(&self.shared, self.write_timeout);
        drive::feed_message(&mut self.core, &mut self.scratch, drive, message, fds)
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
        let drive = sending(&self.shared, self.write_timeout);
        drive::send_batch(&mut self.core, &mut self.scratch, drive, messages)
    }
}

/// How a sender's operations wait: blocking, within its write timeout.
fn waiting(shared: &Shared, write_timeout: Option<Duration>) -> Drive<'_> {
    Drive::blocking(&shared.socket, "write_timeout", write_timeout)
}

/// [`waiting`], for a send: notes that this end sent, for the receiver's next read (see
/// `Receiver::recv_with_fds`).
fn sending(shared: &Shared, write_timeout: Option<Duration>) -> Drive<'_> {
    shared.sent_since_read.store(true, Ordering::Relaxed);
    waiting(shared, write_timeout)
}

impl<Tx> Drop for Sender<Tx> {
    fn drop(&mut self) {
        if drive::queued_messages(&self.core) > 0 {
            // Best effort, as BufWriter: `flush` is the way to see an error.
            let _ = self.flush();
        }
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
