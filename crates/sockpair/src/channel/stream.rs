//! The byte-stream transport, free of I/O: bytes and descriptors in, whole frames (each
//! with its descriptors) out; frames in, the bytes to write out.

use std::ops::Range;
use std::os::fd::OwnedFd;

use super::fd_queue::{FdQueue, Fds, Trouble};
use crate::error::{Error, ErrorKind};
use crate::frame::{Decoder, Frame, Framing, Payload, frame_parts, length};

/// A frame received whole, with its descriptors.
#[derive(Debug)]
pub(crate) struct Received {
    pub payload: Payload,
    pub fds: Vec<OwnedFd>,
}

/// The receiving side of a byte stream.
#[derive(Debug)]
pub(crate) struct StreamRx {
    decoder: Decoder,
    fds: FdQueue,
    accept: bool,
    /// A frame whose refused descriptors were reported first, delivered next.
    held: Option<Payload>,
}

impl StreamRx {
    pub(crate) fn new(framing: Framing, accept: bool) -> StreamRx {
        StreamRx {
            decoder: Decoder::new(framing),
            fds: FdQueue::default(),
            accept,
            held: None,
        }
    }

    pub(crate) fn framing(&self) -> Framing {
        self.decoder.framing()
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.decoder.set_max(max);
    }

    pub(crate) fn set_accept(&mut self, accept: bool) {
        self.accept = accept;
    }

    /// Whether descriptors that come are taken.
    pub(crate) fn accepts(&self) -> bool {
        self.accept
    }

    /// The next whole frame from what has arrived, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Fds`] for a frame whose descriptors were refused (the frame itself
    /// comes with the next call) or lost (the frame is dropped; the stream goes on after
    /// it); the decoder's errors, after which every call fails.
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<Received>, Error> {
        if let Some(payload) = self.held.take() {
            return Ok(Some(Received {
                payload,
                fds: Vec::new(),
            }));
        }
        let Some(Frame {
            payload,
            offset,
            end,
        }) = self.decoder.next_frame()?
        else {
            return Ok(None);
        };
        match self.fds.take(offset..end) {
            Ok(fds) => Ok(Some(Received { payload, fds })),
            Err(Trouble::Refused) => {
                self.held = Some(payload);
                Err(refused())
            }
            Err(Trouble::Lost) => Err(lost(offset..end)),
        }
    }

    /// Readies the buffers of the next read (see [`Decoder::prepare_read`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TooLarge`] if memory for a large frame cannot be had.
    #[inline]
    pub(crate) fn prepare_read(&mut self) -> Result<(), Error> {
        self.decoder.prepare_read()
    }

    /// The buffers readied, to read into in turn (see [`Decoder::targets`]).
    #[inline]
    pub(crate) fn targets(&mut self) -> impl Iterator<Item = (&mut Vec<u8>, usize)> {
        self.decoder.targets()
    }

    /// Notes a read into [`targets`](StreamRx::targets) of `n` bytes in all (more than 0)
    /// that brought `fds`, or whose descriptors were `lost`.
    #[inline]
    pub(crate) fn received(&mut self, n: usize, fds: Vec<OwnedFd>, lost: bool) {
        let read_end = self.decoder.read_offset() + n as u64;
        self.decoder.filled(n);
        if lost {
            self.fds.arrived(read_end, Fds::Lost);
        } else if !fds.is_empty() {
            match self.accept {
                true => self.fds.arrived(read_end, Fds::Here(fds)),
                false => self.fds.arrived(read_end, Fds::Refused), // `fds` closed here
            }
        }
    }

    /// The stream ended: fine between frames, an error inside one.
    pub(crate) fn eof(&mut self) -> Result<(), Error> {
        self.decoder.eof()?;
        if !self.fds.is_empty() {
            return Err(Error::new(
                ErrorKind::Fds,
                "descriptors arrived with no frame",
            ));
        }
        Ok(())
    }

    /// Takes back a payload buffer the caller is done with (see `Decoder::recycle`).
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        self.decoder.recycle(buf);
    }

    /// The buffer that [`Payload::Lent`] ranges point into.
    pub(crate) fn buffer(&self) -> &[u8] {
        self.decoder.buffer()
    }
}

/// Descriptors came to an end that does not accept them.
pub(crate) fn refused() -> Error {
    Error::new(
        ErrorKind::Fds,
        "descriptors came with a message, but this end does not accept them (accept_fds): \
         they were closed; the message comes next",
    )
}

