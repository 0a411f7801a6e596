//! [`Error`]: what can go wrong above the system calls, in framing and messages.

use std::fmt;
use std::io;

/// What went wrong; see [`Error::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A system call failed; the error's `source()` is the `io::Error`.
    Io,
    /// A timeout set on the channel passed before the frame was complete; the message
    /// says which and how long it was.
    TimedOut,
    /// The socket is non-blocking and not ready: nothing of the message was taken, or,
    /// for a send, the rest of its frame goes out with the next send or flush.
    WouldBlock,
    /// A frame announced or reached more bytes than the channel's `max_frame_len`; it
    /// was refused before anything was allocated for it.
    TooLarge,
    /// A frame header that no sender of this format writes (a negative length).
    BadHeader,
    /// The stream ended inside a frame.
    UnexpectedEof,
    /// A message could not be encoded (e.g. a line that contains a newline).
    Encode,
    /// A frame could not be decoded into the message type (e.g. invalid UTF-8 or JSON).
    Decode,
    /// Descriptors arrived where no frame starts, or not all of them arrived.
    Fds,
    /// An earlier error left the channel in an unknown place in the stream: it no longer
    /// receives, rather than resynchronise on garbage.
    Unusable,
}

/// An error of the protocol layer ([`Channel`](crate::Channel), framing, messages).
///
/// System-call errors keep their `io::Error` as the [`source`](std::error::Error::source)
/// (and come back out unchanged through `From<Error> for io::Error`). `Display` shows the
/// message alone, so that error-chain printers (`{:#}` of anyhow, say) show each cause
/// once: "receive failed: Connection reset by peer (os error 104)".
#[derive(Debug)]
pub struct Error(Box<Inner>);

/// Boxed, so that `Result<T, Error>` stays small on the hot path.
#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// An error of `kind` that says `message`: what an [`Encode`](crate::Encode) or [`Decode`](crate::Decode) of
    /// your own returns when a value cannot be encoded or a payload decoded.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: None,
        }))
    }

    /// An error of `kind` that says `message`, caused by `source` (returned by
    /// [`source`](std::error::Error::source), and not repeated by `Display`).
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }))
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|source| source as _)
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        match err.kind() {
            io::ErrorKind::UnexpectedEof => Error::with_source(
                ErrorKind::UnexpectedEof,
                "end of stream inside a frame",
                err,
            ),
            io::ErrorKind::TimedOut => Error::with_source(ErrorKind::TimedOut, "timed out", err),
            io::ErrorKind::WouldBlock => Error::with_source(
                ErrorKind::WouldBlock,
                "the socket is non-blocking and not ready",
                err,
            ),
            _ => Error::with_source(ErrorKind::Io, "I/O error", err),
        }
    }
}

impl From<Error> for io::Error {
    /// An [`ErrorKind::Io`] error gives back the original `io::Error`; the others map to
    /// the nearest `io::ErrorKind` and keep the `Error` inside.
    fn from(err: Error) -> io::Error {
        let kind = match err.0.kind {
            ErrorKind::Io => {
                let inner = *err.0;
                return match inner.source.map(|source| source.downcast::<io::Error>()) {
                    Some(Ok(original)) => *original,
                    Some(Err(other)) => io::Error::other(other),
                    None => io::Error::other(inner.message),
                };
            }
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::WouldBlock => io::ErrorKind::WouldBlock,
            ErrorKind::UnexpectedEof => io::ErrorKind::UnexpectedEof,
            ErrorKind::Encode => io::ErrorKind::InvalidInput,
            ErrorKind::TooLarge
            | ErrorKind::BadHeader
            | ErrorKind::Decode
            | ErrorKind::Fds
            | ErrorKind::Unusable => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}
