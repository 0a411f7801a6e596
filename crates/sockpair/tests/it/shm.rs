//! `sockpair::shm`: sealed shared memory handed over through channels, and every way a
//! hostile peer might try to make the receiver fault, see changing bytes or spend memory.

use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use rustix::fs::{MemfdFlags, SealFlags};
use sockpair::shm::{SEALS, Shared, SharedMut};
use sockpair::{Channel, SpawnOptions, Type, pair};

use crate::util::{in_fresh_process, watchdog};

/// A channel pair of `ty`, the receiving end accepting descriptors.
fn channels(ty: Type) -> (Channel<Shared>, Channel<Shared>) {
    let (a, b) = pair(ty).unwrap();
    let mut b: Channel<Shared> = Channel::new(b).unwrap();
    b.accept_fds(true).unwrap();
    (Channel::new(a).unwrap(), b)
}

/// A frozen buffer of `len` bytes holding a pattern.
fn patterned(len: usize) -> Shared {
    let mut buffer = SharedMut::new(len).unwrap();
    for (i, byte) in buffer.iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    buffer.freeze().unwrap()
}

fn is_pattern(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &byte)| byte == (i % 251) as u8)
}

#[test]
fn shared_messages_cross_stream_and_seqpacket_channels_whole() {
    watchdog(|| {
        for ty in [Type::STREAM, Type::SEQPACKET] {
            let (mut a, mut b) = channels(ty);
            for len in [0, 1, 4096, 1 << 20, (3 << 20) + 5] {
                let sent = patterned(len);
                a.send(&sent).unwrap();
                let got = b.recv().unwrap().unwrap();
                assert_eq!(got.len(), len, "{ty}");
                assert!(is_pattern(&got), "{ty} {len}");
                assert_ne!(got.as_fd().as_raw_fd(), sent.as_fd().as_raw_fd());
            }
            // A clone is the same bytes, and outlives the original.
            let one = patterned(10_000);
            let two = one.clone();
            drop(one);
            assert!(is_pattern(&two));
        }
    });
}

#[test]
fn shared_mut_writes_from_the_start_and_refuses_more_than_it_holds() {
    let mut buffer = SharedMut::new(10).unwrap();
    assert_eq!(&buffer[..], &[0; 10]);
    buffer.write_all(b"hello").unwrap();
    buffer.write_all(b"world").unwrap();
    assert_eq!(
        buffer.write_all(b"!").unwrap_err().kind(),
        ErrorKind::WriteZero
    );
    buffer[0] = b'H';
    let frozen = buffer.freeze().unwrap();
    assert_eq!(&frozen[..], b"Helloworld");
    // The frozen memfd carries every seal, and is not sparse.
    let seals = rustix::fs::fcntl_get_seals(frozen.as_fd()).unwrap();
    assert!(seals.contains(SEALS));
    let empty = SharedMut::new(0).unwrap().freeze().unwrap();
    assert!(empty.is_empty());
    // Lengths no file or address space holds: errors, not panics.
    for len in [usize::MAX, usize::MAX / 2, 1 << 62] {
        assert!(SharedMut::new(len).is_err(), "{len}");
    }
    // Mostly never written, through either way: frozen whole (not sparse), zeros.
    for in_place in [false, true] {
        let mut buffer = SharedMut::new(4 << 20).unwrap();
        if in_place {
            buffer[5000] = 9;
        } else {
            buffer.write_all(&[9; 10]).unwrap();
        }
        let frozen = buffer.freeze().unwrap();
        let again = Shared::try_from(frozen.as_fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(
            again.iter().filter(|&&b| b == 9).count(),
            if in_place { 1 } else { 10 }
        );
        assert_eq!(again.len(), 4 << 20);
    }
    // Filled in place after `populate`, and through io::Write: the same bytes.
    let mut populated = SharedMut::new(1 << 20).unwrap();
    populated.populate();
    populated.fill(3);
    let mut written = SharedMut::new(1 << 20).unwrap();
    written.write_all(&vec![3; 1 << 20]).unwrap();
    assert_eq!(
        &populated.freeze().unwrap()[..],
        &written.freeze().unwrap()[..]
    );
}

#[cfg(feature = "bytes")]
#[test]
fn a_shared_becomes_bytes_without_a_copy() {
    let shared = patterned(100_000);
    let at = shared.as_ptr();
    let bytes = bytes::Bytes::from(shared);
    assert_eq!(bytes.as_ptr(), at, "the same memory");
    assert!(is_pattern(&bytes));
}

/// A memfd holding `len` bytes, with `seals` added.
fn memfd_with(len: usize, seals: SealFlags) -> OwnedFd {
    let fd =
        rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    let mut file = std::fs::File::from(fd);
    file.write_all(&vec![7; len]).unwrap();
    let fd = OwnedFd::from(file);
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    }
    fd
}

fn refused(fd: OwnedFd) -> String {
    let err = Shared::try_from(fd).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    err.to_string()
}

