//! [`Message`]: what a [`Channel`](crate::Channel) carries, and how it becomes a frame.

use crate::error::{Error, ErrorKind};

/// A value that travels as one frame.
///
/// Implemented for raw bytes (`Vec<u8>`), UTF-8 text (`String`), and, with the `serde`
/// feature, for `Json<T>` and `Postcard<T>` of any serde type. Implement it for a
/// format of your own.
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
        serde_json::from_slice(&payload).map(Json).map_err(|err| {
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
        postcard::from_bytes(&payload).map(Postcard).map_err(|err| {
            Error::with_source(
                ErrorKind::Decode,
                "the frame is not valid postcard for this type",
                err,
            )
        })
    }
}
