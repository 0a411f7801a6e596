//! The driver's send side: frames out, whole, in order, descriptors on their frame's
//! first `sendmsg`.

use std::borrow::Cow;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::net::SendFlags;

use super::{Drive, TxCore, io_error};
use crate::channel::memfd;
use crate::channel::records::RecordTx;
use crate::channel::stream::{StreamTx, TINY};
use crate::error::{Error, ErrorKind};
use crate::fds::MAX_FDS_PER_MESSAGE;
use crate::frame::length;
use crate::message::EncodeAs;
#[cfg(feature = "tokio")]
use crate::socket::Socket;
use crate::wait::Events;

/// Frames with payloads up to this size are copied into one buffer to be sent.
const GATHER_BELOW: usize = 512;

/// Sends several messages with as few system calls as possible: on a stream their
/// frames gathered into one buffer and written together; on records one by one.
pub(crate) fn send_batch<'m, Tx, M: EncodeAs<Tx> + ?Sized + 'm>(
    core: &mut TxCore,
    scratch: &mut Vec<u8>,
    drive: Drive<'_>,
    messages: impl IntoIterator<Item = &'m M>,
) -> Result<(), Error> {
    let TxCore::Stream(tx) = core else {
        return messages
            .into_iter()
            .try_for_each(|message| send_message(core, scratch, drive, message, &[]));
    };
    let mut gather = std::mem::take(&mut tx.gather);
    gather.clear();
    let gathered = messages.into_iter().try_for_each(|message| {
        if let Some(fd) = message.attached_fd() {
            // Its descriptor goes with its own frame: what is gathered goes first.
            flush(tx, drive)?;
            write_frame(tx, drive, &[&gather], &[])?;
            gather.clear();
            scratch.clear();
            let mut header = [0; length::MAX_HEADER];
            let payload = message.encode_as(scratch)?;
            let parts = tx.parts(payload, &mut header)?;
            return write_frame(tx, drive, &parts, &[fd]);
        }
        scratch.clear();
        let mut header = [0; length::MAX_HEADER];
        let payload = message.encode_as(scratch)?;
        for part in tx.parts(payload, &mut header)? {
            gather.extend_from_slice(part);
        }
        Ok(())
    });
    let result = gathered.and_then(|()| {
        flush(tx, drive)?;
        write_frame(tx, drive, &[&gather], &[])
    });
    tx.gather = gather;
    result
}

/// Encodes `message` (in `scratch` if it must be) and sends it with `fds`, framed as
/// `core` says: the send of both shells, the blocking one waiting in `drive`, the async
/// ones trying once ([`Drive::once`]).
pub(crate) fn send_message<Tx, M: EncodeAs<Tx> + ?Sized>(
    core: &mut TxCore,
    scratch: &mut Vec<u8>,
    drive: Drive<'_>,
    message: &M,
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    let fds = with_attached(message, fds);
    check_fds(&fds)?;
    scratch.clear();
    let payload = message.encode_as(scratch)?;
    send_payload(core, drive, payload, &fds)
}

/// `fds`, then the descriptor `message` carries itself, if any ([`EncodeAs::attached_fd`]).
pub(crate) fn with_attached<'a, Tx, M: EncodeAs<Tx> + ?Sized>(
    message: &'a M,
    fds: &'a [BorrowedFd<'a>],
) -> Cow<'a, [BorrowedFd<'a>]> {
    match message.attached_fd() {
        None => Cow::Borrowed(fds),
        Some(fd) => Cow::Owned(fds.iter().copied().chain([fd]).collect()),
    }
}

/// Sends an encoded message, after whatever waits to go first.
fn send_payload(
    core: &mut TxCore,
    drive: Drive<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    match core {
        TxCore::Stream(tx) => send_frame(tx, drive, payload, fds),
        TxCore::Records(tx) => {
            flush_records(tx, drive)?;
            send_record(drive, payload, fds)
        }
    }
}

/// Messages from this size on are not copied into the queue by a feed: what is queued
/// is written, then the message from where it is (a copy would cost more than the
/// system call it saves).
pub(crate) const QUEUE_BELOW: usize = 32 * 1024;

