//! Length frames: `[u32 big-endian length][payload]`, the header of Python's
//! `multiprocessing.connection` and of Node's advanced IPC.
//!
//! Lengths above `i32::MAX` use Python's escape: `ff ff ff ff`, then the length as a
//! `u64` big-endian. Python reads the 4 bytes as a signed `i32`, so every other negative
//! value is invalid (Python itself silently reads one as an empty message; we refuse it).

use crate::error::{Error, ErrorKind};

/// The longest header: the escape and a `u64` length.
pub const MAX_HEADER: usize = 12;

/// The header for a payload of `len` bytes, in `out`; returns the bytes to send.
pub fn encode_header(len: usize, out: &mut [u8; MAX_HEADER]) -> &[u8] {
    match i32::try_from(len) {
        Ok(short) => {
            out[..4].copy_from_slice(&short.to_be_bytes());
            &out[..4]
        }
        Err(_) => {
            out[..4].copy_from_slice(&[0xff; 4]);
            out[4..].copy_from_slice(&(len as u64).to_be_bytes());
            &out[..]
        }
    }
}

/// Parses the header at the start of `bytes`: `Ok(None)` if more bytes are needed, else
/// the header's length and the payload's length.
///
/// # Errors
///
/// [`ErrorKind::BadHeader`] for a negative length other than the escape.
pub fn decode_header(bytes: &[u8]) -> Result<Option<(usize, u64)>, Error> {
    let Some(short) = bytes.first_chunk::<4>() else {
        return Ok(None);
    };
    match i32::from_be_bytes(*short) {
        len @ 0.. => Ok(Some((4, len as u64))),
        -1 => Ok(bytes.get(4..MAX_HEADER).map(|long| {
            (
                MAX_HEADER,
                u64::from_be_bytes(long.try_into().expect("8 bytes")),
            )
        })),
        negative => Err(Error::new(
            ErrorKind::BadHeader,
            format!("frame header {short:02x?} is a negative length ({negative})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lengths_are_four_bytes_big_endian() {
        let mut out = [0; MAX_HEADER];
        assert_eq!(encode_header(5, &mut out), [0, 0, 0, 5]);
        assert_eq!(encode_header(0x0102_0304, &mut out), [1, 2, 3, 4]);
        assert_eq!(
            encode_header(i32::MAX as usize, &mut out),
            [0x7f, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            decode_header(&[0, 1, 0x86, 0xa0]).unwrap(),
            Some((4, 100_000))
        );
    }

    #[test]
    fn long_lengths_use_pythons_escape_both_ways() {
        let mut out = [0; MAX_HEADER];
        let len = i32::MAX as usize + 1;
        let header = encode_header(len, &mut out).to_vec();
        assert_eq!(header, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]);
        assert_eq!(decode_header(&header).unwrap(), Some((12, len as u64)));
        // Python accepts the escape for any length, small ones too (MP04).
        assert_eq!(
            decode_header(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3]).unwrap(),
            Some((12, 3))
        );
    }

    #[test]
    fn partial_headers_ask_for_more() {
        assert_eq!(decode_header(&[]).unwrap(), None);
        assert_eq!(decode_header(&[0, 0, 0]).unwrap(), None);
        assert_eq!(
            decode_header(&[0xff, 0xff, 0xff, 0xff, 0, 0]).unwrap(),
            None
        );
    }

    #[test]
    fn other_negative_lengths_are_refused() {
        for header in [[0xff, 0xff, 0xff, 0xfe], [0x80, 0, 0, 0]] {
            let err = decode_header(&header).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadHeader, "{err}");
        }
    }
}
