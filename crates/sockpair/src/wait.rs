//! Waiting for a descriptor with a deadline, the one loop the channel and `Child` share.

use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

use rustix::event::{PollFlags, Timespec};
use rustix::io::Errno;

pub(crate) use rustix::event::PollFd;
pub(crate) use rustix::event::PollFlags as Events;

/// Waits until `fd` is ready for `events` (or has an error or hang-up), or until
/// `deadline` (`None`: no deadline). Returns `false` if the deadline passed first. A
/// signal that interrupts the wait does not end it: the time left is recomputed.
#[inline]
pub(crate) fn poll_until(
    fd: impl AsFd,
    events: PollFlags,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    poll_any(&mut [PollFd::new(&fd, events)], deadline)
}

/// Whether one of `fds` is ready for its events (or has an error or hang-up) now (each
/// `PollFd`'s `revents` then say which): one `poll` that does not wait, and reads no
/// clock.
#[cfg(feature = "worker")]
pub(crate) fn ready_now(fds: &mut [PollFd<'_>]) -> io::Result<bool> {
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        match rustix::event::poll(fds, Some(&now)) {
            Ok(ready) => return Ok(ready > 0),
            Err(Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// [`poll_until`] for several descriptors: waits until one of them is ready for its
/// events (each `PollFd`'s `revents` then say which), or until `deadline`.
#[inline]
pub(crate) fn poll_any(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout = deadline.map(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        match rustix::event::poll(fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}
