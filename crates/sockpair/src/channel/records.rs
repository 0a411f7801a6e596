//! The record transport (seqpacket and datagram), free of I/O: one record is one
//! message. What a record means is decided here: the end of the stream, an empty
//! message, a message too large, a large message's memfd, or a message with
//! descriptors.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use crate::error::{Error, ErrorKind};
use crate::fds::Received;
use crate::frame::Payload;

use super::stream::refused;

/// The receive buffer's capacity: the largest record the kernel can deliver (about 4
/// MiB, a `kmalloc` limit, however large the sender's buffer) with room to spare, or
/// just over `max_frame_len` if that is less. Only what records fill is ever touched.
const MOST_RECORD: usize = 16 << 20;

/// Records up to this size are lent from the buffer; larger ones take the buffer with
/// them as their own, so that they are never copied.
const LEND_BELOW: usize = 64 << 10;

/// What one received record is.
#[derive(Debug)]
pub(crate) enum Record {
    /// The end of the stream (seqpacket).
    Eof,
    /// A message, with its descriptors.
    Message(Payload, Vec<OwnedFd>),
    /// An empty record with descriptors: a large message if the last is a sealed memfd
    /// (the receiver checks, then calls [`RecordRx::deliver`]), else an empty message
    /// with them.
    MaybeLarge(Vec<OwnedFd>),
}

/// The sending side of records: messages fed and not yet sent, one record each.
#[derive(Debug, Default)]
pub(crate) struct RecordTx {
    queued: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl RecordTx {
    /// Queues a copy of `payload`, to be sent as one record with the next flush.
    pub(crate) fn queue(&mut self, payload: &[u8]) {
        self.bytes += payload.len();
        self.queued.push_back(payload.to_vec());
    }

    /// The next queued message, if any.
    pub(crate) fn next_queued(&self) -> Option<&[u8]> {
        self.queued.front().map(Vec::as_slice)
    }

    /// Notes that the next queued message went out.
    pub(crate) fn sent_queued(&mut self) {
        if let Some(sent) = self.queued.pop_front() {
            self.bytes -= sent.len();
        }
    }

    /// How many messages are queued, and how many bytes they hold.
    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.queued.len(), self.bytes)
    }
}

/// The receiving side of records.
#[derive(Debug)]
pub(crate) struct RecordRx {
    /// Whether an empty read is the end of the stream when no control message came
    /// (seqpacket with `SO_TIMESTAMP`: every record carries one).
    seqpacket: bool,
    accept: bool,
    max: usize,
    buffer: Vec<u8>,
    /// A message whose refused descriptors were reported first, delivered next.
    held: Option<Payload>,
}

impl RecordRx {
    pub(crate) fn new(seqpacket: bool, accept: bool, max: usize) -> RecordRx {
        RecordRx {
            seqpacket,
            accept,
            max,
            buffer: Vec::new(),
            held: None,
        }
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn set_accept(&mut self, accept: bool) {
        self.accept = accept;
    }

    /// A message held back by [`received`](RecordRx::received), to deliver now.
    pub(crate) fn held(&mut self) -> Option<Payload> {
        self.held.take()
    }

    /// The buffer to receive the next record into (empty, with capacity for any record
    /// up to the limit; a request for memory that fails is an error).
    pub(crate) fn buffer(&mut self) -> Result<&mut Vec<u8>, Error> {
        self.buffer.clear();
        let want = self.max.min(MOST_RECORD).saturating_add(1);
        if self.buffer.capacity() < want {
            self.buffer = Vec::new();
            self.buffer.try_reserve_exact(want).map_err(|_| {
                Error::new(
                    ErrorKind::TooLarge,
                    format!("no memory for a receive buffer of {want} bytes"),
                )
            })?;
        }
        Ok(&mut self.buffer)
    }

    /// The bytes of [`Payload::Lent`] records.
    pub(crate) fn lent(&self) -> &[u8] {
        &self.buffer
    }

    /// What the record just received into [`buffer`](RecordRx::buffer) is.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TooLarge`] for a record over the limit (it is dropped; the next one
    /// comes next), [`ErrorKind::Fds`] for descriptors refused (the message comes with
    /// the next receive) or lost (the message too).
    pub(crate) fn received(
        &mut self,
        received: Received,
        fds: Vec<OwnedFd>,
    ) -> Result<Record, Error> {
        let Received {
            bytes,
            len,
            fds_lost,
            control_seen,
        } = received;
        if len > bytes || len > self.max {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "a record of {len} bytes is over the limit of {} (max_frame_len); it was dropped",
                    self.max
                ),
            ));
        }
        if bytes == 0 && self.seqpacket && !control_seen {
            return Ok(Record::Eof); // no record, no timestamp: the end of the stream
        }
        if fds_lost {
            return Err(Error::new(
                ErrorKind::Fds,
                "the descriptors of a record did not all arrive (MSG_CTRUNC: out of \
                 descriptors?); they were closed and the record dropped",
            ));
        }
        if bytes == 0 && !fds.is_empty() {
            return Ok(Record::MaybeLarge(fds));
        }
        let payload = match bytes < LEND_BELOW {
            true => Payload::Lent(0..bytes),
            false => Payload::Own(std::mem::take(&mut self.buffer)),
        };
        let (payload, fds) = self.deliver(payload, fds)?;
        Ok(Record::Message(payload, fds))
    }

    /// A message with descriptors, as this end's acceptance has it: with them, or
    /// refused first and delivered next without them.
    pub(crate) fn deliver(
        &mut self,
        payload: Payload,
        fds: Vec<OwnedFd>,
    ) -> Result<(Payload, Vec<OwnedFd>), Error> {
        if !fds.is_empty() && !self.accept {
            drop(fds);
            self.held = Some(match payload {
                Payload::Lent(range) => Payload::Own(self.buffer[range].to_vec()),
                own => own,
            });
            return Err(refused());
        }
        Ok((payload, fds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(bytes: usize, len: usize, control_seen: bool) -> Received {
        Received {
            bytes,
            len,
            fds_lost: false,
            control_seen,
        }
    }

    #[test]
    fn an_empty_record_is_a_message_and_no_record_is_the_end() {
        let mut rx = RecordRx::new(true, true, 100);
        rx.buffer().unwrap();
        assert!(matches!(
            rx.received(got(0, 0, true), Vec::new()).unwrap(),
            Record::Message(Payload::Lent(r), _) if r.is_empty()
        ));
        assert!(matches!(
            rx.received(got(0, 0, false), Vec::new()).unwrap(),
            Record::Eof
        ));
        // A datagram socket has no end: an empty datagram is a message.
        let mut rx = RecordRx::new(false, true, 100);
        rx.buffer().unwrap();
        assert!(matches!(
            rx.received(got(0, 0, false), Vec::new()).unwrap(),
            Record::Message(..)
        ));
    }

    #[test]
    fn a_record_over_the_limit_reports_its_real_size() {
        let mut rx = RecordRx::new(true, true, 100);
        let err = rx.received(got(101, 5000, true), Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert!(err.to_string().contains("5000"), "{err}");
        assert!(rx.received(got(100, 100, true), Vec::new()).is_ok());
    }

    #[test]
    fn the_buffer_covers_the_limit_and_follows_it() {
        let mut rx = RecordRx::new(true, true, 10);
        assert_eq!(rx.buffer().unwrap().capacity(), 11);
        rx.set_max(1 << 20);
        assert!(rx.buffer().unwrap().capacity() > 1 << 20);
        rx.set_max(usize::MAX);
        assert!(rx.buffer().unwrap().capacity() > MOST_RECORD);
    }
}
