//! `Channel` against what goes wrong: a peer that runs us out of descriptors, claims
//! more than it sends, sends records larger than our buffer, attaches descriptors in
//! the middle of a frame; timeouts of any length; non-blocking sockets; two threads.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use sockpair::{Channel, ErrorKind, Framing, Program, SpawnOptions, Type, pair};

use crate::util::{TYPES, in_fresh_process, open_fds, watchdog};

fn channels<T>(ty: Type) -> (Channel<T>, Channel<T>) {
    let (a, b) = pair(ty).unwrap();
    (Channel::new(a).unwrap(), Channel::new(b).unwrap())
}

/// A length frame for `payload`, as any sender writes it.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut wire = (payload.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(payload);
    wire
}

#[test]
fn descriptors_lost_to_emfile_fail_their_frame_and_the_stream_goes_on() {
    in_fresh_process("channel_faults::emfile_inner");
}

#[test]
#[ignore = "run alone in a fresh process by descriptors_lost_to_emfile_fail_their_frame_and_the_stream_goes_on"]
fn emfile_inner() {
    let (a, b) = pair(Type::STREAM).unwrap();
    let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
    let file: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    // Everything is queued before the receiver reads: small frames glue into reads.
    for i in 0..50u8 {
        a.send(&frame(&[i; 100])).unwrap();
    }
    a.send_with_fds(&frame(&[b'E'; 100]), &[file.as_fd(); 10])
        .unwrap();
    for i in 50..100u8 {
        a.send(&frame(&[i; 100])).unwrap();
    }
    drop(a);
    // Room for 3 more descriptors only: the 10 cannot all be installed (MSG_CTRUNC).
    let limit = open_fds() as u64 + 3;
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: hard,
        },
    )
    .unwrap();
    let before = open_fds();
    let mut got = Vec::new();
    loop {
        let mut fds = Vec::new();
        match b.recv_with_fds(&mut fds) {
            Ok(Some(message)) => got.push(Ok((message, fds.len()))),
            Ok(None) => break,
            Err(err) => got.push(Err(err.kind())),
        }
    }
    assert_eq!(got.len(), 101, "{:?}", &got[45..56]);
    for (i, item) in got.iter().enumerate() {
        match i {
            0..50 => assert_eq!(item, &Ok((vec![i as u8; 100], 0)), "frame {i}"),
            50 => assert_eq!(item, &Err(ErrorKind::Fds), "the frame that lost them"),
            _ => assert_eq!(item, &Ok((vec![i as u8 - 1; 100], 0)), "frame {i}"),
        }
    }
    assert_eq!(open_fds(), before, "what did arrive was closed");
}

#[test]
fn a_header_that_claims_more_than_memory_is_an_error_not_an_abort() {
    watchdog(|| {
        // Python's long-frame escape, claiming 64 GiB, then a few bytes and the end.
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        b.max_frame_len(usize::MAX);
        let mut wire = vec![0xff; 4];
        wire.extend_from_slice(&(64u64 << 30).to_be_bytes());
        wire.extend_from_slice(&[1; 100_000]);
        (&a).write_all(&wire).unwrap();
        drop(a);
        let err = b.recv().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
        assert!(err.to_string().contains("100012 byte"), "{err}");
    });
}

#[test]
fn a_sparse_memfd_claiming_a_tebibyte_is_refused() {
    watchdog(|| {
        for ty in [Type::SEQPACKET, Type::DGRAM] {
            let (a, b) = pair(ty).unwrap();
            let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
            b.max_frame_len(usize::MAX);
            let memfd = rustix::fs::memfd_create(
                "fake",
                rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
            )
            .unwrap();
            rustix::fs::ftruncate(&memfd, 1 << 40).unwrap();
            let seals = rustix::fs::SealFlags::WRITE
                | rustix::fs::SealFlags::SHRINK
                | rustix::fs::SealFlags::GROW
                | rustix::fs::SealFlags::SEAL;
            rustix::fs::fcntl_add_seals(&memfd, seals).unwrap();
            a.send_with_fds(b"", &[memfd.as_fd()]).unwrap();
            a.send(b"after").unwrap();
            let err = b.recv().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode, "{ty:?}: {err}");
            assert!(err.to_string().contains("sparse"), "{err}");
            assert_eq!(b.recv().unwrap(), Some(b"after".to_vec()), "{ty:?}");
        }
    });
}

