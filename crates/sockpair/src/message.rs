//! What a [`Channel`](crate::Channel) carries: [`Encode`] turns a value into a frame's
//! payload, [`Decode`] a payload back into a value; [`EncodeAs`] and [`Receive`] say what
//! a `Channel<Tx, Rx>` takes and gives (`&T` and `T` for `Json<T>`).

use std::os::fd::{BorrowedFd, OwnedFd};

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

    /// A descriptor that travels with the message, after any the caller passes: the
    /// memfd of a [`Shared`](crate::shm::Shared). `None`, the default, for a message
    /// that is only bytes.
    fn attached_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
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
/// same, so that nothing is copied or wrapped to send it: `[u8]` and `[u8; N]` for
/// `Vec<u8>`, `str` for `String`, and with the `serde` feature a plain `T` for `Json<T>`
/// and `Postcard<T>`.
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
pub trait EncodeAs<Tx: ?Sized> {
    /// The frame's payload for `self`, as `Tx` would encode it: see [`Encode::encode`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if `self` cannot be encoded.
    fn encode_as<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error>;

    /// A descriptor that travels with the message: see [`Encode::attached_fd`].
    fn attached_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl<T: Encode + ?Sized> EncodeAs<T> for T {
    #[inline]
    fn encode_as<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        self.encode(scratch)
    }

    #[inline]
    fn attached_fd(&self) -> Option<BorrowedFd<'_>> {
        Encode::attached_fd(self)
    }
}

impl EncodeAs<Vec<u8>> for [u8] {
    #[inline]
    fn encode_as<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self)
    }
}

impl<const N: usize> EncodeAs<Vec<u8>> for [u8; N] {
    #[inline]
    fn encode_as<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self)
    }
}

impl EncodeAs<String> for str {
    #[inline]
    fn encode_as<'a>(&'a self, _: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        Ok(self.as_bytes())
    }
}

/// What a `Channel<_, Rx>` gives for each frame: [`Value`](Receive::Value) is `Rx`
/// itself for a [`Decode`] type (bytes, text, your own), and `T` for `Json<T>` and
/// `Postcard<T>`, so that nothing needs unwrapping. Implemented by sockpair for those;
/// implement [`Decode`] for a format of your own.
pub trait Receive {
    /// The value one frame carries.
    type Value;

    /// The value carried by `payload`, lent from the channel's receive buffer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] if the payload is not a valid encoding.
    fn receive(payload: &[u8]) -> Result<Self::Value, Error>;

    /// The value carried by a payload that is a buffer of its own (large messages).
    ///
    /// # Errors
    ///
    /// As [`receive`](Receive::receive).
    fn receive_owned(payload: Vec<u8>) -> Result<Self::Value, Error>;

    /// The value carried by `payload` and the descriptors that came with it (`fds`, in
    /// the order sent): a value made of a descriptor (a [`Shared`](crate::shm::Shared))
    /// takes its own out of `fds`; what is left goes to the caller (`recv_with_fds`),
    /// or is closed. The default leaves `fds` alone and calls
    /// [`receive`](Receive::receive).
    ///
    /// # Errors
    ///
    /// As [`receive`](Receive::receive).
    fn receive_with_fds(payload: &[u8], fds: &mut Vec<OwnedFd>) -> Result<Self::Value, Error> {
        let _ = fds;
        Self::receive(payload)
    }

    /// [`receive_with_fds`](Receive::receive_with_fds) for a payload that is a buffer of
    /// its own; the default calls [`receive_owned`](Receive::receive_owned).
    ///
    /// # Errors
    ///
    /// As [`receive`](Receive::receive).
    fn receive_owned_with_fds(
        payload: Vec<u8>,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Self::Value, Error> {
        let _ = fds;
        Self::receive_owned(payload)
    }
}

impl<T: Decode> Receive for T {
    type Value = T;

    #[inline]
    fn receive(payload: &[u8]) -> Result<T, Error> {
        T::decode(payload)
    }

    #[inline]
    fn receive_owned(payload: Vec<u8>) -> Result<T, Error> {
        T::decode_owned(payload)
    }
}

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
            .map_err(|err| Error::new(ErrorKind::Decode, format!("the frame is not UTF-8: {err}")))
    }

    fn decode_owned(payload: Vec<u8>) -> Result<Self, Error> {
        String::from_utf8(payload)
            .map_err(|err| Error::new(ErrorKind::Decode, format!("the frame is not UTF-8: {err}")))
    }
}

