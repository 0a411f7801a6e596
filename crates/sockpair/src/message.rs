//! What a [`Channel`](crate::Channel) carries: [`Encode`] turns a value into a frame's
//! payload, [`Decode`] a payload back into a value.

use crate::error::{Error, ErrorKind};

/// A value that can be sent as one frame's payload. It may be unsized: a
/// `Channel<Vec<u8>>` sends a `&[u8]` and a `Channel<String>` a `&str` without a copy.
///
/// Implemented for bytes (`[u8]`, `Vec<u8>`), UTF-8 text (`str`, `String`), and, with
/// the `serde` feature, for `Json<T>` and `Postcard<T>` of any serde type. Implement it
/// (and [`Decode`]) for a format of your own:
///
/// ```
/// use sockpair::{pair, Channel, Decode, Encode, Error, ErrorKind, Type};
///
/// /// A counter, sent as 8 bytes big-endian.
/// #[derive(Debug, PartialEq)]
/// struct Count(u64);
///
/// impl Encode for Count {
///     fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
///         scratch.extend_from_slice(&self.0.to_be_bytes());
///         Ok(scratch)
///     }
/// }
///
/// impl Decode for Count {
///     fn decode(payload: &[u8]) -> Result<Self, Error> {
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
pub trait Encode {
    /// The frame's payload for `self`: borrowed from `self` when it already is bytes,
    /// else written into `scratch` (which is empty, and reused between messages).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if `self` cannot be encoded.
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error>;
}

/// A value that can be received from one frame's payload.
pub trait Decode: Sized {
    /// The value carried by `payload`, which is lent from the channel's receive buffer
    /// for small messages (parse it from the slice: no allocation needed).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] if the payload is not a valid encoding.
    fn decode(payload: &[u8]) -> Result<Self, Error>;

    /// The value carried by a payload that is a buffer of its own (large messages): a
    /// format that can keep the bytes overrides it and saves a copy. The default
    /// decodes the slice.
    ///
    /// # Errors
    ///
    /// As [`decode`](Decode::decode).
    fn decode_owned(payload: Vec<u8>) -> Result<Self, Error> {
        Self::decode(&payload)
    }
}

/// What a `Channel<Tx>` sends: a `Tx` itself, or a borrowed form of it that encodes the
/// same, so that nothing is copied to send it: `[u8]` and `[u8; N]` for `Vec<u8>`, `str`
/// for `String`.
///
/// ```
/// use sockpair::{pair, Channel, Type};
///
/// let (a, _b) = pair(Type::STREAM)?;
/// let mut a: Channel<Vec<u8>> = Channel::new(a)?;
/// a.send(b"an array")?;
/// a.send(&b"a slice"[..])?;
/// a.send(&b"a vec".to_vec())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait EncodeAs<Tx>: Encode {}

impl<T: Encode> EncodeAs<T> for T {}

impl EncodeAs<Vec<u8>> for [u8] {}

impl<const N: usize> EncodeAs<Vec<u8>> for [u8; N] {}

impl EncodeAs<String> for str {}

/// Both sides: what a `Channel<T>` both sends and receives. Implemented for every type
/// that is [`Encode`] and [`Decode`].
pub trait Message: Encode + Decode {}

impl<T: Encode + Decode> Message for T {}

impl Encode for [u8] {
    fn encode<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self)
    }
}

impl<const N: usize> Encode for [u8; N] {
    fn encode<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self)
    }
}

impl Encode for Vec<u8> {
    fn encode<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self)
    }
}

impl Decode for Vec<u8> {
    fn decode(payload: &[u8]) -> Result<Self, Error> {
        Ok(payload.to_vec())
    }

    fn decode_owned(payload: Vec<u8>) -> Result<Self, Error> {
        Ok(payload)
    }
}

impl Encode for str {
    fn encode<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self.as_bytes())
    }
}

impl Encode for String {
    fn encode<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self.as_bytes())
    }
}

impl Decode for String {
    fn decode(payload: &[u8]) -> Result<Self, Error> {
        std::str::from_utf8(payload)
            .map(str::to_owned)
            .map_err(|err| Error::with_source(ErrorKind::Decode, "the frame is not UTF-8", err))
    }

    fn decode_owned(payload: Vec<u8>) -> Result<Self, Error> {
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
impl<T: serde::Serialize> Encode for Json<T> {
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        serde_json::to_writer(&mut *scratch, &self.0)
            .map_err(|err| Error::with_source(ErrorKind::Encode, "JSON encoding failed", err))?;
        Ok(scratch)
    }
}

#[cfg(feature = "serde")]
impl<T: serde::de::DeserializeOwned> Decode for Json<T> {
    fn decode(payload: &[u8]) -> Result<Self, Error> {
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
impl<T: serde::Serialize> Encode for Postcard<T> {
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        let encoded = postcard::to_extend(&self.0, std::mem::take(scratch)).map_err(|err| {
            Error::with_source(ErrorKind::Encode, "postcard encoding failed", err)
        })?;
        *scratch = encoded;
        Ok(scratch)
    }
}

#[cfg(feature = "serde")]
impl<T: serde::de::DeserializeOwned> Decode for Postcard<T> {
    fn decode(payload: &[u8]) -> Result<Self, Error> {
        postcard::from_bytes(payload).map(Postcard).map_err(|err| {
            Error::with_source(
                ErrorKind::Decode,
                "the frame is not valid postcard for this type",
                err,
            )
        })
    }
}
