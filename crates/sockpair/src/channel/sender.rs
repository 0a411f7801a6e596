//! [`Sender`]: the sending half of a [`Channel`](super::Channel), over the transports'
//! send sides.

use std::fmt;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustix::net::SendFlags;

use super::stream::StreamTx;
use super::stream::TINY;
use super::{Shared, TxCore, Waits, io_error, memfd};
use crate::error::{Error, ErrorKind};
use crate::fds::MAX_FDS_PER_MESSAGE;
use crate::frame::length;
use crate::message::{Encode, EncodeAs};
use crate::socket::Socket;
use crate::wait::Events;

/// Frames with payloads up to this size are copied into one buffer to be sent.
const GATHER_BELOW: usize = 512;

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
        let waits = Waits::new(&self.shared.socket, "write_timeout", self.write_timeout);
        flush_core(&mut self.core, waits)
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
    /// [Never out of step](crate::Channel#never-out-of-step)), or [`ErrorKind::Io`] with the
    /// kernel's error (`EPIPE` once the peer is gone).
    pub fn send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.send_with_fds(message, &[])
    }

    /// Sends one message with descriptors; the receiver gets exactly these, in this
    /// order, with this message, if its end [accepts them](crate::Receiver::accept_fds).
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
        self.shared.sent_since_read.store(true, Ordering::Relaxed);
        let waits = Waits::new(&self.shared.socket, "write_timeout", self.write_timeout);
        send_message(&mut self.core, &mut self.scratch, waits, message, fds)
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
        let waits = Waits::new(&self.shared.socket, "write_timeout", self.write_timeout);
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
            let payload = message.encode_as(&mut scratch)?;
            for part in tx.parts(payload, &mut header)? {
                gather.extend_from_slice(part);
            }
            Ok(())
        });
        self.scratch = scratch;
        let result = gathered.and_then(|()| {
            flush(tx, waits)?;
            write_frame(tx, waits, &[&gather], &[])
        });
        tx.gather = gather;
        result
    }
}

/// Encodes `message` (in `scratch` if it must be) and sends it with `fds`, framed as
/// `core` says: the send of both shells, the blocking one waiting in `waits`, the async
/// ones trying once ([`Waits::once`]).
pub(crate) fn send_message<Tx, M: EncodeAs<Tx> + ?Sized>(
    core: &mut TxCore,
    scratch: &mut Vec<u8>,
    waits: Waits<'_>,
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
    scratch.clear();
    let payload = message.encode_as(scratch)?;
    match core {
        TxCore::Stream(tx) => send_frame(tx, waits, payload, fds),
        TxCore::Records => send_record(waits, payload, fds),
    }
}

/// Writes what an earlier send left unsent, if anything (a record goes whole or not at
/// all, so records never leave anything).
pub(crate) fn flush_core(core: &mut TxCore, waits: Waits<'_>) -> Result<(), Error> {
    match core {
        TxCore::Stream(tx) => flush(tx, waits),
        TxCore::Records => Ok(()),
    }
}

/// Whether part of a frame waits to be written before anything else.
#[cfg(feature = "tokio")]
pub(crate) fn has_unsent(core: &TxCore) -> bool {
    match core {
        TxCore::Stream(tx) => !tx.unsent().is_empty(),
        TxCore::Records => false,
    }
}

