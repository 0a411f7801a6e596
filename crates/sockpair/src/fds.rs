//! Passing descriptors with `SCM_RIGHTS`.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use crate::socket::Socket;
use crate::sys;
pub use crate::sys::recvmsg::MAX_FDS_PER_MESSAGE;
pub(crate) use crate::sys::recvmsg::{Received, Recv};
use crate::types::Type;

/// Room for a full `SCM_RIGHTS` message.
const SEND_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE));

impl Socket {
    /// Sends `buf` with descriptors attached (`sendmsg` with `SCM_RIGHTS`, `MSG_NOSIGNAL`).
    ///
    /// The receiver gets its own copies of the descriptors, as if `dup`ed; ours stay open.
    /// The descriptors travel with the first byte of `buf`: on a stream socket they are
    /// delivered by the [`recv_with_fds`](Socket::recv_with_fds) call that reads that
    /// byte, even if it is split across reads.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::fd::AsFd;
    /// use sockpair::{pair, Type};
    ///
    /// let (a, b) = pair(Type::STREAM)?;
    /// let (mut pipe_read, mut pipe_write) = std::io::pipe()?;
    /// a.send_with_fds(b"here", &[pipe_write.as_fd()])?;
    /// drop(pipe_write);
    ///
    /// let mut fds = Vec::new();
    /// let mut buf = [0; 16];
    /// let n = b.recv_with_fds(&mut buf, &mut fds)?;
    /// assert_eq!(&buf[..n], b"here");
    /// let mut passed = std::io::PipeWriter::from(fds.pop().unwrap());
    /// passed.write_all(b"through the passed fd")?;
    /// drop(passed);
    /// let mut text = String::new();
    /// pipe_read.read_to_string(&mut text)?;
    /// assert_eq!(text, "through the passed fd");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`io::ErrorKind::InvalidInput`] for more than [`MAX_FDS_PER_MESSAGE`]
    ///   descriptors, and for descriptors with an empty `buf` on a stream socket, where
    ///   the kernel would silently drop them (they need at least one data byte).
    /// - Otherwise the kernel's error, as for [`Socket::send`]; on error nothing was sent.
    #[doc(alias = "SCM_RIGHTS")]
    #[doc(alias = "sendmsg")]
    pub fn send_with_fds(&self, buf: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} descriptors in one message; the kernel takes at most {MAX_FDS_PER_MESSAGE} (SCM_MAX_FD)",
                    fds.len()
                ),
            ));
        }
        if buf.is_empty() && !fds.is_empty() && self.ty()? == Type::STREAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptors on a stream socket need at least one data byte to travel with",
            ));
        }
        self.send_msg(&[IoSlice::new(buf)], fds, SendFlags::empty())
    }

    /// `sendmsg` of `iov` with `fds` attached (at most [`MAX_FDS_PER_MESSAGE`]), with
    /// `MSG_NOSIGNAL` and `flags`.
    pub(crate) fn send_msg(
        &self,
        iov: &[IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
        flags: SendFlags,
    ) -> io::Result<usize> {
        if let ([only], []) = (iov, fds) {
            // The same, for less work in the kernel.
            return Ok(rustix::net::send(self, only, SendFlags::NOSIGNAL | flags)?);
        }
        let mut space = [MaybeUninit::uninit(); SEND_SPACE];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many descriptors for one message",
            ));
        }
        Ok(rustix::net::sendmsg(
            self,
            iov,
            &mut control,
            SendFlags::NOSIGNAL | flags,
        )?)
    }

    /// Receives bytes into `buf` and appends any descriptors that came with them to `fds`
    /// (`recvmsg` with `MSG_CMSG_CLOEXEC`).
    ///
    /// Received descriptors are [`OwnedFd`]s and are close-on-exec from the moment they
    /// arrive, so no child spawned meanwhile by another thread can inherit them. Returns
    /// the number of bytes, 0 at end of stream, as [`Socket::recv`].
    ///
    /// # Errors
    ///
    /// If the kernel truncated the control data (`MSG_CTRUNC`: this process is out of
    /// descriptors, `EMFILE`, or foreign control messages crowd it), whatever
    /// descriptors did arrive are closed and the call fails with
    /// [`io::ErrorKind::InvalidData`]: a partial set of descriptors is never handed out (the bytes that call read are dropped with them). Otherwise the
    /// kernel's error, as for [`Socket::recv`].
    #[doc(alias = "SCM_RIGHTS")]
    #[doc(alias = "recvmsg")]
    pub fn recv_with_fds(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        let received = sys::recvmsg::recvmsg(self, buf, fds, Recv::default())?;
        if received.fds_lost {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "control message truncated (MSG_CTRUNC); the descriptors that arrived were closed",
            ));
        }
        Ok(received.bytes)
    }

    /// `recvmsg` into the spare capacity of each target `Vec` in turn, at most its
    /// `usize` bytes into each, as `how` says, appending received descriptors to `fds`; a
    /// truncated control message is reported, not an error.
    #[inline]
    pub(crate) fn recv_append<'v>(
        &self,
        targets: impl IntoIterator<Item = (&'v mut Vec<u8>, usize)>,
        fds: &mut Vec<OwnedFd>,
        how: Recv,
    ) -> io::Result<Received> {
        sys::recvmsg::recvmsg_append(self, targets, fds, how)
    }

    /// Whether this socket accepts descriptors (`SO_PASSRIGHTS`); `None` before Linux
    /// 6.16, where every socket does.
    pub(crate) fn pass_rights(&self) -> io::Result<Option<bool>> {
        sys::sockopt::pass_rights(self)
    }

    /// Makes this socket accept or refuse descriptors (`SO_PASSRIGHTS`); `ENOPROTOOPT`
    /// before Linux 6.16.
    pub(crate) fn set_pass_rights(&self, accept: bool) -> io::Result<()> {
        sys::sockopt::set_pass_rights(self, accept)
    }

    /// Turns on `SO_TIMESTAMP`: every record then comes with a control message, and
    /// the end of the stream with none (how a seqpacket channel tells them apart).
    pub(crate) fn set_receive_timestamps(&self) -> io::Result<()> {
        sys::sockopt::set_receive_timestamps(self)
    }

    /// Makes this process end (by `SIGIO`) when the peer hangs up, or stops that: for a
    /// worker while it runs a function. A `SIGIO` for anything but a hang-up (input the
    /// kernel notifies late) is ignored.
    #[cfg(feature = "worker")]
    pub(crate) fn end_process_on_hang_up(&self, on: bool) -> io::Result<()> {
        sys::sockopt::end_on_hang_up(self, on)
    }
}
