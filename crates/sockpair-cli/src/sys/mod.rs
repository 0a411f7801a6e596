//! The raw `libc` calls that `sockpair bench` measures everything else against: the
//! only `unsafe` in the command.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `send(fd, buf, MSG_NOSIGNAL)` through libc.
pub fn send(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length during the call; the fd is borrowed.
    let n = unsafe {
        libc::send(
            fd.as_fd().as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(fd, buf, 0)` through libc.
pub fn recv(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length during the call; the fd is borrowed.
    let n = unsafe {
        libc::recv(
            fd.as_fd().as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
