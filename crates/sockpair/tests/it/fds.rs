//! Descriptor passing (SCM_RIGHTS) on every type.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use sockpair::{MAX_FDS_PER_MESSAGE, Type, pair};

use crate::util::{TYPES, cloexec_nonblock, in_fresh_process, inode, open_fds, watchdog};

#[test]
fn passed_fds_arrive_in_order_close_on_exec_and_usable() {
    watchdog(|| {
        for ty in TYPES {
            let (a, b) = pair(ty).unwrap();
            let (mut pipe_r, pipe_w) = std::io::pipe().unwrap();
            let file = tempfile_like();
            let (x, _y) = pair(Type::DGRAM).unwrap();
            let sent: [BorrowedFd<'_>; 3] = [pipe_w.as_fd(), file.as_fd(), x.as_fd()];
            assert_eq!(a.send_with_fds(b"three fds", &sent).unwrap(), 9);

            let mut fds = Vec::new();
            let mut buf = [0; 32];
            let n = b.recv_with_fds(&mut buf, &mut fds).unwrap();
            assert_eq!(&buf[..n], b"three fds");
            assert_eq!(fds.len(), 3, "{ty:?}");
            let inodes: Vec<u64> = fds.iter().map(inode).collect();
            let expected: Vec<u64> = sent.iter().map(inode).collect();
            assert_eq!(inodes, expected, "{ty:?}: same files, same order");
            for fd in &fds {
                assert!(
                    cloexec_nonblock(fd).0,
                    "{ty:?}: received fds are close-on-exec"
                );
            }
            // Usable: write through the passed pipe end, read from ours.
            drop(pipe_w);
            let mut passed = std::io::PipeWriter::from(fds.remove(0));
            passed.write_all(b"through").unwrap();
            drop(passed);
            let mut text = String::new();
            pipe_r.read_to_string(&mut text).unwrap();
            assert_eq!(text, "through", "{ty:?}");
        }
    });
}

/// A regular file nobody else uses: an anonymous one from `memfd_create`.
fn tempfile_like() -> OwnedFd {
    rustix::fs::memfd_create("sockpair-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap()
}

#[test]
fn fds_ride_with_the_first_byte_on_a_stream() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let file = tempfile_like();
        a.send_with_fds(b"hello", &[file.as_fd()]).unwrap();
        let mut fds = Vec::new();
        let mut buf = [0; 2];
        assert_eq!(b.recv_with_fds(&mut buf, &mut fds).unwrap(), 2);
        assert_eq!(fds.len(), 1, "the fd comes with the first read");
        let mut rest = [0; 8];
        let n = b.recv_with_fds(&mut rest, &mut fds).unwrap();
        assert_eq!(&rest[..n], b"llo");
        assert_eq!(fds.len(), 1, "and only once");
    });
}

#[test]
fn a_stream_refuses_fds_without_data() {
    let (a, b) = pair(Type::STREAM).unwrap();
    let file = tempfile_like();
    let err = a.send_with_fds(b"", &[file.as_fd()]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    b.set_nonblocking(true).unwrap();
    let mut fds = Vec::new();
    let err = b.recv_with_fds(&mut [0; 4], &mut fds).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "nothing was sent");
}

#[test]
fn records_carry_fds_without_data() {
    watchdog(|| {
        for ty in [Type::SEQPACKET, Type::DGRAM] {
            let (a, b) = pair(ty).unwrap();
            let file = tempfile_like();
            assert_eq!(a.send_with_fds(b"", &[file.as_fd()]).unwrap(), 0);
            let mut fds = Vec::new();
            assert_eq!(b.recv_with_fds(&mut [0; 4], &mut fds).unwrap(), 0);
            assert_eq!(fds.len(), 1, "{ty:?}");
            assert_eq!(inode(&fds[0]), inode(&file));
        }
    });
}

#[test]
fn the_kernels_limit_is_accepted_and_one_more_is_refused_up_front() {
    watchdog(|| {
        let (a, b) = pair(Type::SEQPACKET).unwrap();
        let file = tempfile_like();
        let many = vec![file.as_fd(); MAX_FDS_PER_MESSAGE + 1];
        let err = a.send_with_fds(b"x", &many).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("253"), "{err}");

        a.send_with_fds(b"x", &many[..MAX_FDS_PER_MESSAGE]).unwrap();
        let mut fds = Vec::new();
        assert_eq!(
            b.recv_with_fds(&mut [0; 4], &mut fds).unwrap(),
            1,
            "only the good message was sent"
        );
        assert_eq!(fds.len(), MAX_FDS_PER_MESSAGE);
    });
}

#[test]
fn several_fd_messages_are_delivered_each_with_its_own_bytes() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let files: Vec<OwnedFd> = (0..3).map(|_| tempfile_like()).collect();
        for (i, file) in files.iter().enumerate() {
            a.send_with_fds(&[i as u8], &[file.as_fd()]).unwrap();
        }
        let mut fds = Vec::new();
        let mut buf = [0; 16];
        let mut bytes = Vec::new();
        while bytes.len() < 3 {
            let n = b.recv_with_fds(&mut buf, &mut fds).unwrap();
            bytes.extend_from_slice(&buf[..n]);
            assert_eq!(fds.len(), bytes.len(), "each fd arrives with its own byte");
        }
        let got: Vec<u64> = fds.iter().map(inode).collect();
        let want: Vec<u64> = files.iter().map(inode).collect();
        assert_eq!(got, want);
    });
}