#[cfg(feature = "tokio")]
/// The async shells' send: writes what an earlier message left unsent, then what the socket takes of this one
/// now. `Ok` once the message is committed: all of it written, or its first part, the
/// rest kept in `core`. `WouldBlock` if nothing of it was written.
pub(crate) fn commit<Tx, M: EncodeAs<Tx> + ?Sized>(
    core: &mut TxCore,
    scratch: &mut Vec<u8>,
    socket: &Socket,
    message: &M,
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    let once = Drive::once(socket);
    flush_core(core, once)?;
    match send_message(core, scratch, once, message, fds) {
        // Only this message's rest can be unsent: the earlier one's was flushed.
        Err(err) if err.kind() == crate::ErrorKind::WouldBlock && has_unsent(core) => Ok(()),
        other => other,
    }
}

/// A frame an async send writes from the caller's buffer while its future lives: only
/// if it is dropped with part of the frame written is the rest copied, kept for the next
/// send or flush (the peer must never see half a frame followed by another).
#[cfg(feature = "tokio")]
pub(crate) struct Writing<'a> {
    tx: &'a mut StreamTx,
    parts: [&'a [u8]; 3],
    fds: &'a [BorrowedFd<'a>],
    sent: usize,
    total: usize,
}

#[cfg(feature = "tokio")]
impl<'a> Writing<'a> {
    /// A frame of `payload` for `tx`, nothing of it written yet.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] for a line with a newline; [`ErrorKind::Fds`] for too many
    /// descriptors.
    pub(crate) fn start(
        tx: &'a mut StreamTx,
        payload: &'a [u8],
        header: &'a mut [u8; length::MAX_HEADER],
        fds: &'a [BorrowedFd<'a>],
    ) -> Result<Writing<'a>, Error> {
        check_fds(fds)?;
        let parts = tx.parts(payload, header)?;
        let total = parts.iter().map(|part| part.len()).sum();
        Ok(Writing {
            tx,
            parts,
            fds,
            sent: 0,
            total,
        })
    }

    /// Whether the whole frame went out.
    pub(crate) fn done(&self) -> bool {
        self.sent == self.total
    }

    /// Writes what the socket takes now, descriptors with the first byte.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WouldBlock`] if it took nothing; otherwise as a send.
    pub(crate) fn write_some(&mut self, socket: &Socket) -> Result<(), Error> {
        let mut storage = [IoSlice::new(&[]); 3];
        let mut count = 0;
        let mut skip = self.sent;
        for part in self.parts {
            let here = skip.min(part.len());
            skip -= here;
            if part.len() > here {
                storage[count] = IoSlice::new(&part[here..]);
                count += 1;
            }
        }
        let fds = if self.sent == 0 { self.fds } else { &[] };
        let n = socket
            .send_msg(&storage[..count], fds, send_flags(true))
            .map_err(|err| peer_refused(io_error("send", err), fds))?;
        self.sent += n;
        match self.done() {
            true => Ok(()),
            false => Err(full()),
        }
    }
}

#[cfg(feature = "tokio")]
impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.sent == 0 || self.done() {
            return; // nothing of it went out, or all of it
        }
        let mut skip = self.sent;
        let mut rest: [&[u8]; 3] = [&[]; 3];
        for (i, part) in self.parts.iter().enumerate() {
            let here = skip.min(part.len());
            skip -= here;
            rest[i] = &part[here..];
        }
        self.tx.keep_unsent(&rest);
    }
}

/// Refuses more descriptors than one message carries.
fn check_fds(fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(Error::new(
            ErrorKind::Fds,
            format!(
                "{} descriptors in one message; at most {MAX_FDS_PER_MESSAGE}",
                fds.len()
            ),
        ));
    }
    Ok(())
}

/// Writes what an earlier send left unsent, if anything (a record goes whole or not at
/// all, so records never leave anything).
pub(crate) fn flush_core(core: &mut TxCore, drive: Drive<'_>) -> Result<(), Error> {
    match core {
        TxCore::Stream(tx) => flush(tx, drive),
        TxCore::Records(tx) => flush_records(tx, drive),
    }
}

