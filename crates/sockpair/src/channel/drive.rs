//! The one I/O driver of both shells: it runs the I/O-free cores (`stream.rs`,
//! `records.rs`) over a socket, sending and receiving whole messages. How each
//! operation drive is a [`Drive`]: the blocking [`Channel`](crate::Channel) blocks (in
//! `poll` until a deadline, if it has a timeout), the async shells try once and wait on
//! tokio's reactor when it says `WouldBlock`. Either way the same bytes go out and the
//! same frames come in, and what a failed operation left (part of a frame sent, part of
//! one received) stays in the core for the next one.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::net::SendFlags;

use super::memfd;
use super::records::{Record, RecordRx};
use super::stream::{StreamRx, StreamTx, TINY};
use crate::error::{Error, ErrorKind};
use crate::fds::{MAX_FDS_PER_MESSAGE, Recv};
use crate::frame::{Framing, Payload, length};
use crate::message::{EncodeAs, Receive};
use crate::socket::Socket;
use crate::wait::{Events, poll_until};

/// Frames with payloads up to this size are copied into one buffer to be sent.
const GATHER_BELOW: usize = 512;

#[derive(Debug)]
pub(crate) enum TxCore {
    Stream(StreamTx),
    Records,
}

#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per receiver, made once and never moved on a hot path; a box would add \
              a pointer chase to every receive"
)]
pub(crate) enum RxCore {
    Stream(StreamRx),
    Records(RecordRx),
}

impl RxCore {
    /// The largest message accepted: see [`Receiver::max_frame_len`].
    pub(crate) fn set_max(&mut self, max: usize) {
        match self {
            RxCore::Stream(rx) => rx.set_max(max),
            RxCore::Records(rx) => rx.set_max(max),
        }
    }

    /// Whether `socket`, this core's, takes descriptors: see [`Receiver::accept_fds`].
    pub(crate) fn set_accept(&mut self, socket: &Socket, accept: bool) -> io::Result<()> {
        match self {
            RxCore::Stream(rx) => {
                match socket.set_pass_rights(accept) {
                    // Before Linux 6.16 the kernel cannot refuse: our own check remains.
                    Err(err) if err.raw_os_error() == Some(libc::ENOPROTOOPT) => {}
                    other => other?,
                }
                rx.set_accept(accept);
            }
            RxCore::Records(rx) => rx.set_accept(accept),
        }
        Ok(())
    }

    /// The framing of a stream; `None` on records.
    pub(crate) fn framing(&self) -> Option<Framing> {
        match self {
            RxCore::Stream(rx) => Some(rx.framing()),
            RxCore::Records(_) => None,
        }
    }
}

/// What one send or receive may wait for: its socket, when its timeout ends, and which
/// timeout that is (for the error that says so).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Drive<'a> {
    pub(crate) socket: &'a Socket,
    deadline: Option<Instant>,
    timeout: (&'static str, Option<Duration>),
    /// Never drive: each operation is tried once without blocking, and `WouldBlock` is
    /// returned for the async shells to wait on the runtime's reactor.
    once: bool,
}

impl<'a> Drive<'a> {
    /// Drive on `socket` for at most `timeout` (named `name`) from now; `None`, or a
    /// timeout too long for the clock, is no limit.
    #[inline]
    pub(crate) fn blocking(
        socket: &'a Socket,
        name: &'static str,
        timeout: Option<Duration>,
    ) -> Self {
        Drive {
            socket,
            deadline: timeout.and_then(|timeout| Instant::now().checked_add(timeout)),
            timeout: (name, timeout),
            once: false,
        }
    }

    /// Drive on nothing: each operation on `socket` is tried once without blocking
    /// (signals aside), and fails with `WouldBlock` if the socket is not ready.
    #[cfg(feature = "tokio")]
    pub(crate) fn once(socket: &'a Socket) -> Self {
        Drive {
            socket,
            deadline: None,
            timeout: ("", None),
            once: true,
        }
    }

    /// Whether there is a deadline.
    #[inline]
    pub(crate) fn limited(&self) -> bool {
        self.deadline.is_some()
    }

    /// Whether operations must not block (the async shells).
    #[inline]
    pub(crate) fn never_blocks(&self) -> bool {
        self.once
    }

    /// Runs `op` on the socket until it succeeds: first waiting in `poll` (until the
    /// deadline) if `poll_first` or there is a deadline, and then telling `op` it must
    /// not block; else letting `op` block. A signal never ends the wait; a deadline that
    /// passes is `TimedOut`, naming the timeout.
    #[inline]
    pub(crate) fn run<T>(
        &self,
        events: Events,
        poll_first: bool,
        mut op: impl FnMut(&Socket, bool) -> io::Result<T>,
    ) -> io::Result<T> {
        let poll_first = poll_first || self.limited();
        if self.once {
            loop {
                match op(self.socket, true) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    other => return other,
                }
            }
        }
        loop {
            if poll_first && !poll_until(self.socket, events, self.deadline)? {
                let (name, after) = self.timeout;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{name} of {:?} passed", after.unwrap_or_default()),
                ));
            }
            match op(self.socket, poll_first) {
                Ok(value) => return Ok(value),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock && poll_first => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// An `io::Error` of the socket as this layer's [`Error`], saying what failed.
pub(crate) fn io_error(what: &str, err: io::Error) -> Error {
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
        TxCore::Stream(tx) => send_frame(tx, drive, payload, fds),
        TxCore::Records => send_record(drive, payload, fds),
    }
}

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

/// Writes what an earlier send left unsent, if anything (a record goes whole or not at
/// all, so records never leave anything).
pub(crate) fn flush_core(core: &mut TxCore, drive: Drive<'_>) -> Result<(), Error> {
    match core {
        TxCore::Stream(tx) => flush(tx, drive),
        TxCore::Records => Ok(()),
    }
}

/// Whether part of a frame drive to be written before anything else.
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
    drive: Drive<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    if !tx.unsent().is_empty() {
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

/// Writes what an earlier send left unsent.
fn flush(tx: &mut StreamTx, drive: Drive<'_>) -> Result<(), Error> {
    while !tx.unsent().is_empty() {
        let n = drive
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

/// Receives one message, and appends its descriptors to `fds`: the receive of both
/// shells, the blocking one waiting in `drive` (in `poll` before the first read if
/// `poll_first`), the async ones trying once ([`Drive::once`]). Whatever has arrived of
/// a message when a read fails is kept in `core`, and the next call continues it.
pub(crate) fn receive<Rx: Receive>(
    core: &mut RxCore,
    poll_first: bool,
    drive: Drive<'_>,
    fds: &mut Vec<OwnedFd>,
) -> Result<Option<Rx::Value>, Error> {
    match core {
        RxCore::Stream(rx) => recv_frame::<Rx>(rx, poll_first, drive, fds),
        RxCore::Records(rx) => recv_record::<Rx>(rx, drive, fds),
    }
}

/// Receives one frame from a stream, reading until one is whole.
fn recv_frame<Rx: Receive>(
    rx: &mut StreamRx,
    mut poll_first: bool,
    drive: Drive<'_>,
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
        let received = drive
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
    drive: Drive<'_>,
    fds: &mut Vec<OwnedFd>,
) -> Result<Option<Rx::Value>, Error> {
    if let Some(payload) = rx.held() {
        return decode::<Rx>(payload, rx.lent()).map(Some);
    }
    let mut arrived = Vec::new();
    let buffer = rx.buffer()?;
    let received = drive
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