/// Raises the send buffer of `fd` to `bytes` (past `wmem_max` as root).
fn raise_send_buffer(fd: impl AsFd, bytes: i32) {
    let name = match rustix::process::geteuid().is_root() {
        true => libc::SO_SNDBUFFORCE,
        false => libc::SO_SNDBUF,
    };
    crate::util::set_socket_option(fd, name, bytes);
}

#[test]
fn records_larger_than_the_receivers_buffer_arrive_whole() {
    watchdog(|| {
        let (a, b) = pair(Type::SEQPACKET).unwrap();
        raise_send_buffer(&a, 8 << 20);
        let sndbuf = rustix::net::sockopt::socket_send_buffer_size(&a).unwrap();
        let big = (1usize << 20).min(sndbuf / 2);
        // Sent as one record (not a memfd): the kernel takes it whole.
        let record: Vec<u8> = (0..big).map(|i| (i % 251) as u8).collect();
        assert_eq!(a.send(&record).unwrap(), big);
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        assert_eq!(b.recv().unwrap(), Some(record.clone()));
        // A limit raised after the first receive is followed.
        let (a, b) = pair(Type::SEQPACKET).unwrap();
        raise_send_buffer(&a, 8 << 20);
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        b.max_frame_len(100);
        a.send(b"small").unwrap();
        assert_eq!(b.recv().unwrap(), Some(b"small".to_vec()));
        a.send(&record).unwrap();
        let err = b.recv().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert!(
            err.to_string().contains(&big.to_string()),
            "the real size: {err}"
        );
        b.max_frame_len(2 << 20);
        a.send(&record).unwrap();
        assert_eq!(b.recv().unwrap(), Some(record));
    });
}

#[test]
fn timeouts_of_any_length_work_and_say_which_passed() {
    watchdog(|| {
        for ty in TYPES {
            let (mut a, mut b) = channels::<Vec<u8>>(ty);
            a.write_timeout(Some(Duration::MAX));
            b.read_timeout(Some(Duration::MAX));
            a.send(b"forever is fine").unwrap();
            assert_eq!(b.recv().unwrap(), Some(b"forever is fine".to_vec()));
            b.read_timeout(Some(Duration::from_millis(30)));
            let err = b.recv().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TimedOut);
            assert!(err.to_string().contains("read_timeout of 30ms"), "{err}");
        }
        // A writer whose peer does not read.
        let (mut a, _b) = channels::<Vec<u8>>(Type::STREAM);
        a.write_timeout(Some(Duration::from_millis(30)));
        let big = vec![0; 1 << 20];
        let err = loop {
            if let Err(err) = a.send(&big) {
                break err;
            }
        };
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(err.to_string().contains("write_timeout of 30ms"), "{err}");
        // A child's exit, waited for "forever".
        let (mut child, _socket) = SpawnOptions::new()
            .spawn_program(&Program::new("true"))
            .unwrap();
        let status = child.wait_timeout(Duration::MAX).unwrap().unwrap();
        assert!(status.success());
    });
}

#[test]
fn descriptors_a_foreign_sender_attaches_inside_a_frame_stay_with_that_frame() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        let file: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let first = frame(&[1; 1000]);
        (&a).write_all(&first[..500]).unwrap();
        a.send_with_fds(&first[500..], &[file.as_fd()]).unwrap();
        (&a).write_all(&frame(b"second")).unwrap();
        let mut fds = Vec::new();
        assert_eq!(b.recv_with_fds(&mut fds).unwrap(), Some(vec![1; 1000]));
        assert_eq!(fds.len(), 1, "with the frame they arrived in");
        let mut fds = Vec::new();
        assert_eq!(b.recv_with_fds(&mut fds).unwrap(), Some(b"second".to_vec()));
        assert!(fds.is_empty(), "the next frame is not blamed");
    });
}