/// Sends the queued records, one by one.
fn flush_records(tx: &mut RecordTx, drive: Drive<'_>) -> Result<(), Error> {
    while let Some(payload) = tx.next_queued() {
        if let Err(err) = send_record(drive, payload, &[]) {
            let (left, _) = tx.queued();
            return Err(not_written(err, left));
        }
        tx.sent_queued();
    }
    Ok(())
}

/// A failed flush, saying how many queued messages it did not write.
fn not_written(err: Error, left: usize) -> Error {
    Error::with_source(
        err.kind(),
        format!("{err}: {left} queued message(s) not written; they stay queued"),
        err,
    )
}

/// Whether anything waits to be written before anything else: a frame's rest, or
/// queued messages.
#[cfg(feature = "tokio")]
pub(crate) fn has_pending(core: &TxCore) -> bool {
    match core {
        TxCore::Stream(tx) => tx.has_pending(),
        TxCore::Records(tx) => tx.queued().0 > 0,
    }
}

/// Whether part of a frame drive to be written before anything else.
#[cfg(feature = "tokio")]
pub(crate) fn has_unsent(core: &TxCore) -> bool {
    match core {
        TxCore::Stream(tx) => !tx.unsent().is_empty(),
        TxCore::Records(_) => false,
    }
}

/// Sends one frame, after what an earlier one left unsent, if anything.
fn send_frame(
    tx: &mut StreamTx,
    drive: Drive<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    if tx.has_pending() {
        flush(tx, drive)?;
    } else if fds.is_empty() && !drive.limited() {
        // The most common message of all, on the shortest path: built on the stack and
        // written with one `send`.
        let mut frame = [0; TINY + 4];
        if let Some(len) = tx.tiny(payload, &mut frame) {
            let frame_only = [IoSlice::new(&frame[..len])];
            match drive
                .socket
                .send_msg(&frame_only, &[], send_flags(drive.never_blocks()))
            {
                Ok(n) if n == len => return Ok(()),
                Ok(n) => {
                    tx.keep_unsent(&[&frame[n..len]]);
                    return flush(tx, drive);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {} // retried below
                Err(err) => return Err(io_error("send", err)),
            }
        }
    }
    let mut header = [0; length::MAX_HEADER];
    let parts = tx.parts(payload, &mut header)?;
    if !fds.is_empty() || payload.len() > GATHER_BELOW {
        return write_frame(tx, drive, &parts, fds);
    }
    // A small frame is cheaper copied into one buffer and sent with a plain `send` than
    // gathered by `sendmsg`.
    let mut gather = std::mem::take(&mut tx.gather);
    gather.clear();
    for part in parts {
        gather.extend_from_slice(part);
    }
    let result = write_frame(tx, drive, &[&gather], &[]);
    tx.gather = gather;
    result
}

/// Writes what an earlier send left unsent, then the queued frames, in as few writes as
/// the socket takes.
///
/// # Errors
///
/// As a send; the message says how many queued messages were not written, and they
/// stay queued, the first of them from where it stopped.
fn flush(tx: &mut StreamTx, drive: Drive<'_>) -> Result<(), Error> {
    while !tx.unsent().is_empty() {
        let n = drive
            .run(Events::OUT, false, |socket, nonblocking| {
                socket.send_msg(&[IoSlice::new(tx.unsent())], &[], send_flags(nonblocking))
            })
            .map_err(|err| io_error("send", err))?;
        tx.sent_unsent(n);
        if drive.never_blocks() && !tx.unsent().is_empty() {
            return Err(full());
        }
    }
    while !tx.queued().is_empty() {
        let sent = drive.run(Events::OUT, false, |socket, nonblocking| {
            socket.send_msg(&[IoSlice::new(tx.queued())], &[], send_flags(nonblocking))
        });
        match sent {
            Ok(n) => tx.sent_queued(n),
            Err(err) => return Err(not_written(io_error("flush", err), tx.queued_messages())),
        }
        if drive.never_blocks() && !tx.queued().is_empty() {
            return Err(not_written(full(), tx.queued_messages()));
        }
    }
    Ok(())
}

/// What a non-blocking write that took only part of what it was given means: the
/// socket is full (a stream takes all it has room for), so the async shells wait for
/// room, as after `WouldBlock`, rather than make a write that would fail.
fn full() -> Error {
    io_error("send", io::ErrorKind::WouldBlock.into())
}

/// How much a stream's queue of fed frames holds before a feed writes it.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// Queues `message` to be written with the next flush, or with this feed once the queue
/// holds [`HIGH_WATER`] bytes: no system call until then. On a stream the queued frames
/// go out together, in as few writes as the socket takes; on records one record each.
/// A message with descriptors is sent at once, after what is queued (descriptors are
/// never held in a queue: holding them would take a `dup` each).
pub(crate) fn feed_message<Tx, M: EncodeAs<Tx> + ?Sized>(
    core: &mut TxCore,
    scratch: &mut Vec<u8>,
    drive: Drive<'_>,
    message: &M,
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    if !fds.is_empty() || message.attached_fd().is_some() {
        return send_message(core, scratch, drive, message, fds);
    }
    scratch.clear();
    let payload = message.encode_as(scratch)?;
    if payload.len() >= QUEUE_BELOW {
        flush_core(core, drive)?;
        return send_payload(core, drive, payload, &[]);
    }
    if queue_payload(core, payload)? {
        flush_core(core, drive)?;
    }
    Ok(())
}

/// Queues `message` (no system call) if it is shorter than `below` bytes (`None`, and
/// nothing queued, if not); `Some(true)` once the queue holds [`HIGH_WATER`] bytes or
/// more, to be flushed.
///
/// # Errors
///
/// [`ErrorKind::Encode`] if it cannot be encoded: nothing is queued.
#[cfg(feature = "tokio")]
pub(crate) fn queue_message<Tx, M: EncodeAs<Tx> + ?Sized>(
    core: &mut TxCore,
    scratch: &mut Vec<u8>,
    message: &M,
    below: usize,
) -> Result<Option<bool>, Error> {
    if message.attached_fd().is_some() {
        return Ok(None); // a descriptor is never held in a queue
    }
    scratch.clear();
    let payload = message.encode_as(scratch)?;
    if payload.len() >= below {
        return Ok(None);
    }
    queue_payload(core, payload).map(Some)
}

/// Queues an encoded message; `true` once the queue holds [`HIGH_WATER`] bytes.
fn queue_payload(core: &mut TxCore, payload: &[u8]) -> Result<bool, Error> {
    Ok(match core {
        TxCore::Stream(tx) => {
            tx.queue(payload)?;
            tx.queued().len() >= HIGH_WATER
        }
        TxCore::Records(tx) => {
            tx.queue(payload);
            tx.queued().1 >= HIGH_WATER
        }
    })
}

/// How many bytes fed messages hold in the queue.
#[cfg(feature = "tokio")]
pub(crate) fn queued_bytes(core: &TxCore) -> usize {
    match core {
        TxCore::Stream(tx) => tx.queued().len(),
        TxCore::Records(tx) => tx.queued().1,
    }
}

/// How many fed messages wait in the queue.
pub(crate) fn queued_messages(core: &TxCore) -> usize {
    match core {
        TxCore::Stream(tx) => tx.queued_messages(),
        TxCore::Records(tx) => tx.queued().0,
    }
}

/// Writes `parts` (one or more whole frames, in at most three parts), `fds` with the
/// first byte; keeps what is left unsent in `tx` if it stops part way.
fn write_frame(
    tx: &mut StreamTx,
    drive: Drive<'_>,
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
        match drive.run(Events::OUT, false, |socket, nonblocking| {
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
fn send_record(drive: Drive<'_>, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
    if payload.is_empty() && fds.last().is_some_and(|&fd| memfd::is_sealed(fd)) {
        return Err(Error::new(
            ErrorKind::Encode,
            "an empty message whose last descriptor is a sealed memfd is how a large message \
             is marked on records; add a byte or put another descriptor last",
        ));
    }
    let sent = drive.run(Events::OUT, false, |socket, nonblocking| {
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
    drive
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
