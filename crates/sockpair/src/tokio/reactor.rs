//! Registering a descriptor with tokio's reactor: the one `unsafe` call of the async
//! shell (tokio 1.54 made it unsafe: the descriptor must stay open and the same while
//! registered), allowed in this file alone.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::socket::Socket;

/// A value that owns its descriptor, which stays open and the same as long as the value
/// lives: nothing of its API closes, replaces or lends it out to be closed. Sealed: the
/// types here are the only ones.
pub(crate) trait OwnsFd: AsRawFd + private::Sealed {}

impl OwnsFd for Socket {}
impl OwnsFd for OwnedFd {}

mod private {
    pub trait Sealed {}
    impl Sealed for crate::socket::Socket {}
    impl Sealed for std::os::fd::OwnedFd {}
}

/// `fd` on the reactor of this thread's tokio runtime, for `interest`.
///
/// # Errors
///
/// [`io::ErrorKind::Other`] outside a tokio runtime, else the kernel's (`epoll_ctl`).
/// `fd` is closed then.
///
/// # Panics
///
/// In a runtime without I/O (tokio's own panic: it offers no way to ask first).
pub(crate) fn register<T: OwnsFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "not inside a tokio runtime: async sockets and waits need one",
        ));
    }
    // SAFETY: `T` owns its descriptor, and for as long as it lives that descriptor stays
    // open and `as_raw_fd` returns it (`OwnsFd`, sealed to `Socket` and `OwnedFd`, whose
    // APIs never close or swap it). The `AsyncFd` owns `fd` for the whole registration,
    // and this crate never calls `AsyncFd::get_mut`, the one way to swap it.
    // (`Handle::current`, inside, would panic outside a runtime: checked above.)
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}
