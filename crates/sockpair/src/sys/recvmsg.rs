//! `recvmsg` with `SCM_RIGHTS`, by hand: rustix's wrapper also asks the kernel for the
//! peer's address and builds a `SocketAddrAny` on every call, which costs a few percent
//! of a small round trip; a socket pair has no address worth asking for.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// The most descriptors one message can carry: the kernel's `SCM_MAX_FD` (253 on
/// Linux). [`Socket::send_with_fds`](crate::Socket::send_with_fds) refuses more before
/// calling the kernel.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Control space in 8-byte words: a full `SCM_RIGHTS` message and a timestamp, with room.
const CONTROL_WORDS: usize = 160;

/// What the kernel may write: `CMSG_SPACE(253 fds) + CMSG_SPACE(timeval)`, with the
/// 8-byte alignment of 64-bit Linux (`CMSG_SPACE(n)` is `16 + n` rounded up to 8).
const CONTROL_LEN: usize =
    (16 + MAX_FDS_PER_MESSAGE * size_of::<RawFd>()).next_multiple_of(8) + 16 + 16;

// The control buffer holds everything the kernel may write into it, by construction.
const _: () = assert!(CONTROL_LEN <= CONTROL_WORDS * 8);

/// What one `recvmsg` brought.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes placed in the buffer.
    pub bytes: usize,
    /// For [`Recv::record_len`]: the record's real length, which is more than `bytes`
    /// when the record did not fit (`MSG_TRUNC`: the rest is lost).
    pub len: usize,
    /// Some descriptors did not arrive (`MSG_CTRUNC`: the process was out of
    /// descriptors, or foreign control messages crowded them out). Those that did arrive
    /// were closed: a partial set is never handed out.
    pub fds_lost: bool,
    /// Some control message came with it (with `SO_TIMESTAMP`, every record has one).
    pub control_seen: bool,
}

/// How to receive: the flags as typed choices, so that what the kernel returns always
/// fits the buffer that was given.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recv {
    /// `MSG_DONTWAIT`.
    pub nonblocking: bool,
    /// `MSG_TRUNC`: report a record's real length in [`Received::len`].
    pub record_len: bool,
}

/// `recvmsg(fd, [buf], MSG_CMSG_CLOEXEC | how)` without an address. Descriptors that
/// arrive are appended to `fds`.
pub(crate) fn recvmsg(
    socket: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    how: Recv,
) -> io::Result<Received> {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { recvmsg_raw(socket, buf.as_mut_ptr(), buf.len(), fds, how) }
}

/// [`recvmsg`] into the spare capacity of `vec`, at most `most` bytes (within the
/// capacity), growing `vec`'s length by what arrived: no zeroing first.
pub(crate) fn recvmsg_append(
    socket: impl AsFd,
    vec: &mut Vec<u8>,
    most: usize,
    fds: &mut Vec<OwnedFd>,
    how: Recv,
) -> io::Result<Received> {
    let spare = vec.spare_capacity_mut();
    let len = most.min(spare.len());
    // SAFETY: the spare capacity is valid for writes of `len` bytes.
    let received = unsafe { recvmsg_raw(socket, spare.as_mut_ptr().cast(), len, fds, how)? };
    // SAFETY: `recvmsg_raw` reports in `bytes` at most `len` bytes, all of which the
    // kernel initialised, right after the old length.
    unsafe { vec.set_len(vec.len() + received.bytes) };
    Ok(received)
}

/// # Safety
///
/// `buf` must be valid for writes of `len` bytes.
unsafe fn recvmsg_raw(
    socket: impl AsFd,
    buf: *mut u8,
    len: usize,
    fds: &mut Vec<OwnedFd>,
    how: Recv,
) -> io::Result<Received> {
    // Uninitialised: the kernel writes what it reports, and only that is read.
    let mut control = [MaybeUninit::<u64>::uninit(); CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iovec, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_LEN as _;
    let flags = libc::MSG_CMSG_CLOEXEC
        | if how.nonblocking {
            libc::MSG_DONTWAIT
        } else {
            0
        }
        | if how.record_len { libc::MSG_TRUNC } else { 0 };
    // SAFETY: `msg` points to one iovec over `buf` (writable for `len` bytes, as the
    // caller promises) and to `CONTROL_LEN` bytes of `control`; the fd is borrowed. The
    // raw system call, as rustix makes its calls: libc's wrapper is a thread
    // cancellation point, whose bookkeeping costs more than the rest of this function.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvmsg,
            socket.as_fd().as_raw_fd(),
            &raw mut msg,
            flags,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let before = fds.len();
    let mut control_seen = false;
    // SAFETY: the kernel filled `msg_controllen` bytes of `control` with well-formed
    // control messages; CMSG_FIRSTHDR/NXTHDR stay within them.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !header.is_null() {
        control_seen = true;
        // SAFETY: `header` points to a control message header inside `control`.
        let cmsg = unsafe { ptr::read_unaligned(header) };
        if cmsg.cmsg_level == libc::SOL_SOCKET && cmsg.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_DATA and CMSG_LEN only compute addresses and sizes.
            let (data, empty) = unsafe { (libc::CMSG_DATA(header), libc::CMSG_LEN(0) as usize) };
            let count = (cmsg.cmsg_len as usize).saturating_sub(empty) / size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: the message holds `count` descriptors after its header.
                let fd = unsafe { ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                // SAFETY: the kernel just installed this descriptor for us; it gets
                // exactly one owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        header = unsafe { libc::CMSG_NXTHDR(&msg, header) };
    }
    let fds_lost = msg.msg_flags & libc::MSG_CTRUNC != 0;
    if fds_lost {
        fds.truncate(before); // closes what did arrive
    }
    let n = n as usize;
    Ok(Received {
        // With MSG_TRUNC a record's real length can exceed the buffer: never report
        // more bytes placed than the buffer holds.
        bytes: n.min(len),
        len: n,
        fds_lost,
        control_seen,
    })
}