#[test]
fn descriptors_that_are_not_a_sealed_whole_memfd_are_refused_before_any_mapping() {
    // Each seal missing in turn.
    for (missing, name) in [
        (SealFlags::WRITE, "F_SEAL_WRITE"),
        (SealFlags::SHRINK, "F_SEAL_SHRINK"),
        (SealFlags::GROW, "F_SEAL_GROW"),
        (SealFlags::SEAL, "F_SEAL_SEAL"),
    ] {
        let why = refused(memfd_with(4096, SEALS - missing));
        assert!(why.contains(name), "{why}");
    }
    assert!(Shared::try_from(memfd_with(4096, SEALS)).is_ok());
    // Sparse: 1 TiB declared, nothing stored; and 64 MiB with a hole.
    for (len, stored) in [(1u64 << 40, 0usize), (64 << 20, 4096)] {
        let fd = memfd_with(stored, SealFlags::empty());
        rustix::fs::ftruncate(&fd, len).unwrap();
        rustix::fs::fcntl_add_seals(&fd, SEALS).unwrap();
        let why = refused(fd);
        assert!(why.contains("sparse"), "{why}");
    }
    // Over the limit.
    let err = Shared::from_fd(memfd_with(8192, SEALS), 4096).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    // A pipe, a regular file, a socket.
    let (pipe, _w) = std::io::pipe().unwrap();
    assert!(refused(pipe.into()).contains("pipe"));
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    assert!(refused(file.into()).contains("file"));
    let (socket, _other) = pair(Type::STREAM).unwrap();
    assert!(refused(socket.into()).contains("socket"));
}

/// Sends a frame claiming `claimed` bytes, with `fds`, as a hostile sender would.
fn send_raw(
    socket: &sockpair::Socket,
    ty: Type,
    claimed: u64,
    fds: &[std::os::fd::BorrowedFd<'_>],
) {
    let mut frame = Vec::new();
    if ty == Type::STREAM {
        frame.extend(8u32.to_be_bytes());
    }
    frame.extend(claimed.to_le_bytes());
    socket.send_with_fds(&frame, fds).unwrap();
}

#[test]
fn a_hostile_senders_frames_are_clear_errors_and_the_channel_goes_on() {
    watchdog(|| {
        for ty in [Type::STREAM, Type::SEQPACKET] {
            let (raw, b) = pair(ty).unwrap();
            let mut b: Channel<Shared> = Channel::new(b).unwrap();
            b.accept_fds(true).unwrap();
            // A size other than the memfd's.
            let fd = memfd_with(4096, SEALS);
            send_raw(&raw, ty, 8192, &[fd.as_fd()]);
            let err = b.recv().unwrap_err();
            assert!(err.to_string().contains("claims 8192"), "{ty}: {err}");
            // An unsealed memfd, a pipe.
            let fd = memfd_with(4096, SealFlags::empty());
            send_raw(&raw, ty, 4096, &[fd.as_fd()]);
            assert!(b.recv().unwrap_err().to_string().contains("F_SEAL_WRITE"));
            let (pipe, _w) = std::io::pipe().unwrap();
            send_raw(&raw, ty, 0, &[pipe.as_fd()]);
            assert!(b.recv().unwrap_err().to_string().contains("pipe"));
            // No descriptor at all.
            send_raw(&raw, ty, 4096, &[]);
            assert!(
                b.recv()
                    .unwrap_err()
                    .to_string()
                    .contains("without its memfd")
            );
            // And then a good one still comes through.
            let good = memfd_with(100, SEALS);
            send_raw(&raw, ty, 100, &[good.as_fd()]);
            assert_eq!(&b.recv().unwrap().unwrap()[..], &[7; 100][..], "{ty}");
        }
    });
}

#[test]
fn a_sender_that_kept_the_memfd_cannot_change_what_was_sent() {
    let (mut a, mut b) = channels(Type::STREAM);
    let sent = patterned(1 << 20);
    let kept: OwnedFd = sent.as_fd().try_clone_to_owned().unwrap();
    a.send(&sent).unwrap();
    drop(sent);
    let got = b.recv().unwrap().unwrap();
    // The kernel refuses each way to change it.
    assert!(rustix::fs::ftruncate(&kept, 0).is_err(), "ftruncate");
    assert!(rustix::fs::ftruncate(&kept, 2 << 20).is_err(), "grow");
    let mut file = std::fs::File::from(kept.try_clone().unwrap());
    assert!(file.write_all(b"changed").is_err(), "write");
    assert!(
        rustix::fs::fcntl_add_seals(&kept, SealFlags::empty()).is_err()
            || rustix::fs::fcntl_get_seals(&kept)
                .unwrap()
                .contains(SealFlags::SEAL),
        "no seal can be taken off"
    );
    // SAFETY: a request for a new writable shared mapping of the kept memfd; it is
    // expected to fail, and is unmapped if it did not.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            kept.as_raw_fd(),
            0,
        )
    };
    assert_eq!(at, libc::MAP_FAILED, "a writable shared mapping");
    assert!(is_pattern(&got), "the receiver's bytes unchanged");
}