#[test]
fn truncated_control_data_closes_what_arrived_and_is_an_error() {
    in_fresh_process("fds::truncation_inner");
}

#[test]
#[ignore = "run alone in a fresh process by truncated_control_data_closes_what_arrived_and_is_an_error"]
fn truncation_inner() {
    let (a, b) = pair(Type::SEQPACKET).unwrap();
    // Options that add control messages are on (the buffer has room for all of them
    // and a full SCM_MAX_FD message), but this process has room for fewer descriptors
    // than arrive: the kernel installs what fits and sets MSG_CTRUNC.
    rustix::net::sockopt::set_socket_passcred(&b, true).unwrap();
    crate::util::set_socket_option(&b, libc::SO_TIMESTAMP, 1);
    let file = tempfile_like();
    a.send_with_fds(b"x", &vec![file.as_fd(); MAX_FDS_PER_MESSAGE])
        .unwrap();
    let numbers = crate::util::fd_numbers();
    let highest = *numbers.last().unwrap() as u64;
    let limit = (numbers.len() as u64 + 20).max(highest + 1);
    assert!(limit - (numbers.len() as u64) < MAX_FDS_PER_MESSAGE as u64);
    let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let before = open_fds();
    let mut fds = Vec::new();
    let err = b.recv_with_fds(&mut [0; 4], &mut fds).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("MSG_CTRUNC"));
    assert!(fds.is_empty());
    assert_eq!(
        open_fds(),
        before,
        "the descriptors that did arrive were closed"
    );
}

#[test]
fn no_descriptor_leaks_over_thousands_of_pairs_with_fds_in_flight() {
    in_fresh_process("fds::leak_inner");
}

#[test]
#[ignore = "run alone in a fresh process by no_descriptor_leaks_over_thousands_of_pairs_with_fds_in_flight"]
fn leak_inner() {
    let before = open_fds();
    let (mut pipe_r, pipe_w) = std::io::pipe().unwrap();
    for i in 0..3000 {
        let ty = crate::util::TYPES[i % 3];
        let (a, b) = pair(ty).unwrap();
        a.send_with_fds(b"in flight", &[pipe_w.as_fd(), pipe_w.as_fd()])
            .unwrap();
        if i % 2 == 0 {
            // Half of them are received (and dropped) too.
            let mut fds = Vec::new();
            b.recv_with_fds(&mut [0; 16], &mut fds).unwrap();
            assert_eq!(fds.len(), 2);
        }
    }
    drop(pipe_w);
    assert_eq!(open_fds(), before + 1, "only our read end is left");
    // Every copy of the write end in flight was released with its pair: EOF, not a hang.
    let mut rest = Vec::new();
    assert_eq!(pipe_r.read_to_end(&mut rest).unwrap(), 0);
}

/// `SO_PASSPIDFD` (Linux 6.5), the option that makes the kernel install a pidfd of the
/// sender in this process on every receive.
const SO_PASSPIDFD: libc::c_int = 76;

#[test]
fn receives_with_pidfd_credential_and_timestamp_options_leave_no_descriptor() {
    in_fresh_process("fds::control_options_inner");
}

#[test]
#[ignore = "run alone in a fresh process by receives_with_pidfd_credential_and_timestamp_options_leave_no_descriptor"]
fn control_options_inner() {
    use sockpair::Channel;
    let file = tempfile_like();
    for ty in TYPES {
        for option in [SO_PASSPIDFD, libc::SO_PASSCRED, libc::SO_TIMESTAMP] {
            let (a, b) = pair(ty).unwrap();
            crate::util::set_socket_option(&b, option, 1);
            let before = open_fds();
            for round in 0..100 {
                let mut fds = Vec::new();
                let mut buf = [0; 8];
                match round % 2 {
                    0 => a.send(b"plain").unwrap(),
                    _ => a.send_with_fds(b"a file", &[file.as_fd()]).unwrap(),
                };
                let n = b.recv_with_fds(&mut buf, &mut fds).unwrap();
                assert!(n > 0, "{ty:?} option {option}");
                assert_eq!(
                    fds.len(),
                    round % 2,
                    "{ty:?} option {option}: only SCM_RIGHTS"
                );
            }
            assert_eq!(open_fds(), before, "{ty:?} option {option}: recv_with_fds");
            let mut a: Channel<Vec<u8>> = Channel::new(a).unwrap();
            let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
            for round in 0..100 {
                let mut fds = Vec::new();
                match round % 2 {
                    0 => a.send(b"plain").unwrap(),
                    _ => a.send_with_fds(b"a file", &[file.as_fd()]).unwrap(),
                };
                let message = b.recv_with_fds(&mut fds).unwrap().unwrap();
                assert!(!message.is_empty());
                assert_eq!(fds.len(), round % 2, "{ty:?} option {option}: Channel");
            }
            assert_eq!(open_fds(), before, "{ty:?} option {option}: Channel::recv");
        }
    }
}