/// Sends one frame, after what an earlier one left unsent, if anything.
fn send_frame(
    tx: &mut StreamTx,
    waits: Waits<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    if !tx.unsent().is_empty() {
        flush(tx, waits)?;
    } else if fds.is_empty() && !waits.limited() {
        // The most common message of all, on the shortest path: built on the stack and
        // written with one `send`.
        let mut frame = [0; TINY + 4];
        if let Some(len) = tx.tiny(payload, &mut frame) {
            let frame_only = [IoSlice::new(&frame[..len])];
            match waits
                .socket
                .send_msg(&frame_only, &[], send_flags(waits.never_blocks()))
            {
                Ok(n) if n == len => return Ok(()),
                Ok(n) => {
                    tx.keep_unsent(&[&frame[n..len]]);
                    return flush(tx, waits);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {} // retried below
                Err(err) => return Err(io_error("send", err)),
            }
        }
    }
    let mut header = [0; length::MAX_HEADER];
    let parts = tx.parts(payload, &mut header)?;
    if !fds.is_empty() || payload.len() > GATHER_BELOW {
        return write_frame(tx, waits, &parts, fds);
    }
    // A small frame is cheaper copied into one buffer and sent with a plain `send` than
    // gathered by `sendmsg`.
    let mut gather = std::mem::take(&mut tx.gather);
    gather.clear();
    for part in parts {
        gather.extend_from_slice(part);
    }
    let result = write_frame(tx, waits, &[&gather], &[]);
    tx.gather = gather;
    result
}

/// Writes what an earlier send left unsent.
fn flush(tx: &mut StreamTx, waits: Waits<'_>) -> Result<(), Error> {
    while !tx.unsent().is_empty() {
        let n = waits
            .run(Events::OUT, false, |socket, nonblocking| {
                socket.send_msg(&[IoSlice::new(tx.unsent())], &[], send_flags(nonblocking))
            })
            .map_err(|err| io_error("send", err))?;
        tx.sent_unsent(n);
    }
    Ok(())
}

/// Writes `parts` (one or more whole frames, in at most three parts), `fds` with the
/// first byte; keeps what is left unsent in `tx` if it stops part way.
fn write_frame(
    tx: &mut StreamTx,
    waits: Waits<'_>,
    parts: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    // At most header, payload and trailer; empty parts are left out, so that a frame in
    // one part goes out with a plain `send`.
    let mut storage = [IoSlice::new(&[]); 3];
    let mut count = 0;
    for part in parts.iter().filter(|part| !part.is_empty()) {
        storage[count] = IoSlice::new(part);
        count += 1;
    }
    let mut slices = &mut storage[..count];
    let mut fds = fds;
    let mut sent_any = false;
    while !slices.iter().all(|slice| slice.is_empty()) {
        match waits.run(Events::OUT, false, |socket, nonblocking| {
            socket.send_msg(slices, fds, send_flags(nonblocking))
        }) {
            Ok(n) => {
                fds = &[]; // they went with the first byte
                sent_any |= n > 0;
                IoSlice::advance_slices(&mut slices, n);
            }
            Err(err) => {
                if sent_any {
                    // The peer is inside a frame: the next send completes it first.
                    let rest: Vec<&[u8]> = slices.iter().map(|slice| &**slice).collect();
                    tx.keep_unsent(&rest);
                }
                return Err(peer_refused(io_error("send", err), fds));
            }
        }
    }
    Ok(())
}

/// Sends one record, or, for a message too large for a record, a sealed memfd in one.
fn send_record(waits: Waits<'_>, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
    if payload.is_empty() && fds.last().is_some_and(|&fd| memfd::is_sealed(fd)) {
        return Err(Error::new(
            ErrorKind::Encode,
            "an empty message whose last descriptor is a sealed memfd is how a large message \
             is marked on records; add a byte or put another descriptor last",
        ));
    }
    let sent = waits.run(Events::OUT, false, |socket, nonblocking| {
        socket.send_msg(&[IoSlice::new(payload)], fds, send_flags(nonblocking))
    });
    match sent {
        // Too large for one record (EMSGSIZE), or for the kernel's allocator (ENOBUFS,
        // past about 4 MiB whatever the socket buffer).
        Err(err) if matches!(err.raw_os_error(), Some(libc::EMSGSIZE | libc::ENOBUFS)) => {}
        other => {
            return other
                .map(drop)
                .map_err(|err| peer_refused(io_error("send", err), fds));
        }
    }
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
    waits
        .run(Events::OUT, false, |socket, nonblocking| {
            socket.send_msg(&[], &all, send_flags(nonblocking))
        })
        .map(drop)
        .map_err(|err| peer_refused(io_error("send", err), &all))
}

fn send_flags(nonblocking: bool) -> SendFlags {
    match nonblocking {
        true => SendFlags::DONTWAIT,
        false => SendFlags::empty(),
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
