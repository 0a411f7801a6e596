//! Sending and receiving: boundaries, both directions, EOF, EPIPE, half-close.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::thread;

use sockpair::{Type, pair};

use crate::util::{
    TYPES, cloexec_nonblock, default_sigpipe, in_fresh_process, sigpipe_ignored, watchdog,
};

#[test]
fn datagram_and_seqpacket_keep_message_boundaries() {
    watchdog(|| {
        for ty in [Type::DGRAM, Type::SEQPACKET] {
            let (a, b) = pair(ty).unwrap();
            let messages: [&[u8]; 4] = [b"a", b"bc", b"", b"def"];
            for m in messages {
                assert_eq!(a.send(m).unwrap(), m.len());
            }
            let mut buf = [0; 64];
            for m in messages {
                let n = b.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], m, "{ty:?}");
            }
        }
    });
}

#[test]
fn a_short_buffer_truncates_one_record_and_keeps_the_next() {
    watchdog(|| {
        for ty in [Type::DGRAM, Type::SEQPACKET] {
            let (a, b) = pair(ty).unwrap();
            a.send(b"0123456789").unwrap();
            a.send(b"next").unwrap();
            let mut small = [0; 4];
            assert_eq!(b.recv(&mut small).unwrap(), 4);
            assert_eq!(&small, b"0123");
            let mut buf = [0; 16];
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"next", "{ty:?}");
        }
    });
}

#[test]
fn a_stream_pair_carries_a_mebibyte_both_ways_at_once() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expected = data.clone();
        // Both ends write more than the socket buffer holds, so each side must read
        // while the other writes: a writer thread per end.
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        let data2 = data.clone();
        let wa = thread::spawn(move || (&a2).write_all(&data));
        let wb = thread::spawn(move || (&b2).write_all(&data2));
        for mut end in [&a, &b] {
            let mut got = vec![0; expected.len()];
            end.read_exact(&mut got).unwrap();
            assert!(got == expected);
        }
        wa.join().unwrap().unwrap();
        wb.join().unwrap().unwrap();
    });
}

#[test]
fn dropping_the_peer_gives_eof() {
    watchdog(|| {
        for ty in [Type::STREAM, Type::SEQPACKET] {
            let (a, b) = pair(ty).unwrap();
            a.send(b"last").unwrap();
            drop(a);
            let mut buf = [0; 16];
            assert_eq!(b.recv(&mut buf).unwrap(), 4, "{ty:?}: queued data first");
            assert_eq!(b.recv(&mut buf).unwrap(), 0, "{ty:?}: then EOF");
            assert_eq!(b.recv(&mut buf).unwrap(), 0, "{ty:?}: EOF stays");
        }
    });
}

#[test]
fn closing_with_unread_data_resets_the_survivor_once() {
    watchdog(|| {
        for ty in [Type::STREAM, Type::SEQPACKET] {
            let (a, b) = pair(ty).unwrap();
            b.send(b"never read by a").unwrap();
            drop(a);
            let mut buf = [0; 16];
            let err = b.recv(&mut buf).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{ty:?}");
            assert_eq!(b.recv(&mut buf).unwrap(), 0, "{ty:?}: EOF after the reset");
        }
    });
}

