//! [`Message`]: what a [`Channel`](crate::Channel) carries, and how it becomes a frame.

use crate::error::{Error, ErrorKind};

/// A value that travels as one frame.
///
/// Implemented for raw bytes (`Vec<u8>`), UTF-8 text (`String`), and, with the `serde`
/// feature, for `Json<T>` and `Postcard<T>` of any serde type. Implement it for a
/// format of your own:
///
/// ```
/// use sockpair::{pair, Channel, Error, ErrorKind, Message, Type};
///
/// /// A counter, sent as 8 bytes big-endian.
/// #[derive(Debug, PartialEq)]
/// struct Count(u64);
///
/// impl Message for Count {
///     fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
///         scratch.extend_from_slice(&self.0.to_be_bytes());
///         Ok(scratch)
///     }
///
///     fn decode(payload: Vec<u8>) -> Result<Self, Error> {
///         Self::decode_lent(&payload)
///     }
///
///     // Small messages are lent from the channel's buffer: parsing them from the
///     // slice saves allocating a `Vec` for each.
///     fn decode_lent(payload: &[u8]) -> Result<Self, Error> {
///         let bytes = payload
///             .try_into()
///             .map_err(|_| Error::new(ErrorKind::Decode, "a count is 8 bytes"))?;
///         Ok(Count(u64::from_be_bytes(bytes)))
///     }
/// }
///
/// let (a, b) = pair(Type::STREAM)?;
/// let (mut a, mut b): (Channel<Count>, Channel<Count>) = (Channel::new(a)?, Channel::new(b)?);
/// a.send(&Count(7))?;
/// assert_eq!(b.recv()?, Some(Count(7)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Message: Sized {
    /// The frame's payload for `self`: borrowed from `self` when it already is bytes,
    /// else written into `scratch` (which is empty, and reused between messages).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if `self` cannot be encoded.
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error>;

    /// The value carried by a frame's payload (owned, so bytes can be kept without a copy).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] if the payload is not a valid encoding.
    fn decode(payload: Vec<u8>) -> Result<Self, Error>;

    /// The value carried by a payload lent from the channel's receive buffer, as small
    /// messages are. The default copies it into a `Vec` for [`decode`](Message::decode);
    /// a format that parses from a slice overrides it and saves that allocation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] if the payload is not a valid encoding.
    fn decode_lent(payload: &[u8]) -> Result<Self, Error> {
        Self::decode(payload.to_vec())
    }
}

impl Message for Vec<u8> {
    fn encode<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self)
    }

    fn decode(payload: Vec<u8>) -> Result<Self, Error> {
        Ok(payload)
    }
}

impl Message for String {
    fn encode<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self.as_bytes())
    }

    fn decode(payload: Vec<u8>) -> Result<Self, Error> {
        String::from_utf8(payload)
            .map_err(|err| Error::with_source(ErrorKind::Decode, "the frame is not UTF-8", err))
    }
}

/// A serde value encoded as compact JSON (`serde_json`): the format of Node's IPC
/// channel, and readable by anything. Never contains a newline, so it also travels as a
/// line.
#[cfg(feature = "serde")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Json<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Message for Json<T> {
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        serde_json::to_writer(&mut *scratch, &self.0)
            .map_err(|err| Error::with_source(ErrorKind::Encode, "JSON encoding failed", err))?;
        Ok(scratch)
    }

    fn decode(payload: Vec<u8>) -> Result<Self, Error> {
        Self::decode_lent(&payload)
    }

    fn decode_lent(payload: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(payload).map(Json).map_err(|err| {
            Error::with_source(
                ErrorKind::Decode,
                "the frame is not valid JSON for this type",
                err,
            )
        })
    }
}

/// A serde value encoded with `postcard`: compact and fast, for Rust on both ends.
#[cfg(feature = "serde")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Postcard<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Message for Postcard<T> {
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        let encoded = postcard::to_extend(&self.0, std::mem::take(scratch)).map_err(|err| {
            Error::with_source(ErrorKind::Encode, "postcard encoding failed", err)
        })?;
        *scratch = encoded;
        Ok(scratch)
    }

    fn decode(payload: Vec<u8>) -> Result<Self, Error> {
        Self::decode_lent(&payload)
    }

    fn decode_lent(payload: &[u8]) -> Result<Self, Error> {
        postcard::from_bytes(payload).map(Postcard).map_err(|err| {
            Error::with_source(
                ErrorKind::Decode,
                "the frame is not valid postcard for this type",
                err,
            )
        })
    }
}
