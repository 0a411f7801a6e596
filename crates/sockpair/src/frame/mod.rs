//! Framing: cutting a byte stream into messages, without system calls.
//!
//! [`Framing::Length`] is `[u32 big-endian length][payload]` (Python's
//! `multiprocessing.connection`, with its escape for lengths above `i32::MAX`);
//! [`Framing::Lines`] is one payload per `\n`-terminated line (Node's `json` IPC).
//! [`FrameReader`] and [`write_frame`] apply them to any `Read`/`Write`;
//! [`Channel`](crate::Channel) uses the same decoder over a socket.
//!
//! A frame longer than the reader's `max_frame_len` is refused **before** anything is
//! allocated for it, and the reader is then unusable: after a bad length nothing in the
//! stream can be trusted to be a frame boundary. A frame within the limit is given
//! memory as its bytes arrive, never for what its header merely claims, and an
//! allocation that fails is an error, not an abort.

pub(crate) mod length;
pub(crate) mod lines;

use std::collections::VecDeque;
use std::io::{IoSlice, Read, Write};
use std::ops::Range;

use crate::error::{Error, ErrorKind};

/// The default largest frame a reader accepts: 64 MiB. Raise it with
/// [`FrameReader::max_frame_len`] or [`Channel::max_frame_len`](crate::Channel::max_frame_len).
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 << 20;

/// How messages are cut out of a byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Framing {
    /// `[u32 big-endian length][payload]`; lengths above `i32::MAX` as `ff ff ff ff` and a
    /// `u64` big-endian length. What Python's `Connection.send_bytes` writes.
    Length,
    /// One payload per line, ended by `\n`; a payload cannot contain `\n`. What Node's
    /// `json` IPC mode writes.
    Lines,
}

/// Payloads up to this size are assembled in the reader's buffer; larger ones are read
/// straight into a buffer of their own.
const ASSEMBLE_IN_BUFFER: usize = 16 * 1024;

/// The reader's buffer for length frames: many small frames per read.
const READ_BUFFER: usize = 64 * 1024;

/// After a large payload, the next read at a frame boundary takes at most this much, so
/// that a stream of large frames is read mostly straight into their own buffers.
const READ_AFTER_LARGE: usize = 4096;

/// The first allocation for a large payload: at most this much before its bytes come.
const FIRST_GROWTH: usize = 1 << 20;

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
pub(crate) const MOST_PREDICTED: usize = 16;

/// The buffers of one predicted frame: its 4-byte header, and its payload's own
/// buffer, which becomes the message.
#[derive(Debug, Default)]
struct Slot {
    head: Vec<u8>,
    payload: Vec<u8>,
}

/// A frame cut from the stream, with the stream offsets of its first byte and of the
/// byte after it (to match it with descriptors that arrived meanwhile).
#[derive(Debug)]
pub(crate) struct Frame {
    pub payload: Payload,
    pub offset: u64,
    pub end: u64,
}

/// Where a received payload is: lent from a receive buffer (no allocation for a small
/// message), or in a buffer of its own.
#[derive(Debug)]
pub(crate) enum Payload {
    /// These bytes of the receiver's buffer, until it next reads.
    Lent(Range<usize>),
    /// A large payload, read into a buffer of its exact size.
    Own(Vec<u8>),
}

impl Payload {
    /// The payload as a `Vec`, its bytes taken from `buffer` if lent.
    pub(crate) fn into_vec(self, buffer: &[u8]) -> Vec<u8> {
        match self {
            Payload::Lent(range) => buffer[range].to_vec(),
            Payload::Own(payload) => payload,
        }
    }
}

/// A large payload being read into its own buffer, which grows as its bytes arrive (to
/// at most `total`, so it ends at its exact size).
#[derive(Debug)]
struct Partial {
    /// The bytes received so far are `payload[..received]`; `payload.len()` may run
    /// ahead of them while a read into zeroed space is pending (see `Decoder::spare`).
    payload: Vec<u8>,
    received: usize,
    total: usize,
    /// Stream offset of the payload's first byte.
    payload_offset: u64,
    frame_offset: u64,
}

