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
//!
//! The decoder is in `decoder.rs` (cutting frames out of what was fed), how bytes are
//! fed to it in `read.rs` (a `Read`'s zeroed buffer, or a scattering `recvmsg` into
//! buffers readied ahead, predicted frames' payloads included), the format of each
//! framing in `length.rs` and `lines.rs`, and [`FrameReader`]/[`write_frame`] in
//! `io.rs`.

/// sockpair's wire format, for implementers in other languages.
#[doc = include_str!("wire_format.md")]
pub mod wire_format {}

mod decoder;
mod io;
pub(crate) mod length;
pub(crate) mod lines;
mod read;
#[cfg(test)]
mod tests;

use std::ops::Range;

use crate::error::{Error, ErrorKind};
pub(crate) use decoder::Decoder;
pub(crate) use io::frame_parts;
pub use io::{FrameReader, write_frame};

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