#[test]
fn a_datagram_pair_never_sees_eof_only_refused_sends() {
    let (a, b) = pair(Type::DGRAM).unwrap();
    drop(a);
    b.set_nonblocking(true).unwrap();
    let mut buf = [0; 16];
    assert_eq!(b.recv(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(
        b.send(b"x").unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}

#[test]
fn sending_to_a_closed_peer_is_epipe_not_sigpipe() {
    in_fresh_process("io::epipe_inner");
}

#[test]
#[ignore = "run alone in a fresh process by sending_to_a_closed_peer_is_epipe_not_sigpipe"]
fn epipe_inner() {
    default_sigpipe();
    assert!(
        !sigpipe_ignored(),
        "SIGPIPE must be at its default action: a raise would kill us"
    );
    for ty in [Type::STREAM, Type::SEQPACKET] {
        let (a, b) = pair(ty).unwrap();
        drop(b);
        assert_eq!(
            a.send(b"x").unwrap_err().kind(),
            ErrorKind::BrokenPipe,
            "{ty:?} send"
        );
        assert_eq!(
            (&a).write(b"x").unwrap_err().kind(),
            ErrorKind::BrokenPipe,
            "{ty:?} write"
        );
        let bufs = [std::io::IoSlice::new(b"x"), std::io::IoSlice::new(b"y")];
        assert_eq!(
            (&a).write_vectored(&bufs).unwrap_err().kind(),
            ErrorKind::BrokenPipe
        );
        let fds = [std::os::fd::AsFd::as_fd(&a)];
        assert_eq!(
            a.send_with_fds(b"x", &fds).unwrap_err().kind(),
            ErrorKind::BrokenPipe
        );
    }
}

#[test]
fn half_close_gives_the_peer_eof_and_keeps_the_other_direction() {
    watchdog(|| {
        for ty in [Type::STREAM, Type::SEQPACKET] {
            let (a, b) = pair(ty).unwrap();
            a.send(b"before").unwrap();
            a.shutdown(Shutdown::Write).unwrap();
            let mut buf = [0; 16];
            assert_eq!(b.recv(&mut buf).unwrap(), 6);
            assert_eq!(
                b.recv(&mut buf).unwrap(),
                0,
                "{ty:?}: EOF after the half-close"
            );
            assert_eq!(a.send(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
            b.send(b"reply").unwrap();
            let n = a.recv(&mut buf).unwrap();
            assert_eq!(
                &buf[..n],
                b"reply",
                "{ty:?}: the other direction still works"
            );
        }
    });
}

#[test]
fn nonblocking_mode_can_be_switched_per_end() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        a.set_nonblocking(true).unwrap();
        assert_eq!(cloexec_nonblock(&a), (true, true));
        assert_eq!(
            cloexec_nonblock(&b),
            (true, false),
            "the other end is its own description"
        );
        let mut buf = [0; 4];
        assert_eq!(a.recv(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
        b.send(b"ok").unwrap();
        assert_eq!(a.recv(&mut buf).unwrap(), 2);
        a.set_nonblocking(false).unwrap();
        assert_eq!(cloexec_nonblock(&a), (true, false));
    });
}

#[test]
fn try_clone_is_the_same_end_and_close_on_exec() {
    watchdog(|| {
        for ty in TYPES {
            let (a, b) = pair(ty).unwrap();
            let a2 = a.try_clone().unwrap();
            assert_eq!(cloexec_nonblock(&a2), (true, false));
            assert_eq!(a2.ty().unwrap(), ty);
            a2.send(b"via clone").unwrap();
            let mut buf = [0; 16];
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"via clone");
            // The clone keeps the end alive: dropping the original is not the peer's EOF.
            drop(a);
            b.send(b"still there").unwrap();
            let n = a2.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"still there");
        }
    });
}

#[test]
fn read_and_write_through_shared_references_from_two_threads() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let b = std::sync::Arc::new(b);
        let reader = {
            let b = b.clone();
            thread::spawn(move || {
                let mut text = String::new();
                (&*b).read_to_string(&mut text).unwrap();
                text
            })
        };
        (&*b).write_all(b"from b").unwrap();
        let mut buf = [0; 6];
        (&a).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"from b");
        (&a).write_all(b"from a").unwrap();
        drop(a);
        assert_eq!(reader.join().unwrap(), "from a");
    });
}

#[test]
fn write_vectored_is_one_message() {
    watchdog(|| {
        let (mut a, b) = pair(Type::SEQPACKET).unwrap();
        let bufs = [
            std::io::IoSlice::new(b"head"),
            std::io::IoSlice::new(b"+body"),
        ];
        assert_eq!(a.write_vectored(&bufs).unwrap(), 9);
        let mut buf = [0; 16];
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"head+body");
    });
}