impl Partial {
    /// Zeroed space for a `Read`, a chunk at a time (`filled` trims what stays unread);
    /// `Decoder::targets` avoids the zeroing where the reader allows.
    fn spare(&mut self) -> Result<&mut [u8], Error> {
        grow(&mut self.payload, self.total)?;
        let room = self.payload.capacity() - self.received;
        let chunk = (self.total - self.received).min(room).min(1 << 20);
        self.payload.resize(self.received + chunk, 0);
        Ok(&mut self.payload[self.received..])
    }
}

/// The incremental decoder for [`Framing::Length`] and [`Framing::Lines`]: fed with
/// bytes through [`spare`](Decoder::spare)/[`filled`](Decoder::filled), it hands out
/// whole frames.
#[derive(Debug)]
pub(crate) struct Decoder {
    framing: Framing,
    max: usize,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    consumed: u64,
    /// How many bytes from `start` on are known to hold no newline (lines only), so
    /// that a long line is searched once, not again with every read.
    scanned: usize,
    partial: Option<Partial>,
    /// Whether the last frame was large (read into a buffer of its own).
    last_large: bool,
    /// The payload length of the last frame, and the length the next ones are expected
    /// to have (0: none).
    last_len: usize,
    predicted: usize,
    /// The buffers of predicted frames (kept from read to read), how many of them the
    /// pending read fills (0: it is not predicted), and how much it may put in the
    /// buffer after them (or, into a large payload's own buffer, at all).
    slots: Vec<Slot>,
    predicting: usize,
    rest: usize,
    /// How many frames the next predicted read expects: one more than the last one
    /// brought, or twice as many if it brought all it expected.
    batch: usize,
    /// Frames that a predicted read brought whole, to hand out first.
    ready: VecDeque<Frame>,
    broken: bool,
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
        let begun = &self.buf[self.start + header..self.end];
        let mut payload = Vec::new();
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
    fn expect_after(&mut self, len: usize) {
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
        let ok = self.slots[..count].iter_mut().all(|slot| {
            slot.head.clear();
            slot.payload.clear();
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
            false => whole + 1,
        };
        // What came after (in the buffer, or put back there) starts at `offset`.
        self.consumed = offset;
        self.start = at;
        self.end = self.buf.len();
    }

    /// Makes room in the buffer for at least one more byte, keeping its length at the
    /// bytes received.
    #[inline]
    fn make_room(&mut self) -> Result<(), Error> {
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

/// Makes room in `payload` for more of a frame of `total` bytes: doubling from
/// [`FIRST_GROWTH`], never past `total`, and only when it is full.
fn grow(payload: &mut Vec<u8>, total: usize) -> Result<(), Error> {
    if payload.capacity() > payload.len() || payload.len() >= total {
        return Ok(());
    }
    let target = (payload.len() * 2).max(FIRST_GROWTH).min(total);
    payload
        .try_reserve_exact(target - payload.len())
        .map_err(|_| out_of_memory(target))
}

fn out_of_memory(bytes: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!("no memory for a frame of {bytes} bytes"),
    )
}

fn too_large(len: u64, max: usize, what: &str) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!("a {what} of {len} bytes is over the limit of {max} (max_frame_len)"),
    )
}

pub(crate) fn unusable() -> Error {
    Error::new(
        ErrorKind::Unusable,
        "an earlier framing error left this stream at an unknown place; it is no longer read",
    )
}

/// The bytes that carry `payload` as one frame: header, payload, trailer.
pub(crate) fn frame_parts<'a>(
    framing: Framing,
    payload: &'a [u8],
    header: &'a mut [u8; length::MAX_HEADER],
) -> Result<[&'a [u8]; 3], Error> {
    match framing {
        Framing::Length => Ok([length::encode_header(payload.len(), header), payload, &[]]),
        Framing::Lines => {
            lines::check_line(payload)?;
            Ok([&[], payload, &[lines::NEWLINE]])
        }
    }
}

