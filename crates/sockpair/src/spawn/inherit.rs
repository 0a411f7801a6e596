//! [`Socket::from_inherited`]: the child's side of a spawn.
//!
//! It is an `unsafe fn` (it claims a raw descriptor, and removing a variable from the
//! environment is `unsafe` in Rust 2024), so the crate's `unsafe_code` lint is lifted
//! for this file.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use crate::socket::Socket;
use crate::sys;

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
        // SAFETY: the caller gives us the descriptor `var` names, which nothing else in
        // this process owns.
        let socket =
            unsafe { claim_fd(fd) }.map_err(|err| claim_error(&format!("{var}={fd}"), &err))?;
        // SAFETY: the caller guarantees no other thread uses the environment now.
        unsafe { std::env::remove_var(var) };
        Ok(socket)
    }
}

/// Takes the socket this process inherited as descriptor `fd`, close-on-exec from here
/// on, after checking by number that it is open and a socket: the one way sockpair
/// claims an inherited descriptor ([`Socket::from_inherited`], the worker's fd 3).
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] with `EBADF` (no open descriptor has that number) or
/// `ENOTSOCK` (not a socket) as the raw OS error; otherwise the kernel's error. On error
/// the descriptor is left as it was.
///
/// # Safety
///
/// Nothing else in this process may own or use descriptor `fd`: on success it belongs
/// to the returned `Socket`.
pub(crate) unsafe fn claim_fd(fd: RawFd) -> io::Result<Socket> {
    // SAFETY: passed on from the caller.
    unsafe { sys::process::claim_socket(fd) }.map(Socket::from)
}

/// A failed [`claim_fd`] said in words, after `what` (the variable or the number):
/// [`io::ErrorKind::InvalidInput`] for a number that is not open or not a socket.
pub(crate) fn claim_error(what: &str, err: &io::Error) -> io::Error {
    let why = match err.raw_os_error() {
        Some(libc::EBADF) => "no open descriptor has this number (EBADF)",
        Some(libc::ENOTSOCK) => "the descriptor is not a socket (ENOTSOCK)",
        _ => return io::Error::new(err.kind(), format!("{what}: {err}")),
    };
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {why}"))
}
