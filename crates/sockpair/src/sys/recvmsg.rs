//! `recvmsg` with `SCM_RIGHTS`, by hand: rustix's wrapper also asks the kernel for the
//! peer's address and builds a `SocketAddrAny` on every call, which costs a few percent
//! of a small round trip; a socket pair has no address worth asking for.
//!
//! Every descriptor a control message brings gets an owner, whichever options a user
//! set on the socket: `SCM_RIGHTS` ones are handed out, and the `SCM_PIDFD` that
//! `SO_PASSPIDFD` (Linux 6.5) adds to every receive is closed at once (the kernel
//! installs it in this process before `recvmsg` returns).

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// The most descriptors one message can carry: the kernel's `SCM_MAX_FD` (253 on
/// Linux). [`Socket::send_with_fds`](crate::Socket::send_with_fds) refuses more before
/// calling the kernel.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// `SCM_PIDFD` (Linux 6.5): a pidfd of the sender, with `SO_PASSPIDFD`; libc does not
/// name it yet.
const SCM_PIDFD: libc::c_int = 4;

/// Control space in 8-byte words.
const CONTROL_WORDS: usize = 192;

/// What the kernel may write with every option a socket can have on: a full
/// `SCM_RIGHTS` message, `SCM_CREDENTIALS`, `SCM_PIDFD` and the largest timestamp
/// (`SO_TIMESTAMPING`'s three timespecs), with the 8-byte alignment of 64-bit Linux
/// (`CMSG_SPACE(n)` is `16 + n` rounded up to 8).
const CONTROL_NEEDED: usize = (16 + MAX_FDS_PER_MESSAGE * size_of::<RawFd>()).next_multiple_of(8)
    + (16 + size_of::<libc::ucred>()).next_multiple_of(8)
    + 16
    + 8
    + 16
    + 48;

/// The control buffer passed to the kernel: all of it.
const CONTROL_LEN: usize = CONTROL_WORDS * 8;

// The control buffer holds everything the kernel may write into it, by construction.
const _: () = assert!(CONTROL_NEEDED <= CONTROL_LEN);

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
    let mut iov = [libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }];
    // SAFETY: the iovec covers `buf`, valid for writes of its length.
    unsafe { recvmsg_raw(socket, &mut iov, fds, how) }
}

/// The most buffers [`recvmsg_append`] fills in one call: a header and a payload for
/// each of 16 frames, and one more.
pub(crate) const MAX_TARGETS: usize = 33;

/// [`recvmsg`] into the spare capacity of several `Vec`s in turn (a scattering read),
/// at most the given number of bytes into each (within its capacity), growing each
/// one's length by what arrived there: one fills before the next gets a byte. At most
/// [`MAX_TARGETS`] targets; more is an `InvalidInput` error, before any system call.
pub(crate) fn recvmsg_append<'v>(
    socket: impl AsFd,
    targets: impl IntoIterator<Item = (&'v mut Vec<u8>, usize)>,
    fds: &mut Vec<OwnedFd>,
    how: Recv,
) -> io::Result<Received> {
    // Only the entries used are written (a receive uses one to 33): nothing is zeroed.
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_TARGETS];
    let mut vecs = [const { MaybeUninit::<&mut Vec<u8>>::uninit() }; MAX_TARGETS];
    let mut count = 0;
    for (vec, most) in targets {
        if count == MAX_TARGETS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many buffers for one receive",
            ));
        }
        let spare = vec.spare_capacity_mut();
        iovs[count].write(libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: most.min(spare.len()),
        });
        vecs[count].write(vec);
        count += 1;
    }
    // SAFETY: the first `count` entries of `iovs` were written in the loop above, and
    // `MaybeUninit<iovec>` has the layout of `iovec`.
    let iovs =
        unsafe { std::slice::from_raw_parts_mut(iovs.as_mut_ptr().cast::<libc::iovec>(), count) };
    // SAFETY: each iovec covers spare capacity of a distinct `Vec` (each borrowed
    // mutably once, for the whole call), valid for writes of its length.
    let received = unsafe { recvmsg_raw(socket, iovs, fds, how)? };
    let mut left = received.bytes;
    for (iov, vec) in iovs.iter().zip(&mut vecs[..count]) {
        // SAFETY: the first `count` entries of `vecs` were written in the loop above.
        let vec = unsafe { vec.assume_init_mut() };
        let here = left.min(iov.iov_len);
        // SAFETY: the kernel fills the iovecs in order and reports in `bytes` at most
        // their total length; these `here` bytes right after the old length are the
        // ones it wrote into this `Vec`'s spare capacity.
        unsafe { vec.set_len(vec.len() + here) };
        left -= here;
    }
    Ok(received)
}

/// # Safety
///
/// Each of `iovs` must be valid for writes of its length.
unsafe fn recvmsg_raw(
    socket: impl AsFd,
    iovs: &mut [libc::iovec],
    fds: &mut Vec<OwnedFd>,
    how: Recv,
) -> io::Result<Received> {
    // Uninitialised: the kernel writes what it reports, and only that is read.
    let mut control = [MaybeUninit::<u64>::uninit(); CONTROL_WORDS];
    let len: usize = iovs.iter().map(|iov| iov.iov_len).sum();
    // SAFETY: an all-zero msghdr is valid (no name, no iovec, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = iovs.len() as _;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_LEN as _;
    let flags = libc::MSG_CMSG_CLOEXEC
        | if how.nonblocking {
            libc::MSG_DONTWAIT
        } else {
            0
        }
        | if how.record_len { libc::MSG_TRUNC } else { 0 };
    // SAFETY: `msg` points to the iovecs (each writable for its length, as the caller
    // promises) and to `CONTROL_LEN` bytes of `control`; the fd is borrowed. The
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
    let n = super::cvt(n)?;
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
        } else if cmsg.cmsg_level == libc::SOL_SOCKET && cmsg.cmsg_type == SCM_PIDFD {
            // SAFETY: CMSG_DATA only computes an address; the message holds one
            // descriptor after its header.
            let fd = unsafe { ptr::read_unaligned(libc::CMSG_DATA(header).cast::<RawFd>()) };
            // SAFETY: the kernel just installed this pidfd for us and nothing else knows
            // its number: it is owned here, and closed.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
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