#[test]
fn the_end_of_the_stream_inside_a_frame_counts_the_bytes_that_came() {
    watchdog(|| {
        for (claimed, sent) in [(100usize, 10usize), (100_000, 50)] {
            let (a, b) = pair(Type::STREAM).unwrap();
            let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
            let mut wire = (claimed as u32).to_be_bytes().to_vec();
            wire.extend(std::iter::repeat_n(7, sent));
            (&a).write_all(&wire).unwrap();
            drop(a);
            let err = b.recv().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
            let expected = format!(
                "{sent} of its {claimed} payload bytes came ({} bytes with its header)",
                sent + 4
            );
            assert!(err.to_string().contains(&expected), "{expected}: {err}");
        }
        // A header cut short, and a line without its newline.
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        (&a).write_all(&[0, 0]).unwrap();
        drop(a);
        let err = b.recv().unwrap_err().to_string();
        assert!(
            err.contains("inside a frame header: 2 of its bytes came"),
            "{err}"
        );
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::with_framing(b, sockpair::Framing::Lines).unwrap();
        (&a).write_all(b"one\ntwo").unwrap();
        drop(a);
        assert_eq!(b.recv().unwrap().unwrap(), b"one");
        let err = b.recv().unwrap_err().to_string();
        assert!(
            err.contains("inside a line: 3 bytes without a newline"),
            "{err}"
        );
    });
}

#[test]
fn a_non_blocking_socket_would_block_and_never_leaves_half_a_frame() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let (mut a, mut b): (Channel<Vec<u8>>, Channel<Vec<u8>>) =
            (Channel::new(a).unwrap(), Channel::new(b).unwrap());
        let err = b.recv().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "not a timeout: {err}");
        // Send until the socket is full, part way through some frame.
        let message: Vec<u8> = (0..10_000).map(|i| (i % 253) as u8).collect();
        let mut sent = 0;
        let err = loop {
            match a.send(&message) {
                Ok(()) => sent += 1,
                Err(err) => break err,
            }
        };
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
        // Drain, finishing what was cut with flush (or the next send), and count.
        let mut got = 0;
        let mut flushed = false;
        loop {
            match b.recv() {
                Ok(Some(m)) => {
                    assert_eq!(m, message, "message {got} whole");
                    got += 1;
                }
                Ok(None) => break,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    if flushed {
                        break;
                    }
                    a.flush().unwrap();
                    flushed = true;
                }
                Err(err) => panic!("{err}"),
            }
        }
        assert!(got == sent || got == sent + 1, "sent {sent}, got {got}");
        a.send(b"after").unwrap();
        assert_eq!(b.recv().unwrap(), Some(b"after".to_vec()), "still in step");
    });
}

#[test]
fn errors_say_each_cause_once() {
    let (mut a, b) = channels::<Vec<u8>>(Type::STREAM);
    drop(b);
    let err = a.send(b"to nobody").unwrap_err();
    let mut chain = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    assert!(chain.len() >= 2, "{chain:?}");
    assert!(!chain[0].contains(&chain[1]), "{chain:?}");
    assert!(chain[1].contains("os error 32"), "{chain:?}");
}

#[test]
fn halves_work_from_two_threads_with_descriptors_both_ways() {
    watchdog(|| {
        for ty in TYPES {
            let (a, b) = pair(ty).unwrap();
            let (mut a_tx, mut a_rx) = Channel::<Vec<u8>>::new(a).unwrap().split();
            let (mut b_tx, mut b_rx) = Channel::<Vec<u8>>::new(b).unwrap().split();
            a_rx.read_timeout(Some(Duration::from_secs(20)));
            let file: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
            let file2 = file.try_clone().unwrap();
            const N: usize = 300;
            let send_a = std::thread::spawn(move || {
                for i in 0..N {
                    a_tx.send_with_fds(&vec![i as u8; i], &[file.as_fd()])
                        .unwrap();
                }
            });
            let send_b = std::thread::spawn(move || {
                for i in 0..N {
                    b_tx.send_with_fds(&vec![i as u8; i * 3], &[file2.as_fd()])
                        .unwrap();
                }
            });
            let recv_b = std::thread::spawn(move || {
                for i in 0..N {
                    let mut fds = Vec::new();
                    assert_eq!(
                        b_rx.recv_with_fds(&mut fds).unwrap(),
                        Some(vec![i as u8; i])
                    );
                    assert_eq!(fds.len(), 1);
                }
            });
            for i in 0..N {
                let mut fds = Vec::new();
                assert_eq!(
                    a_rx.recv_with_fds(&mut fds).unwrap(),
                    Some(vec![i as u8; i * 3]),
                    "{ty:?}"
                );
                assert_eq!(fds.len(), 1);
            }
            send_a.join().unwrap();
            send_b.join().unwrap();
            recv_b.join().unwrap();
        }
    });
}