/// Writes `payload` as one frame to `writer` (gathering header and payload into as few
/// writes as the writer allows).
///
/// # Errors
///
/// [`ErrorKind::Encode`] for a line with a newline in it; otherwise the writer's error.
pub fn write_frame(writer: &mut impl Write, framing: Framing, payload: &[u8]) -> Result<(), Error> {
    let mut header = [0; length::MAX_HEADER];
    let parts = frame_parts(framing, payload, &mut header)?;
    let mut slices = parts.map(IoSlice::new);
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match writer.write_vectored(slices) {
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Reads frames from any `Read`.
///
/// # Examples
///
/// ```
/// use sockpair::frame::{write_frame, FrameReader, Framing};
///
/// let mut wire = Vec::new();
/// write_frame(&mut wire, Framing::Length, b"hello")?;
/// assert_eq!(wire, b"\0\0\0\x05hello");
///
/// let mut reader = FrameReader::new(&wire[..], Framing::Length);
/// assert_eq!(reader.read_frame()?, Some(b"hello".to_vec()));
/// assert_eq!(reader.read_frame()?, None); // a clean end between frames
/// # Ok::<(), sockpair::Error>(())
/// ```
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    decoder: Decoder,
}

impl<R: Read> FrameReader<R> {
    /// A reader of `framing` frames.
    pub fn new(reader: R, framing: Framing) -> FrameReader<R> {
        FrameReader {
            reader,
            decoder: Decoder::new(framing),
        }
    }

    /// The largest payload accepted (default [`DEFAULT_MAX_FRAME_LEN`]).
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.decoder.set_max(max);
        self
    }

    /// The next frame's payload; `Ok(None)` at a clean end of stream between frames.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnexpectedEof`] if the stream ends inside a frame,
    /// [`ErrorKind::TooLarge`] or [`ErrorKind::BadHeader`] for a frame that cannot be
    /// accepted (after which the reader is [`ErrorKind::Unusable`]), or the reader's error.
    pub fn read_frame(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame.payload.into_vec(self.decoder.buffer())));
            }
            match self.reader.read(self.decoder.spare()?) {
                Ok(0) => return self.decoder.eof().map(|()| None),
                Ok(n) => self.decoder.filled(n),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `Read` that hands out `data` in chunks of the given sizes (cycled), as a socket
    /// might.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let size = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let n = size.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn reader(
        data: Vec<u8>,
        sizes: Vec<usize>,
        framing: Framing,
        max: usize,
    ) -> FrameReader<Chunked> {
        let mut reader = FrameReader::new(
            Chunked {
                data,
                at: 0,
                sizes,
                turn: 0,
            },
            framing,
        );
        reader.max_frame_len(max);
        reader
    }

    fn encode(framing: Framing, payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for payload in payloads {
            write_frame(&mut wire, framing, payload).unwrap();
        }
        wire
    }

    /// Feeds `wire[*at..]` through the decoder's read targets as the kernel fills them
    /// (in order, each up to its limit and its spare capacity, never growing it), at
    /// most `chunk` bytes, as if that much had arrived; returns the payload buffers'
    /// addresses handed to this read.
    fn kernel_read(decoder: &mut Decoder, wire: &[u8], at: &mut usize, chunk: usize) -> Vec<usize> {
        decoder.prepare_read().unwrap();
        let mut taken = 0;
        let available = chunk.min(wire.len() - *at);
        let mut buffers = Vec::new();
        for (vec, most) in decoder.targets() {
            buffers.push(vec.as_ptr() as usize);
            let n = most.min(vec.capacity() - vec.len()).min(available - taken);
            let capacity = vec.capacity();
            vec.extend_from_slice(&wire[*at + taken..*at + taken + n]);
            assert_eq!(vec.capacity(), capacity, "a read never grows a buffer");
            taken += n;
        }
        *at += taken;
        decoder.filled(taken);
        buffers
    }

    /// Every frame of `wire`, read `chunk` bytes at a time through the read targets,
    /// with its stream offsets.
    fn decode_by_targets(wire: &[u8], chunks: &[usize]) -> Result<Vec<(Vec<u8>, u64, u64)>, Error> {
        let mut decoder = Decoder::new(Framing::Length);
        let (mut at, mut turn, mut frames) = (0, 0, Vec::new());
        loop {
            while let Some(frame) = decoder.next_frame()? {
                let (offset, end) = (frame.offset, frame.end);
                frames.push((frame.payload.into_vec(decoder.buffer()), offset, end));
            }
            if at == wire.len() {
                decoder.eof()?;
                return Ok(frames);
            }
            let chunk = chunks[turn % chunks.len()].max(1);
            turn += 1;
            kernel_read(&mut decoder, wire, &mut at, chunk);
        }
    }

    /// Each payload with the stream offsets of its frame.
    fn expected_frames(payloads: &[Vec<u8>]) -> Vec<(Vec<u8>, u64, u64)> {
        let mut offset = 0;
        payloads
            .iter()
            .map(|payload| {
                let end =
                    offset + encode(Framing::Length, std::slice::from_ref(payload)).len() as u64;
                let frame = (payload.clone(), offset, end);
                offset = end;
                frame
            })
            .collect()
    }

    #[test]
    fn frames_as_long_as_the_last_two_are_read_into_their_own_buffers() {
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 4096]).collect();
        let wire = encode(Framing::Length, &payloads);
        let mut decoder = Decoder::new(Framing::Length);
        let mut at = 0;
        let mut seen = 0;
        let mut direct = 0;
        while seen < payloads.len() {
            let buffers = kernel_read(&mut decoder, &wire, &mut at, 3 * 4100);
            while let Some(frame) = decoder.next_frame().unwrap() {
                assert_eq!(
                    (frame.offset, frame.end),
                    (seen as u64 * 4100, (seen as u64 + 1) * 4100)
                );
                if let Payload::Own(payload) = &frame.payload {
                    assert!(
                        buffers.contains(&(payload.as_ptr() as usize)),
                        "the buffer read into"
                    );
                    direct += 1;
                }
                assert!(frame.payload.into_vec(decoder.buffer()) == payloads[seen]);
                seen += 1;
            }
        }
        // The first two teach the length; after that, only the reads' first frames
        // until the batch grows to take all three that arrive at once.
        assert!(
            direct >= 34,
            "{direct} of 40 frames read straight into their buffers"
        );
        assert!(decoder.slots.len() <= MOST_PREDICTED);
    }

    #[test]
    fn a_frame_other_than_predicted_is_cut_from_the_bytes_put_back_in_order() {
        // Two to teach 600 bytes, then: shorter, longer, a 12-byte header's escape
        // cannot be one, an empty one, and the predicted length again.
        let mut payloads = vec![vec![1; 600], vec![2; 600], vec![3; 100], vec![4; 5000]];
        payloads.extend([
            vec![],
            vec![5; 600],
            vec![6; 600],
            vec![7; 600],
            vec![8; 599],
        ]);
        let wire = encode(Framing::Length, &payloads);
        for chunk in [1, 3, 4, 5, 603, 604, 605, 1000, 1208, 1209, 100_000] {
            let frames = decode_by_targets(&wire, &[chunk]).unwrap();
            assert!(frames == expected_frames(&payloads), "chunk {chunk}");
        }
    }

    #[test]
    fn a_predicted_length_over_a_lowered_limit_is_refused() {
        let payloads = vec![vec![1; 1000]; 4];
        let wire = encode(Framing::Length, &payloads);
        let mut decoder = Decoder::new(Framing::Length);
        let mut at = 0;
        kernel_read(&mut decoder, &wire, &mut at, 2008);
        assert!(decoder.next_frame().unwrap().is_some());
        assert!(decoder.next_frame().unwrap().is_some());
        decoder.set_max(999);
        kernel_read(&mut decoder, &wire, &mut at, 10_000);
        let err = decoder.next_frame().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(
            decoder.next_frame().unwrap_err().kind(),
            ErrorKind::Unusable
        );
    }

    #[test]
    fn a_stream_ending_inside_a_predicted_frame_is_unexpected_eof_with_its_bytes() {
        let payloads = vec![vec![1; 1000]; 3];
        let wire = encode(Framing::Length, &payloads);
        let cut = &wire[..2008 + 4 + 10];
        let err = decode_by_targets(cut, &[1004]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert!(
            err.to_string()
                .contains("10 of its 1000 payload bytes came (14 bytes with its header)"),
            "{err}"
        );
    }

    fn framings() -> impl Strategy<Value = Framing> {
        prop_oneof![Just(Framing::Length), Just(Framing::Lines)]
    }

    /// Payloads a framing can carry (no newline in a line).
    fn payloads(framing: Framing) -> impl Strategy<Value = Vec<Vec<u8>>> {
        let byte = if framing == Framing::Lines {
            (0u8..=255)
                .prop_filter("no newline", |b| *b != b'\n')
                .boxed()
        } else {
            any::<u8>().boxed()
        };
        prop::collection::vec(prop::collection::vec(byte, 0..3000), 0..8)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            framing in framings(),
            data in prop::collection::vec(any::<u8>(), 0..4096),
            sizes in prop::collection::vec(1usize..64, 1..8),
            max in 0usize..2048,
        ) {
            let mut reader = reader(data, sizes, framing, max);
            for _ in 0..10_000 {
                match reader.read_frame() {
                    Ok(Some(frame)) => prop_assert!(frame.len() <= max),
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn frames_come_back_whole_however_the_stream_is_cut(
            (framing, sent) in framings().prop_flat_map(|f| (Just(f), payloads(f))),
            sizes in prop::collection::vec(1usize..5000, 1..8),
        ) {
            let mut reader = reader(encode(framing, &sent), sizes, framing, DEFAULT_MAX_FRAME_LEN);
            for payload in &sent {
                let frame = reader.read_frame().unwrap();
                prop_assert_eq!(frame.as_ref(), Some(payload));
            }
            prop_assert_eq!(reader.read_frame().unwrap(), None);
        }

        #[test]
        fn a_stream_cut_inside_a_frame_is_unexpected_eof(
            (framing, sent) in framings().prop_flat_map(|f| (Just(f), payloads(f))),
            cut in any::<prop::sample::Index>(),
            sizes in prop::collection::vec(1usize..5000, 1..8),
        ) {
            let wire = encode(framing, &sent);
            prop_assume!(!wire.is_empty());
            let cut = cut.index(wire.len());
            // Frame boundaries are where a whole number of frames ends.
            let mut boundaries = vec![0];
            for payload in &sent {
                boundaries.push(boundaries.last().unwrap() + encode(framing, std::slice::from_ref(payload)).len());
            }
            prop_assume!(!boundaries.contains(&cut));
            let mut reader = reader(wire[..cut].to_vec(), sizes, framing, DEFAULT_MAX_FRAME_LEN);
            let err = loop {
                match reader.read_frame() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("a clean end at {cut}, inside a frame"),
                    Err(err) => break err,
                }
            };
            prop_assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        }

        #[test]
        fn a_frame_over_the_limit_is_refused_and_the_reader_stops(
            framing in framings(),
            max in 0usize..1000,
            extra in 1usize..1000,
            sizes in prop::collection::vec(1usize..64, 1..8),
        ) {
            let wire = encode(framing, &[vec![b'x'; max + extra], b"after".to_vec()]);
            let mut reader = reader(wire, sizes, framing, max);
            prop_assert_eq!(reader.read_frame().unwrap_err().kind(), ErrorKind::TooLarge);
            prop_assert_eq!(reader.read_frame().unwrap_err().kind(), ErrorKind::Unusable);
        }

        #[test]
        fn frames_come_back_whole_through_predicted_reads(
            shapes in prop::collection::vec((prop::sample::select(vec![0usize, 1, 511, 512, 600, 4096, 20_000]), any::<u8>()), 0..40),
            chunks in prop::collection::vec(1usize..30_000, 1..6),
        ) {
            let payloads: Vec<Vec<u8>> = shapes.iter().map(|&(len, byte)| vec![byte; len]).collect();
            let wire = encode(Framing::Length, &payloads);
            let frames = decode_by_targets(&wire, &chunks).unwrap();
            prop_assert!(frames == expected_frames(&payloads));
        }

        #[test]
        fn any_length_header_is_parsed_or_refused(header in prop::collection::vec(any::<u8>(), 0..16)) {
            match length::decode_header(&header) {
                Ok(Some((4, len))) => prop_assert!(len <= i32::MAX as u64),
                Ok(Some((12, _))) => prop_assert_eq!(&header[..4], &[0xff; 4]),
                Ok(Some(other)) => prop_assert!(false, "odd header length {:?}", other),
                Ok(None) => prop_assert!(header.len() < 12),
                Err(err) => prop_assert_eq!(err.kind(), ErrorKind::BadHeader),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn large_and_small_frames_mixed_come_back_whole(
            lens in prop::collection::vec(prop_oneof![0usize..100, 60_000usize..200_000], 1..6),
            sizes in prop::collection::vec(1usize..100_000, 1..6),
        ) {
            let sent: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &len)| vec![i as u8; len]).collect();
            let mut reader = reader(encode(Framing::Length, &sent), sizes, Framing::Length, DEFAULT_MAX_FRAME_LEN);
            for payload in &sent {
                let frame = reader.read_frame().unwrap();
                prop_assert!(frame.as_ref() == Some(payload));
            }
            prop_assert_eq!(reader.read_frame().unwrap(), None);
        }
    }

    #[test]
    fn a_long_line_is_searched_once_not_again_with_every_read() {
        let mut decoder = Decoder::new(Framing::Lines);
        decoder.set_max(10 << 20);
        let mut fed = 0;
        while fed < 4 << 20 {
            let spare = decoder.spare().unwrap();
            let n = spare.len().min(65536);
            spare[..n].fill(b'x');
            decoder.filled(n);
            fed += n;
            assert!(decoder.next_frame().unwrap().is_none());
            assert_eq!(
                decoder.scanned, fed,
                "what was searched is not searched again"
            );
        }
        let spare = decoder.spare().unwrap();
        spare[0] = b'\n';
        decoder.filled(1);
        let frame = decoder.next_frame().unwrap().unwrap();
        assert_eq!((frame.offset, frame.end), (0, fed as u64 + 1));
        assert_eq!(decoder.scanned, 0);
    }

    #[test]
    fn a_claimed_length_is_not_allocated_before_its_bytes_come() {
        let mut decoder = Decoder::new(Framing::Length);
        decoder.set_max(usize::MAX);
        let spare = decoder.spare().unwrap();
        spare[..4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]); // 2 GiB - 1
        decoder.filled(4);
        assert!(decoder.next_frame().unwrap().is_none());
        decoder.prepare_read().unwrap();
        let mut targets = decoder.targets();
        let (payload, left) = targets.next().unwrap();
        assert_eq!(left, i32::MAX as usize);
        assert!(payload.capacity() <= FIRST_GROWTH, "{}", payload.capacity());
    }

    #[test]
    fn a_large_frame_is_read_into_a_buffer_of_its_own_size() {
        let payload = vec![7; 1 << 20];
        let mut reader = reader(
            encode(Framing::Length, std::slice::from_ref(&payload)),
            vec![4096],
            Framing::Length,
            2 << 20,
        );
        let frame = reader.read_frame().unwrap().unwrap();
        assert!(frame == payload);
        assert_eq!(
            frame.capacity(),
            1 << 20,
            "no spare capacity: allocated once, at its size"
        );
    }
}
