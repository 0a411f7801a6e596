//! The driver's receive side: bytes and descriptors in, whole messages out.

use std::os::fd::OwnedFd;

use super::{Drive, RxCore, io_error};
use crate::channel::memfd;
use crate::channel::records::{Record, RecordRx};
use crate::channel::stream::StreamRx;
use crate::error::{Error, ErrorKind};
use crate::fds::Recv;
use crate::frame::Payload;
use crate::message::Receive;
use crate::wait::Events;

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
    receive_with(core, poll_first, drive, fds, &mut decode::<Rx>)
}

/// [`receive`], handing the message's payload to `take`: lent from the receive buffer
/// (the second argument) or a buffer of its own, with the message's own descriptors
/// (the third), of which what `take` leaves is appended to `fds`.
#[inline]
pub(crate) fn receive_with<T>(
    core: &mut RxCore,
    poll_first: bool,
    drive: Drive<'_>,
    fds: &mut Vec<OwnedFd>,
    take: &mut impl FnMut(Payload, &[u8], &mut Vec<OwnedFd>) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    match core {
        RxCore::Stream(rx) => recv_frame(rx, poll_first, drive, fds, take),
        RxCore::Records(rx) => recv_record(rx, drive, fds, take),
    }
}

/// Receives one frame from a stream, reading until one is whole.
#[inline]
fn recv_frame<T>(
    rx: &mut StreamRx,
    mut poll_first: bool,
    drive: Drive<'_>,
    fds: &mut Vec<OwnedFd>,
    take: &mut impl FnMut(Payload, &[u8], &mut Vec<OwnedFd>) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    loop {
        if let Some(mut frame) = rx.next()? {
            let taken = take(frame.payload, rx.buffer(), &mut frame.fds);
            if !frame.fds.is_empty() {
                fds.extend(frame.fds);
            }
            return taken.map(Some);
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
#[inline]
fn recv_record<T>(
    rx: &mut RecordRx,
    drive: Drive<'_>,
    fds: &mut Vec<OwnedFd>,
    take: &mut impl FnMut(Payload, &[u8], &mut Vec<OwnedFd>) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    if let Some(payload) = rx.held() {
        return take(payload, rx.lent(), &mut Vec::new()).map(Some);
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
    let (payload, mut got) = match rx.received(received, arrived)? {
        Record::Eof => return Ok(None),
        Record::Message(payload, got) => (payload, got),
        Record::MaybeLarge(mut got) if got.last().is_some_and(memfd::is_sealed) => {
            let sealed = got.pop().expect("checked above");
            let payload = memfd::read(sealed, rx.max())?;
            rx.deliver(Payload::Own(payload), got)?
        }
        Record::MaybeLarge(got) => rx.deliver(Payload::Lent(0..0), got)?,
    };
    let taken = take(payload, rx.lent(), &mut got);
    if !got.is_empty() {
        fds.extend(got);
    }
    taken.map(Some)
}

/// Whether an error of a receive ends a stream of messages: the channel is unusable, or
/// the stream ended inside a message, or the kernel failed.
pub(crate) fn ends_messages(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Unusable | ErrorKind::UnexpectedEof | ErrorKind::Io
    )
}

fn decode<Rx: Receive>(
    payload: Payload,
    buffer: &[u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<Rx::Value, Error> {
    match payload {
        Payload::Lent(range) => Rx::receive_with_fds(&buffer[range], fds),
        Payload::Own(payload) => Rx::receive_owned_with_fds(payload, fds),
    }
}

fn recv_how(nonblocking: bool) -> Recv {
    Recv {
        nonblocking,
        record_len: false,
    }
}