/// A serde value encoded as compact JSON (`serde_json`): the format of Node's IPC
/// channel, and readable by anything. Never contains a newline, so it also travels as a
/// line.
///
/// A `Channel<Json<T>>` sends a `&T` and receives a `T`: the wrapper names the format,
/// and is needed only where a value must be one (`Json(value)` is also sent as is).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sockpair::{pair, Channel, ErrorKind, Json, Type};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Request {
///     id: u32,
///     path: String,
/// }
///
/// let (a, b) = pair(Type::STREAM)?;
/// let mut a: Channel<Json<Request>> = Channel::new(a)?;
/// let mut b: Channel<Json<Request>> = Channel::new(b)?;
/// let request = Request { id: 7, path: "/etc/hosts".into() };
/// a.send(&request)?; // no clone, no wrapper
/// assert_eq!(b.recv()?, Some(request)); // a Request, no `.0`
///
/// // A frame that is not a Request says why, in serde's words.
/// let mut raw: Channel<Vec<u8>> = Channel::new(a.into_socket())?;
/// raw.send(br#"{"path":"/"}"#)?;
/// let err = b.recv().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Decode);
/// assert!(err.to_string().contains("missing field `id`"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "serde")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Json<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize> Encode for Json<T> {
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        <T as EncodeAs<Json<T>>>::encode_as(&self.0, scratch)
    }
}

#[cfg(feature = "serde")]
impl<T: serde::Serialize> EncodeAs<Json<T>> for T {
    fn encode_as<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        serde_json::to_writer(&mut *scratch, self)
            .map_err(|err| Error::new(ErrorKind::Encode, format!("JSON encoding failed: {err}")))?;
        Ok(scratch)
    }
}

#[cfg(feature = "serde")]
impl<T: serde::de::DeserializeOwned> Receive for Json<T> {
    type Value = T;

    fn receive(payload: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(payload).map_err(|err| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "the frame is not valid JSON for {}: {err}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    fn receive_owned(payload: Vec<u8>) -> Result<T, Error> {
        Self::receive(&payload)
    }
}

/// A serde value encoded with `postcard`: compact and fast, for Rust on both ends.
///
/// As with [`Json`], a `Channel<Postcard<T>>` sends a `&T` and receives a `T`.
#[cfg(feature = "serde")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Postcard<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize> Encode for Postcard<T> {
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        <T as EncodeAs<Postcard<T>>>::encode_as(&self.0, scratch)
    }
}

#[cfg(feature = "serde")]
impl<T: serde::Serialize> EncodeAs<Postcard<T>> for T {
    fn encode_as<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        let encoded = postcard::to_extend(self, std::mem::take(scratch)).map_err(|err| {
            Error::new(
                ErrorKind::Encode,
                format!("postcard encoding failed: {err}"),
            )
        })?;
        *scratch = encoded;
        Ok(scratch)
    }
}

#[cfg(feature = "serde")]
impl<T: serde::de::DeserializeOwned> Receive for Postcard<T> {
    type Value = T;

    fn receive(payload: &[u8]) -> Result<T, Error> {
        postcard::from_bytes(payload).map_err(|err| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "the frame is not valid postcard for {}: {err}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    fn receive_owned(payload: Vec<u8>) -> Result<T, Error> {
        Self::receive(&payload)
    }
}

/// A [`Shared`](crate::shm::Shared) travels as a frame holding its length (8 bytes,
/// little-endian) with its memfd attached, so that the receiver can check that the two
/// agree.
impl Encode for crate::shm::Shared {
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        scratch.extend_from_slice(&(self.len() as u64).to_le_bytes());
        Ok(scratch)
    }

    fn attached_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }
}

/// A [`Shared`](crate::shm::Shared) is received from its frame and the last descriptor
/// that came with it, checked by [`Shared::from_fd`](crate::shm::Shared::from_fd) (with
/// [`Shared::DEFAULT_MAX_LEN`](crate::shm::Shared::DEFAULT_MAX_LEN)) before anything is
/// mapped, and against the length the frame claims.
impl Receive for crate::shm::Shared {
    type Value = crate::shm::Shared;

    fn receive(_: &[u8]) -> Result<Self::Value, Error> {
        Err(no_memfd())
    }

    fn receive_owned(_: Vec<u8>) -> Result<Self::Value, Error> {
        Err(no_memfd())
    }

    fn receive_with_fds(payload: &[u8], fds: &mut Vec<OwnedFd>) -> Result<Self::Value, Error> {
        let claimed: [u8; 8] = payload.try_into().map_err(|_| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "a shared message's frame holds its length in 8 bytes, not {}",
                    payload.len()
                ),
            )
        })?;
        let claimed = u64::from_le_bytes(claimed);
        let fd = fds.pop().ok_or_else(no_memfd)?;
        let shared = crate::shm::Shared::try_from(fd).map_err(|err| {
            Error::with_source(
                ErrorKind::Decode,
                format!("a shared message refused: {err}"),
                err,
            )
        })?;
        if shared.len() as u64 != claimed {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "a shared message claims {claimed} bytes; its memfd holds {}",
                    shared.len()
                ),
            ));
        }
        Ok(shared)
    }

    fn receive_owned_with_fds(
        payload: Vec<u8>,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Self::Value, Error> {
        Self::receive_with_fds(&payload, fds)
    }
}

fn no_memfd() -> Error {
    Error::new(
        ErrorKind::Fds,
        "a shared message came without its memfd (this end must accept descriptors: \
         accept_fds(true))",
    )
}
