//! Newline-delimited frames: one payload per line, as Node's `json` IPC mode writes them
//! (`JSON.stringify(message) + '\n'`).

use crate::error::{Error, ErrorKind};

/// The byte that ends a frame.
pub const NEWLINE: u8 = b'\n';

/// Checks that `payload` can travel as one line: it must not contain a newline.
///
/// # Errors
///
/// [`ErrorKind::Encode`] if it does.
pub fn check_line(payload: &[u8]) -> Result<(), Error> {
    match memchr(payload) {
        None => Ok(()),
        Some(at) => Err(Error::new(
            ErrorKind::Encode,
            format!(
                "a line frame cannot contain a newline (byte {at} of {})",
                payload.len()
            ),
        )),
    }
}

/// The position of the first newline in `bytes` (SIMD search, `memchr`).
pub fn memchr(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(NEWLINE, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_without_newlines_pass() {
        assert!(check_line(b"{\"n\":1}").is_ok());
        assert!(check_line(b"").is_ok());
        assert_eq!(check_line(b"a\nb").unwrap_err().kind(), ErrorKind::Encode);
        assert_eq!(memchr(b"ab\ncd\n"), Some(2));
    }
}
