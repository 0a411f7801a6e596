//! [`PeerCred`]: who is at the other end, as the kernel recorded it.

use std::io;

use crate::socket::Socket;
use crate::sys;

/// The credentials the kernel recorded for the peer of a socket (`SO_PEERCRED`).
///
/// For a socket **pair** these are the credentials of the process that *created* the
/// pair, captured at `socketpair(2)` time, for both ends. They do not change when an end
/// is handed to a child, by `fork` or by `exec`: a parent asking about its child's end
/// gets its own pid back. So this tells you the pair was made by someone with this uid,
/// not which process holds the other end now.
///
/// # Examples
///
/// ```
/// use sockpair::{pair, Type};
///
/// let (a, _b) = pair(Type::STREAM)?;
/// let cred = a.peer_cred()?;
/// assert_eq!(cred.pid(), Some(std::process::id() as i32));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCred {
    pid: i32,
    uid: u32,
    gid: u32,
}

impl PeerCred {
    /// The pid, as seen from the caller's pid namespace; `None` when the kernel reports
    /// 0 (the creator is not visible in this namespace).
    pub fn pid(&self) -> Option<i32> {
        (self.pid != 0).then_some(self.pid)
    }

    /// The effective user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The effective group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }
}

impl Socket {
    /// The peer's credentials (`getsockopt(SO_PEERCRED)`); see [`PeerCred`] for what
    /// they mean on a pair.
    #[doc(alias = "SO_PEERCRED")]
    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        let (pid, uid, gid) = sys::sockopt::peer_cred(self)?;
        Ok(PeerCred { pid, uid, gid })
    }
}