#[test]
fn the_halves_are_send_and_a_dropped_sender_ends_the_peers_stream_only() {
    fn send<T: Send + 'static>(_: &T) {}
    watchdog(|| {
        for ty in [Type::STREAM, Type::SEQPACKET] {
            let (a, b) = channels::<Vec<u8>>(ty);
            let (tx, mut rx) = a.split();
            send(&tx);
            send(&rx);
            let mut b = b;
            drop(tx);
            assert_eq!(b.recv().unwrap(), None, "{ty:?}: the peer reads the end");
            b.send(b"still heard").unwrap();
            assert_eq!(rx.recv().unwrap(), Some(b"still heard".to_vec()), "{ty:?}");
        }
    });
}

#[test]
fn bytes_and_text_are_sent_borrowed_and_received_by_iterator() {
    watchdog(|| {
        let (mut a, mut b) = channels::<String>(Type::STREAM);
        let text = String::from("owned");
        a.send("borrowed").unwrap();
        a.send(&text).unwrap();
        a.send_batch(["x", "y"]).unwrap();
        drop(a);
        let all: Vec<String> = b.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(all, ["borrowed", "owned", "x", "y"]);
        let (mut a, b) = channels::<Vec<u8>>(Type::SEQPACKET);
        a.send(&b"slice"[..]).unwrap();
        a.send(&b"vec".to_vec()).unwrap();
        let socket = a.into_socket();
        socket.send(b"raw").unwrap();
        drop(socket);
        let mut b = b;
        let all: Vec<Vec<u8>> = b.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(all, [b"slice".to_vec(), b"vec".to_vec(), b"raw".to_vec()]);
    });
}

#[test]
fn a_line_of_many_mebibytes_arrives_whole() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut a: Channel<Vec<u8>> = Channel::with_framing(a, Framing::Lines).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::with_framing(b, Framing::Lines).unwrap();
        let line: Vec<u8> = (0..16usize << 20).map(|i| b'a' + (i % 26) as u8).collect();
        let sent = line.clone();
        let sender = std::thread::spawn(move || a.send(&sent).unwrap());
        assert!(b.recv().unwrap() == Some(line));
        sender.join().unwrap();
    });
}

#[test]
fn large_messages_on_records_travel_in_a_sealed_memfd_that_cannot_be_made_executable() {
    watchdog(|| {
        let (a, b) = pair(Type::SEQPACKET).unwrap();
        let mut a: Channel<Vec<u8>> = Channel::new(a).unwrap();
        // A raw receiver, to look at the descriptor itself.
        let big = vec![9; 4 << 20];
        a.send(&big).unwrap();
        let mut fds = Vec::new();
        assert_eq!(b.recv_with_fds(&mut [0; 16], &mut fds).unwrap(), 0);
        let memfd = fds.pop().expect("the message's memfd");
        let seals = rustix::fs::fcntl_get_seals(&memfd).unwrap();
        // F_SEAL_EXEC (0x20) comes with MFD_NOEXEC_SEAL, Linux 6.3 and later.
        let noexec_supported = rustix::fs::memfd_create(
            "probe",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::NOEXEC_SEAL,
        )
        .is_ok();
        assert_eq!(seals.bits() & 0x20 != 0, noexec_supported, "{seals:?}");
        let mode = rustix::fs::fstat(&memfd).unwrap().st_mode;
        if noexec_supported {
            assert_eq!(mode & 0o111, 0, "not executable: {mode:o}");
        }
        drop(memfd);
        assert!(std::fs::metadata(format!("/proc/self/fd/{}", b.as_raw_fd())).is_ok());
    });
}