#[test]
fn ten_thousand_shared_messages_leave_no_descriptor_or_mapping() {
    in_fresh_process("shm::ten_thousand_inner");
}

#[test]
#[ignore = "run alone in a fresh process by ten_thousand_shared_messages_leave_no_descriptor_or_mapping"]
fn ten_thousand_inner() {
    let count = |path: &str| std::fs::read_to_string(path).unwrap().lines().count();
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    for ty in [Type::STREAM, Type::SEQPACKET] {
        let (mut a, mut b) = channels(ty);
        // One first, so that the channels' receive buffers exist before the count.
        a.send(&patterned(1)).unwrap();
        b.recv().unwrap().unwrap();
        let (fds_before, maps_before) = (fds(), count("/proc/self/maps"));
        for i in 0..10_000usize {
            a.send(&patterned(1 + i % 9000)).unwrap();
            let got = b.recv().unwrap().unwrap();
            assert_eq!(got.len(), 1 + i % 9000);
        }
        // And hostile ones, refused.
        let (raw, c) = pair(ty).unwrap();
        let mut c: Channel<Shared> = Channel::new(c).unwrap();
        c.accept_fds(true).unwrap();
        for _ in 0..1000 {
            let fd = memfd_with(64, SealFlags::empty());
            send_raw(&raw, ty, 64, &[fd.as_fd()]);
            assert!(c.recv().is_err());
        }
        drop((raw, c));
        assert_eq!(fds(), fds_before, "{ty}: descriptors");
        assert_eq!(count("/proc/self/maps"), maps_before, "{ty}: mappings");
    }
}

/// Python sends a sealed memfd as a Shared: `os.memfd_create`, `fcntl.F_ADD_SEALS`,
/// `socket.send_fds`, as the wire format describes.
const PYTHON_SENDER: &str = r#"
import fcntl, os, socket, struct
s = socket.socket(fileno=int(os.environ["SOCKPAIR_FD"]))
data = bytes(i % 251 for i in range(3 << 20))
fd = os.memfd_create("from-python", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
os.write(fd, data)
fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
frame = struct.pack(">I", 8) + struct.pack("<Q", len(data))
socket.send_fds(s, [frame], [fd])
os.close(fd)
s.recv(1)
"#;

#[test]
fn a_python_peer_sends_a_shared_message() {
    watchdog(|| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", PYTHON_SENDER]);
        let (mut child, socket) = SpawnOptions::new().spawn(&mut cmd).unwrap();
        let mut channel: Channel<Shared> = Channel::new(socket).unwrap();
        channel.accept_fds(true).unwrap();
        channel.read_timeout(Some(Duration::from_secs(20)));
        let got = channel.recv().unwrap().unwrap();
        assert_eq!(got.len(), 3 << 20);
        assert!(is_pattern(&got));
        channel.socket().send(b"k").unwrap();
        assert!(child.wait().unwrap().success());
    });
}

#[cfg(feature = "tokio")]
#[test]
fn async_channels_carry_shared_messages() {
    watchdog(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        runtime.block_on(async {
            for ty in [Type::STREAM, Type::SEQPACKET] {
                let (a, b) = pair(ty).unwrap();
                let mut a: sockpair::tokio::AsyncChannel<Shared> =
                    sockpair::tokio::AsyncChannel::new(a).unwrap();
                let mut b: sockpair::tokio::AsyncChannel<Shared> =
                    sockpair::tokio::AsyncChannel::new(b).unwrap();
                b.accept_fds(true).unwrap();
                for len in [1usize, 1 << 20] {
                    a.send(&patterned(len)).await.unwrap();
                    a.feed(&patterned(len)).await.unwrap();
                    a.flush().await.unwrap();
                    for _ in 0..2 {
                        let got = b.recv().await.unwrap().unwrap();
                        assert_eq!(got.len(), len);
                        assert!(is_pattern(&got));
                    }
                }
            }
        });
    });
}

/// The mapping is shared read-only; where the kernel refuses that for a write-sealed
/// memfd (before 6.7: CI's old-kernel run refuses it), private read-only, the same bytes.
#[test]
fn a_shared_is_mapped_read_only_shared_or_private_where_the_kernel_refuses() {
    let shared = patterned(3 << 20);
    let at = shared.as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|line| {
            let (range, _) = line.split_once(' ').unwrap();
            let (start, end) = range.split_once('-').unwrap();
            let (start, end) = (
                usize::from_str_radix(start, 16).unwrap(),
                usize::from_str_radix(end, 16).unwrap(),
            );
            (start..end).contains(&at)
        })
        .expect("the mapping is listed");
    let perms = line.split_whitespace().nth(1).unwrap();
    let expected = match std::env::var_os("SOCKPAIR_OLD_KERNEL") {
        Some(_) => "r--p",
        None => "r--s",
    };
    assert_eq!(perms, expected, "{line}");
    assert!(line.contains("memfd:sockpair-shared"), "{line}");
    assert!(is_pattern(&shared));
}