fn lost(frame: Range<u64>) -> Error {
    Error::new(
        ErrorKind::Fds,
        format!(
            "the descriptors of the message at stream bytes {}..{} did not all arrive \
             (MSG_CTRUNC: out of descriptors?); they were closed and the message dropped",
            frame.start, frame.end
        ),
    )
}

/// Length frames with payloads up to this size are built on the stack.
pub(crate) const TINY: usize = 124;

/// The sending side of a byte stream: frames the payloads, and keeps what a write left
/// unsent, so that the next send (or a flush) completes that frame before any other.
#[derive(Debug)]
pub(crate) struct StreamTx {
    framing: Framing,
    /// The rest of a frame whose start went out (its descriptors with it):
    /// `unsent[unsent_sent..]` is what is left to write (an offset, not a drain, so that
    /// a large frame written in many parts is not moved again after each).
    unsent: Vec<u8>,
    unsent_sent: usize,
    /// Frames gathered for one write (batches, small frames).
    pub(crate) gather: Vec<u8>,
    /// Frames fed and not yet written: whole frames, in order, without descriptors;
    /// `queued[queued_sent..]` is what is left to write.
    queued: Vec<u8>,
    /// The end, in `queued`, of each frame in it.
    queued_ends: Vec<usize>,
    queued_sent: usize,
}

impl StreamTx {
    pub(crate) fn new(framing: Framing) -> StreamTx {
        StreamTx {
            framing,
            unsent: Vec::new(),
            unsent_sent: 0,
            gather: Vec::new(),
            queued: Vec::new(),
            queued_ends: Vec::new(),
            queued_sent: 0,
        }
    }

    /// Appends `payload`'s frame to the queue of frames to write with the next flush.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] for a line that holds a newline; nothing is queued then.
    pub(crate) fn queue(&mut self, payload: &[u8]) -> Result<(), Error> {
        let mut header = [0; length::MAX_HEADER];
        let parts = frame_parts(self.framing, payload, &mut header)?;
        for part in parts {
            self.queued.extend_from_slice(part);
        }
        self.queued_ends.push(self.queued.len());
        Ok(())
    }

    /// What is queued and not yet written.
    pub(crate) fn queued(&self) -> &[u8] {
        &self.queued[self.queued_sent..]
    }

    /// How many queued messages are not yet written whole.
    pub(crate) fn queued_messages(&self) -> usize {
        self.queued_ends
            .iter()
            .filter(|&&end| end > self.queued_sent)
            .count()
    }

    /// Notes that `n` more bytes of the queue went out; forgets it all once it has.
    pub(crate) fn sent_queued(&mut self, n: usize) {
        self.queued_sent += n;
        if self.queued_sent == self.queued.len() {
            self.queued.clear();
            self.queued_ends.clear();
            self.queued_sent = 0;
        }
    }

    /// Whether anything (a frame's rest, queued frames) waits to be written before
    /// anything else.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        !self.unsent.is_empty() || !self.queued.is_empty()
    }

    /// Header, payload and trailer of `payload`'s frame.
    pub(crate) fn parts<'a>(
        &self,
        payload: &'a [u8],
        header: &'a mut [u8; length::MAX_HEADER],
    ) -> Result<[&'a [u8]; 3], Error> {
        frame_parts(self.framing, payload, header)
    }

    /// A length frame for a payload of at most [`TINY`] bytes, in `frame`; returns its
    /// length, or `None` if this framing or payload does not fit.
    #[inline]
    pub(crate) fn tiny(&self, payload: &[u8], frame: &mut [u8; TINY + 4]) -> Option<usize> {
        if self.framing != Framing::Length || payload.len() > TINY {
            return None;
        }
        let len = payload.len() + 4;
        frame[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        frame[4..len].copy_from_slice(payload);
        Some(len)
    }

    /// What is left of a frame written in part: send this before anything else.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.unsent[self.unsent_sent..]
    }

    /// Notes that `n` more bytes of [`unsent`](StreamTx::unsent) went out; forgets the
    /// frame once all of it has.
    pub(crate) fn sent_unsent(&mut self, n: usize) {
        self.unsent_sent += n;
        if self.unsent_sent >= self.unsent.len() {
            self.unsent.clear();
            self.unsent_sent = 0;
        }
    }

    /// Keeps `rest`, the unsent end of a frame whose start went out.
    pub(crate) fn keep_unsent(&mut self, rest: &[&[u8]]) {
        for part in rest {
            self.unsent.extend_from_slice(part);
        }
    }
}
