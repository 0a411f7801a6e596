//! The one I/O driver of both shells: it runs the I/O-free cores (`stream.rs`,
//! `records.rs`) over a socket, sending and receiving whole messages. How each
//! operation drive is a [`Drive`]: the blocking [`Channel`](crate::Channel) blocks (in
//! `poll` until a deadline, if it has a timeout), the async shells try once and wait on
//! tokio's reactor when it says `WouldBlock`. Either way the same bytes go out and the
//! same frames come in, and what a failed operation left (part of a frame sent, part of
//! one received) stays in the core for the next one.

use std::io;
use std::time::{Duration, Instant};

mod receive;
mod send;

use super::records::{RecordRx, RecordTx};
use super::stream::{StreamRx, StreamTx};
use crate::error::{Error, ErrorKind};
use crate::frame::Framing;
use crate::socket::Socket;
use crate::wait::{Events, poll_until};
pub(crate) use receive::{ends_messages, receive, receive_with};
#[cfg(feature = "tokio")]
pub(crate) use send::{
    HIGH_WATER, QUEUE_BELOW, Writing, commit, has_pending, queue_message, queued_bytes,
    with_attached,
};
pub(crate) use send::{feed_message, flush_core, queued_messages, send_batch, send_message};

#[derive(Debug)]
pub(crate) enum TxCore {
    Stream(StreamTx),
    Records(RecordTx),
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
            // The socket's setting was read when the channel was made, and only this
            // changes it since: nothing to do when it is the one asked for.
            RxCore::Stream(rx) if rx.accepts() == accept => {}
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

    /// Takes back a payload buffer the caller is done with, for a message to come (on a
    /// stream; records read into one buffer anyway).
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        if let RxCore::Stream(rx) = self {
            rx.recycle(buf);
        }
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
        if self.timeout.1.is_some_and(|timeout| timeout.is_zero()) {
            // No time to wait (a zero timeout): one try that does not block, and no
            // `poll` before it (and no clock read).
            loop {
                match op(self.socket, true) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Err(self.timed_out());
                    }
                    other => return other,
                }
            }
        }
        loop {
            if poll_first && !poll_until(self.socket, events, self.deadline)? {
                return Err(self.timed_out());
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

impl Drive<'_> {
    /// The error of a deadline that passed, naming the timeout.
    fn timed_out(&self) -> io::Error {
        let (name, after) = self.timeout;
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{name} of {:?} passed", after.unwrap_or_default()),
        )
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
