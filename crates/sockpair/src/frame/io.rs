//! [`FrameReader`] and [`write_frame`]: the framing over any `Read`/`Write`.

use std::io::{IoSlice, Read, Write};

use super::{Decoder, Framing, length, lines};
use crate::error::Error;

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
/// [`ErrorKind::Encode`](crate::ErrorKind::Encode) for a line with a newline in it; otherwise the writer's error.
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

    /// The largest payload accepted (default [`DEFAULT_MAX_FRAME_LEN`](super::DEFAULT_MAX_FRAME_LEN)).
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.decoder.set_max(max);
        self
    }

    /// The next frame's payload; `Ok(None)` at a clean end of stream between frames.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnexpectedEof`](crate::ErrorKind::UnexpectedEof) if the stream ends inside a frame,
    /// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) or [`ErrorKind::BadHeader`](crate::ErrorKind::BadHeader) for a frame that cannot be
    /// accepted (after which the reader is [`ErrorKind::Unusable`](crate::ErrorKind::Unusable)), or the reader's error.
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
