//! `recvmsg` with `SCM_RIGHTS`, by hand: rustix's wrapper also asks the kernel for the
//! peer's address and builds a `SocketAddrAny` on every call, which costs a few percent
//! of a small round trip; a socket pair has no address worth asking for.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use crate::fds::{MAX_FDS_PER_MESSAGE, Received};

/// Control space in 8-byte words: a full `SCM_RIGHTS` message and a timestamp, with room.
const CONTROL_WORDS: usize = 160;

/// `recvmsg(fd, [buf], flags | MSG_CMSG_CLOEXEC)` without an address. Descriptors that
/// arrive are appended to `fds`; `room_for_timestamp` says whether the control buffer
/// also has room for `SCM_TIMESTAMP` (else it is sized for `SCM_RIGHTS` alone).
pub(crate) fn recvmsg(
    socket: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: i32,
    room_for_timestamp: bool,
) -> io::Result<Received> {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe {
        recvmsg_raw(
            socket,
            buf.as_mut_ptr(),
            buf.len(),
            fds,
            flags,
            room_for_timestamp,
        )
    }
}

/// [`recvmsg`] into the spare capacity of `vec`, at most `most` bytes (within the
/// capacity), growing `vec`'s length by what arrived: no zeroing first.
pub(crate) fn recvmsg_append(
    socket: impl AsFd,
    vec: &mut Vec<u8>,
    most: usize,
    fds: &mut Vec<OwnedFd>,
    flags: i32,
) -> io::Result<Received> {
    let spare = vec.spare_capacity_mut();
    let len = most.min(spare.len());
    // SAFETY: the spare capacity is valid for writes of `len` bytes.
    let received =
        unsafe { recvmsg_raw(socket, spare.as_mut_ptr().cast(), len, fds, flags, true)? };
    // SAFETY: the kernel initialised the first `received.bytes` (<= len) bytes after
    // the old length.
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
    flags: i32,
    room_for_timestamp: bool,
) -> io::Result<Received> {
    // Uninitialised: the kernel writes what it reports, and only that is read.
    let mut control = [std::mem::MaybeUninit::<u64>::uninit(); CONTROL_WORDS];
    // SAFETY: CMSG_SPACE only computes sizes.
    let rights =
        unsafe { libc::CMSG_SPACE((MAX_FDS_PER_MESSAGE * size_of::<RawFd>()) as u32) } as usize;
    // SAFETY: as above.
    let timestamp = unsafe { libc::CMSG_SPACE(size_of::<libc::timeval>() as u32) } as usize;
    let control_len = rights + if room_for_timestamp { timestamp } else { 0 };
    debug_assert!(control_len <= size_of::<[u64; CONTROL_WORDS]>());
    let mut iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iovec, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len as _;
    // SAFETY: `msg` points to one iovec over `buf` (writable for `len` bytes, as the
    // caller promises) and to `control_len` bytes of `control`; the fd is borrowed.
    let n = unsafe {
        libc::recvmsg(
            socket.as_fd().as_raw_fd(),
            &mut msg,
            flags | libc::MSG_CMSG_CLOEXEC,
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
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        fds.truncate(before); // closes what did arrive
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message truncated (MSG_CTRUNC); the descriptors that arrived were closed",
        ));
    }
    Ok(Received {
        bytes: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        control_seen,
    })
}
