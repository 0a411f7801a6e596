//! [`Decoder`]: cutting whole frames out of the bytes fed to it (see `read.rs` for the
//! feeding), in its buffer, or a large payload in a buffer of its own ([`Partial`]).

use std::collections::VecDeque;

use super::{
    ASSEMBLE_IN_BUFFER, DEFAULT_MAX_FRAME_LEN, Frame, Framing, Payload, READ_BUFFER, grow, length,
    lines, out_of_memory, too_large, unusable,
};
use crate::error::{Error, ErrorKind};

/// How many handed-back payload buffers a decoder keeps.
const SPARE_BUFFERS: usize = 32;

/// A large payload being read into its own buffer, which grows as its bytes arrive (to
/// at most `total`, so it ends at its exact size).
#[derive(Debug)]
pub(super) struct Partial {
    /// The bytes received so far are `payload[..received]`; `payload.len()` may run
    /// ahead of them while a read into zeroed space is pending (see `Decoder::spare`).
    pub(super) payload: Vec<u8>,
    pub(super) received: usize,
    pub(super) total: usize,
    /// Stream offset of the payload's first byte.
    pub(super) payload_offset: u64,
    pub(super) frame_offset: u64,
}

impl Partial {
    /// Zeroed space for a `Read`, a chunk at a time (`filled` trims what stays unread);
    /// `Decoder::targets` avoids the zeroing where the reader allows.
    pub(super) fn spare(&mut self) -> Result<&mut [u8], Error> {
        grow(&mut self.payload, self.total)?;
        let room = self.payload.capacity() - self.received;
        let chunk = (self.total - self.received).min(room).min(1 << 20);
        self.payload.resize(self.received + chunk, 0);
        Ok(&mut self.payload[self.received..])
    }
}

/// The buffers of one predicted frame: its 4-byte header, and its payload's own
/// buffer, which becomes the message.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) head: Vec<u8>,
    pub(super) payload: Vec<u8>,
}

/// The incremental decoder for [`Framing::Length`] and [`Framing::Lines`]: fed with
/// bytes through [`spare`](Decoder::spare)/[`filled`](Decoder::filled), it hands out
/// whole frames.
#[derive(Debug)]
pub(crate) struct Decoder {
    pub(super) framing: Framing,
    pub(super) max: usize,
    pub(super) buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    pub(super) start: usize,
    pub(super) end: usize,
    /// Stream offset of `buf[start]`.
    pub(super) consumed: u64,
    /// How many bytes from `start` on are known to hold no newline (lines only), so
    /// that a long line is searched once, not again with every read.
    pub(super) scanned: usize,
    pub(super) partial: Option<Partial>,
    /// Whether the last frame was large (read into a buffer of its own).
    pub(super) last_large: bool,
    /// The payload length of the last frame, and the length the next ones are expected
    /// to have (0: none).
    pub(super) last_len: usize,
    pub(super) predicted: usize,
    /// The buffers of predicted frames (kept from read to read), how many of them the
    /// pending read fills (0: it is not predicted), and how much it may put in the
    /// buffer after them (or, into a large payload's own buffer, at all).
    pub(super) slots: Vec<Slot>,
    pub(super) predicting: usize,
    pub(super) rest: usize,
    /// How many frames the next predicted read expects: as many as the last one
    /// brought, or twice as many if it brought all it expected (a round trip's one
    /// frame per read thus readies one or two, not always two).
    pub(super) batch: usize,
    /// Frames that a predicted read brought whole, to hand out first.
    pub(super) ready: VecDeque<Frame>,
    pub(super) broken: bool,
    /// Payload buffers handed back by the caller (`recv_into`), for the next predicted
    /// frames: a steady stream of them allocates nothing.
    pub(super) spare: Vec<Vec<u8>>,
}

impl Decoder {
    pub(crate) fn new(framing: Framing) -> Decoder {
        Decoder {
            framing,
            max: DEFAULT_MAX_FRAME_LEN,
            buf: Vec::new(),
            start: 0,
            end: 0,
            consumed: 0,
            scanned: 0,
            partial: None,
            last_large: false,
            last_len: 0,
            predicted: 0,
            slots: Vec::new(),
            predicting: 0,
            rest: 0,
            batch: 1,
            ready: VecDeque::new(),
            broken: false,
            spare: Vec::new(),
        }
    }

