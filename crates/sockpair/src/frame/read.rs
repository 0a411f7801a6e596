//! Feeding a [`Decoder`]: zeroed space for a `Read` ([`spare`](Decoder::spare), then
//! [`filled`](Decoder::filled)), or buffers readied for a scattering `recvmsg`
//! ([`prepare_read`](Decoder::prepare_read), [`targets`](Decoder::targets), then
//! `filled`), where frames of a length seen twice in a row are predicted: each one's
//! header and payload get buffers of their own, and the payload's becomes the message,
//! never copied.

use super::decoder::{Partial, Slot};
use super::{
    ASSEMBLE_IN_BUFFER, Decoder, Frame, Payload, READ_AFTER_LARGE, READ_BUFFER, grow, length,
};
use crate::error::Error;

/// Length frames from this size on are predicted: when two in a row are as long, the
/// next read expects more of that length, and puts each one's payload straight into a
/// buffer of its own (the message handed out), never copied. Below it a copy costs
/// less than the scattering read.
const PREDICT_FROM: usize = 512;

/// Length frames up to this size are predicted; a larger one may well be a one-off,
/// and is read into its own buffer anyway (see [`ASSEMBLE_IN_BUFFER`]).
const PREDICT_UP_TO: usize = 4 << 20;

/// The most frames one read expects (each a header and a payload buffer): enough to
/// fill [`READ_BUFFER`] with 4 KiB frames.
pub(super) const MOST_PREDICTED: usize = 16;

impl Decoder {
    /// Where the next bytes of the stream should be read to (never empty).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TooLarge`] if memory for a large frame cannot be had.
    pub(crate) fn spare(&mut self) -> Result<&mut [u8], Error> {
        // `if let` would keep `self.partial` borrowed on the other branch too (a limit of
        // today's borrow checker), hence the check and the `expect`.
        #[allow(clippy::unnecessary_unwrap)]
        if self.partial.is_some() {
            return self.partial.as_mut().expect("checked above").spare();
        }
        self.make_room()?;
        // Zeroed space for a `Read`, at most a chunk at a time (`filled` trims what stays
        // unread); `targets` avoids the zeroing where the reader allows.
        let chunk = (self.buf.capacity() - self.end).min(1 << 20);
        self.buf.resize(self.end + chunk, 0);
        Ok(&mut self.buf[self.end..])
    }

    /// What to expect after a length frame of `len` bytes: more as long, if the one
    /// before was as long too and the length is worth predicting.
    pub(super) fn expect_after(&mut self, len: usize) {
        let worth = (PREDICT_FROM..=PREDICT_UP_TO).contains(&len);
        self.predicted = match worth && len == self.last_len {
            true => len,
            false => 0,
        };
        self.last_len = len;
    }

    /// Readies the buffers of the next read, [`targets`](Decoder::targets): a large
    /// payload's own buffer; or, when nothing is buffered and frames of a known length
    /// are coming, the headers and payload buffers of as many as fit
    /// [`READ_BUFFER`] (at most [`MOST_PREDICTED`]), then the decoder's buffer; else the
    /// decoder's buffer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TooLarge`] if memory for a large frame or a long line cannot be had.
    #[inline]
    pub(crate) fn prepare_read(&mut self) -> Result<(), Error> {
        self.predicting = 0;
        if let Some(partial) = self.partial.as_mut() {
            partial.payload.truncate(partial.received);
            grow(&mut partial.payload, partial.total)?;
            self.rest = partial.total - partial.received;
            return Ok(());
        }
        self.make_room()?;
        let room = self.buf.capacity() - self.end;
        let nothing_buffered = self.start == self.end;
        if nothing_buffered && self.predicted > 0 {
            let most = (READ_BUFFER / (self.predicted + 4)).clamp(1, MOST_PREDICTED);
            let count = self.batch.min(most);
            if self.prepare_slots(count) {
                self.predicting = count;
                // A large frame is read alone, so that the next one starts a read too.
                self.rest = match self.predicted > ASSEMBLE_IN_BUFFER {
                    true => 0,
                    false => room,
                };
                return Ok(());
            }
        }
        self.rest = match self.last_large && nothing_buffered {
            true => room.min(READ_AFTER_LARGE),
            false => room,
        };
        Ok(())
    }

