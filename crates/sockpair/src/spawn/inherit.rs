//! [`Socket::from_inherited`]: the child's side of a spawn.
//!
//! It is an `unsafe fn` (it claims a raw descriptor, and removing a variable from the
//! environment is `unsafe` in Rust 2024), so the crate's `unsafe_code` lint is lifted
//! for this file.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::fs::FileType;
use rustix::io::FdFlags;

use crate::socket::Socket;

impl Socket {
    /// Takes the socket end a parent handed over at the descriptor number named by the
    /// environment variable `var` (e.g. `SOCKPAIR_FD`, set by
    /// [`SpawnOptions`](crate::SpawnOptions)).
    ///
    /// It parses the number, checks that the descriptor is open and is a socket, marks it
    /// close-on-exec and removes `var` from the environment (as libwayland does with
    /// `WAYLAND_SOCKET`), so that grandchildren inherit neither the descriptor nor a
    /// variable naming a number that means nothing to them.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sockpair::Socket;
    ///
    /// // SAFETY: called first thing in main, before any thread exists; nothing else in
    /// // this program uses the descriptor named by SOCKPAIR_FD.
    /// let socket = unsafe { Socket::from_inherited("SOCKPAIR_FD")? };
    /// socket.send(b"hello, parent")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Each a distinct error whose message names the variable and its value:
    /// - [`io::ErrorKind::NotFound`]: `var` is not set (not started with an end);
    /// - [`io::ErrorKind::InvalidData`]: `var` is not a descriptor number;
    /// - [`io::ErrorKind::InvalidInput`], "no open descriptor has this number (EBADF)";
    /// - [`io::ErrorKind::InvalidInput`], "the descriptor is not a socket (ENOTSOCK)".
    ///
    /// On error the environment and the descriptor are left as they were.
    ///
    /// # Safety
    ///
    /// - The descriptor must not be owned by anything else in this process: it becomes
    ///   the returned `Socket`'s, which closes it on drop.
    /// - Removing an environment variable is only sound while no other thread reads or
    ///   writes the environment (see [`std::env::remove_var`]): call this early in `main`.
    pub unsafe fn from_inherited(var: &str) -> io::Result<Socket> {
        let value = std::env::var_os(var)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{var} is not set")))?;
        let fd: RawFd = value
            .to_str()
            .and_then(|text| text.parse().ok())
            .filter(|&fd: &RawFd| fd >= 0)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{var}={value:?} is not a descriptor number"),
                )
            })?;
        let refuse =
            |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{var}={fd}: {what}"));
        // SAFETY: only borrowed for the checks below; if the number is not open, fstat
        // fails with EBADF and nothing else happens.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let stat = rustix::fs::fstat(borrowed).map_err(|err| match err {
            rustix::io::Errno::BADF => refuse("no open descriptor has this number (EBADF)"),
            other => refuse(&format!("fstat: {}", io::Error::from(other))),
        })?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
            return Err(refuse("the descriptor is not a socket (ENOTSOCK)"));
        }
        rustix::io::fcntl_setfd(borrowed, FdFlags::CLOEXEC)?;
        // SAFETY: the caller guarantees no other thread uses the environment now.
        unsafe { std::env::remove_var(var) };
        // SAFETY: the descriptor is open, a socket, and the caller gives us ownership.
        Ok(Socket::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}