    /// Takes back a payload buffer the caller is done with, for a frame to come.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && self.spare.len() < SPARE_BUFFERS {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// The framing decoded.
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The next whole frame from what has been fed, `Ok(None)` if more bytes are needed.
    #[inline]
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.start == self.end && self.partial.is_none() && self.ready.is_empty() && !self.broken
        {
            return Ok(None); // nothing buffered: the common case before a read
        }
        self.next_buffered_frame()
    }

    fn next_buffered_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.broken {
            return Err(unusable());
        }
        let result = self.cut();
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn cut(&mut self) -> Result<Option<Frame>, Error> {
        if let Some(frame) = self.ready.pop_front() {
            return Ok(Some(frame));
        }
        if let Some(partial) = &self.partial {
            if partial.received < partial.total {
                return Ok(None);
            }
            let mut partial = self.partial.take().expect("checked above");
            partial.payload.truncate(partial.total);
            self.last_large = true;
            self.expect_after(partial.total);
            self.consumed = partial.payload_offset + partial.total as u64;
            return Ok(Some(Frame {
                payload: Payload::Own(partial.payload),
                offset: partial.frame_offset,
                end: self.consumed,
            }));
        }
        let unread = &self.buf[self.start..self.end];
        let (skip, len, after) = match self.framing {
            Framing::Lines => match lines::memchr(&unread[self.scanned..]) {
                Some(at) if self.scanned + at > self.max => {
                    return Err(too_large((self.scanned + at) as u64, self.max, "line"));
                }
                Some(at) => (0, self.scanned + at, 1),
                None if unread.len() > self.max => {
                    return Err(too_large(unread.len() as u64, self.max, "line"));
                }
                None => {
                    self.scanned = unread.len();
                    return Ok(None);
                }
            },
            Framing::Length => match length::decode_header(unread)? {
                None => return Ok(None),
                Some((_, len)) if len > self.max as u64 => {
                    return Err(too_large(len, self.max, "frame"));
                }
                Some((header, len)) => {
                    let len = len as usize;
                    if unread.len() - header < len && len > ASSEMBLE_IN_BUFFER {
                        self.start_partial(header, len)?;
                        return Ok(None);
                    }
                    (header, len, 0)
                }
            },
        };
        if unread.len() < skip + len + after {
            return Ok(None);
        }
        let used = skip + len + after;
        let payload = self.start + skip;
        let payload = match len > ASSEMBLE_IN_BUFFER && payload == 0 {
            // A long line fills the buffer from its start: hand the buffer out as the
            // payload, and keep what follows the line in a new one.
            true => {
                let rest = self.buf[used..self.end].to_vec();
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.truncate(len);
                self.end -= used;
                self.start = 0;
                self.consumed += used as u64;
                self.scanned = 0;
                return Ok(Some(Frame {
                    payload: Payload::Own(line),
                    offset: self.consumed - used as u64,
                    end: self.consumed,
                }));
            }
            false => Payload::Lent(payload..payload + len),
        };
        let frame = Frame {
            payload,
            offset: self.consumed,
            end: self.consumed + used as u64,
        };
        self.start += used;
        self.consumed += used as u64;
        self.scanned = 0;
        self.last_large = false;
        if self.framing == Framing::Length {
            self.expect_after(len);
        }
        Ok(Some(frame))
    }

    /// Moves the buffered start of a large payload into a buffer of its own.
    fn start_partial(&mut self, header: usize, len: usize) -> Result<(), Error> {
        // A buffer the caller handed back that holds it whole, if there is one: no
        // memory is spent on it (and no page is faulted in) as the bytes arrive.
        let mut payload = match self.spare.iter().position(|buf| buf.capacity() >= len) {
            Some(at) => self.spare.swap_remove(at),
            None => Vec::new(),
        };
        let begun = &self.buf[self.start + header..self.end];
        grow(&mut payload, len)?;
        payload.extend_from_slice(begun);
        self.partial = Some(Partial {
            received: begun.len(),
            total: len,
            payload,
            payload_offset: self.consumed + header as u64,
            frame_offset: self.consumed,
        });
        self.consumed += (self.end - self.start) as u64;
        self.start = self.end;
        Ok(())
    }

    /// Makes room in the buffer for at least one more byte, keeping its length at the
    /// bytes received.
    #[inline]
    pub(super) fn make_room(&mut self) -> Result<(), Error> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        self.buf.truncate(self.end);
        if self.end < self.buf.capacity() {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.end -= self.start;
            self.start = 0;
            if self.end < self.buf.capacity() {
                return Ok(());
            }
        }
        // Full of one unfinished frame (or empty): grow. A length frame assembled here has
        // at most ASSEMBLE_IN_BUFFER bytes of payload (larger ones get their own buffer),
        // and reads after a large one are short (READ_AFTER_LARGE), so a large payload is
        // mostly read straight into its own buffer; a line has at most max + 1 bytes.
        let most = match self.framing {
            Framing::Lines => READ_BUFFER.max(self.max.saturating_add(length::MAX_HEADER + 1)),
            Framing::Length => READ_BUFFER,
        };
        let grown = (self.end * 2).clamp(READ_BUFFER, most).max(self.end + 1);
        self.buf
            .try_reserve_exact(grown - self.end)
            .map_err(|_| out_of_memory(grown))
    }

    /// The buffer that [`Payload::Lent`] ranges point into.
    pub(crate) fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// The stream ended: fine between frames, an error inside one.
    pub(crate) fn eof(&mut self) -> Result<(), Error> {
        // The bytes of the unfinished frame that did arrive, its header included.
        let inside = match &self.partial {
            Some(partial) => {
                partial.payload_offset - partial.frame_offset + partial.received as u64
            }
            None => (self.end - self.start) as u64,
        };
        if inside == 0 {
            return Ok(());
        }
        self.broken = true;
        // What the frame claimed, where its header arrived whole.
        let claimed = match (&self.partial, self.framing) {
            (Some(partial), _) => {
                Some((partial.payload_offset - partial.frame_offset, partial.total))
            }
            (None, Framing::Length) => length::decode_header(&self.buf[self.start..self.end])
                .ok()
                .flatten()
                .map(|(header, len)| (header as u64, len as usize)),
            (None, Framing::Lines) => None,
        };
        let message = match claimed {
            Some((header, total)) => format!(
                "the stream ended inside a frame: {} of its {total} payload bytes came \
                 ({inside} bytes with its header)",
                inside - header
            ),
            None if self.framing == Framing::Lines => {
                format!("the stream ended inside a line: {inside} bytes without a newline")
            }
            None => format!("the stream ended inside a frame header: {inside} of its bytes came"),
        };
        Err(Error::new(ErrorKind::UnexpectedEof, message))
    }
}