    /// Empties `count` slots and gives each room for a predicted frame; `false` (and
    /// no more prediction) if memory cannot be had.
    fn prepare_slots(&mut self, count: usize) -> bool {
        if self.slots.len() < count {
            self.slots.resize_with(count, Slot::default);
        }
        let len = self.predicted;
        let spare = &mut self.spare;
        let ok = self.slots[..count].iter_mut().all(|slot| {
            slot.head.clear();
            slot.payload.clear();
            if slot.payload.capacity() < len
                && let Some(at) = spare.iter().position(|buf| buf.capacity() >= len)
            {
                slot.payload = spare.swap_remove(at);
            }
            slot.head.try_reserve(4).is_ok() && slot.payload.try_reserve(len).is_ok()
        });
        if !ok {
            self.predicted = 0;
            self.slots = Vec::new();
        }
        ok
    }

    /// The buffers that [`prepare_read`](Decoder::prepare_read) readied, to fill in
    /// turn, each with the most bytes it takes, into its spare capacity (nothing is
    /// zeroed first); then [`filled`](Decoder::filled).
    #[inline]
    pub(crate) fn targets(&mut self) -> impl Iterator<Item = (&mut Vec<u8>, usize)> {
        let len = self.predicted;
        let (slots, last) = match &mut self.partial {
            Some(partial) => (&mut self.slots[..0], &mut partial.payload),
            None => (&mut self.slots[..self.predicting], &mut self.buf),
        };
        slots
            .iter_mut()
            .flat_map(move |slot| [(&mut slot.head, 4), (&mut slot.payload, len)])
            .chain(std::iter::once((last, self.rest)))
    }

    /// After a predicted read: each frame that came as expected is ready (the last one
    /// may be begun, a large payload in its own buffer); from the first that did not,
    /// the bytes are put back in order in the decoder's buffer, to be cut as any
    /// others, and prediction stops.
    fn filled_predicted(&mut self) {
        let count = std::mem::take(&mut self.predicting);
        let len = self.predicted;
        let at = self.end;
        let mut offset = self.consumed;
        for i in 0..count {
            let slot = &mut self.slots[i];
            if slot.head.is_empty() {
                break; // the read ended before this slot
            }
            let expected = len <= self.max
                && slot.head.len() == 4
                && matches!(length::decode_header(&slot.head), Ok(Some((4, got))) if got == len as u64);
            if !expected {
                let arrived = self.slots[i..count]
                    .iter_mut()
                    .flat_map(|slot| slot.head.drain(..).chain(slot.payload.drain(..)));
                self.buf.splice(at..at, arrived);
                self.predicted = 0;
                self.last_len = 0;
                if len > READ_BUFFER {
                    self.slots = Vec::new(); // a large buffer is not kept waiting
                }
                break;
            }
            slot.head.clear();
            let payload = std::mem::take(&mut slot.payload);
            let received = payload.len();
            let frame = offset;
            offset += 4 + received as u64;
            if received < len {
                self.partial = Some(Partial {
                    payload,
                    received,
                    total: len,
                    payload_offset: frame + 4,
                    frame_offset: frame,
                });
                break;
            }
            self.ready.push_back(Frame {
                payload: Payload::Own(payload),
                offset: frame,
                end: offset,
            });
        }
        let whole = self.ready.len();
        self.batch = match whole == count {
            true => count * 2,
            false => whole.max(1),
        };
        // What came after (in the buffer, or put back there) starts at `offset`.
        self.consumed = offset;
        self.start = at;
        self.end = self.buf.len();
    }

    /// Records that `n` bytes were read into [`spare`](Decoder::spare) or
    /// [`targets`](Decoder::targets).
    pub(crate) fn filled(&mut self, n: usize) {
        if self.predicting > 0 {
            return self.filled_predicted();
        }
        match &mut self.partial {
            Some(partial) => {
                partial.received += n;
                partial.payload.truncate(partial.received);
            }
            None => {
                self.end += n;
                self.buf.truncate(self.end);
            }
        }
    }

    /// The stream offset the next read lands at.
    pub(crate) fn read_offset(&self) -> u64 {
        match &self.partial {
            Some(partial) => partial.payload_offset + partial.received as u64,
            None => self.consumed + (self.end - self.start) as u64,
        }
    }
}
