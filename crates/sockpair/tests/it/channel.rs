//! `Channel`: whole messages, with descriptors, over every type; limits and timeouts.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use sockpair::{Channel, ErrorKind, Framing, Type, pair};

use crate::util::{TYPES, inode, listed_address, watchdog};

fn channels<T>(ty: Type) -> (Channel<T>, Channel<T>) {
    let (a, b) = pair(ty).unwrap();
    (Channel::new(a).unwrap(), Channel::new(b).unwrap())
}

#[test]
fn messages_round_trip_on_every_type_and_end_cleanly() {
    watchdog(|| {
        for ty in TYPES {
            let (mut a, mut b) = channels::<Vec<u8>>(ty);
            let messages: [&[u8]; 4] = [b"one", b"", b"three", &[0; 1000]];
            for m in messages {
                a.send(&m.to_vec()).unwrap();
            }
            for m in messages {
                assert_eq!(b.recv().unwrap().as_deref(), Some(m), "{ty:?}");
            }
            if ty != Type::DGRAM {
                drop(a);
                assert!(
                    b.recv().unwrap().is_none(),
                    "{ty:?}: EOF, not an empty message"
                );
            }
        }
    });
}

#[test]
fn an_empty_seqpacket_message_is_not_eof_even_right_before_the_close() {
    watchdog(|| {
        let (a, b) = pair(Type::SEQPACKET).unwrap();
        // Sent before the receiving channel exists, and right before the close.
        a.send(b"").unwrap();
        a.send(b"").unwrap();
        drop(a);
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        assert_eq!(b.recv().unwrap(), Some(vec![]));
        assert_eq!(b.recv().unwrap(), Some(vec![]));
        assert_eq!(b.recv().unwrap(), None);
    });
}

#[test]
fn the_length_format_is_pythons() {
    let (a, b) = pair(Type::STREAM).unwrap();
    let mut a: Channel<Vec<u8>> = Channel::new(a).unwrap();
    a.send(&b"hello".to_vec()).unwrap();
    let mut buf = [0; 16];
    let n = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"\0\0\0\x05hello");
}

/// A channel turns options on to tell an empty record from the end of the stream; none
/// of them may give its socket a name (`SO_PASSCRED` would: the kernel autobinds a
/// sender to an abstract address), so the pair stays invisible to other processes.
#[test]
fn channels_stay_anonymous_after_messages_both_ways() {
    watchdog(|| {
        for ty in TYPES {
            let (a, b) = pair(ty).unwrap();
            let (a_inode, b_inode) = (inode(&a), inode(&b));
            let (mut a, mut b): (Channel<Vec<u8>>, Channel<Vec<u8>>) =
                (Channel::new(a).unwrap(), Channel::new(b).unwrap());
            for _ in 0..2 {
                a.send(&b"x".to_vec()).unwrap();
                a.send(&Vec::new()).unwrap();
                assert_eq!(b.recv().unwrap(), Some(b"x".to_vec()), "{ty:?}");
                assert_eq!(b.recv().unwrap(), Some(Vec::new()), "{ty:?}");
                std::mem::swap(&mut a, &mut b);
            }
            for channel in [&a, &b] {
                let socket = channel.socket();
                assert!([a_inode, b_inode].contains(&inode(socket)));
                assert_eq!(listed_address(socket), None, "{ty:?}");
                let name = rustix::net::getsockname(socket).unwrap();
                assert_eq!(name.addr_len() as usize, size_of::<libc::sa_family_t>());
            }
        }
    });
}

#[test]
fn eof_inside_a_frame_is_an_error() {
    watchdog(|| {
        for partial in [&b"\0\0"[..], b"\0\0\0\x05hel"] {
            let (a, b) = pair(Type::STREAM).unwrap();
            (&a).write_all(partial).unwrap();
            drop(a);
            let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
            assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::UnexpectedEof);
        }
    });
}

#[test]
fn a_frame_over_the_limit_is_refused_and_the_stream_channel_stops() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        // Announces 1 GiB: refused from the header alone, nothing allocated.
        (&a).write_all(&(1u32 << 30).to_be_bytes()).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        b.max_frame_len(1 << 20);
        let err = b.recv().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
        assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::Unusable);

        let (a, b) = pair(Type::STREAM).unwrap();
        (&a).write_all(&[0xff, 0xff, 0xff, 0xfe]).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::BadHeader);
        assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::Unusable);
    });
}

#[test]
fn a_record_over_the_limit_is_dropped_and_the_next_one_arrives() {
    watchdog(|| {
        for ty in [Type::SEQPACKET, Type::DGRAM] {
            let (mut a, mut b) = channels::<Vec<u8>>(ty);
            b.max_frame_len(10);
            a.send(&vec![1; 11]).unwrap();
            a.send(&vec![2; 10]).unwrap();
            assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::TooLarge, "{ty:?}");
            assert_eq!(b.recv().unwrap(), Some(vec![2; 10]), "{ty:?}");
        }
    });
}

#[test]
fn descriptors_travel_with_their_message_in_order_with_many_in_flight() {
    watchdog(|| {
        // Large messages split across reads; small ones, read late, merge into one read;
        // runs of one length, read straight into buffers of their own, broken now and
        // then by another length.
        let shapes = ["varied", "small", "steady"];
        for (ty, shape) in TYPES
            .into_iter()
            .flat_map(|ty| shapes.map(|shape| (ty, shape)))
        {
            let small = shape == "small";
            let (mut a, mut b) = channels::<Vec<u8>>(ty);
            b.accept_fds(true).unwrap();
            let files: Vec<OwnedFd> = (0..6)
                .map(|_| rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap())
                .collect();
            let expected_inodes: Vec<u64> = files.iter().map(inode).collect();
            // Message i carries i % 4 descriptors and a size that makes stream reads split
            // messages at arbitrary places. The sender runs in its own thread.
            let count = 60;
            let limit = match (small, ty) {
                (true, _) => 300,
                (false, Type::STREAM) => 150_000,
                (false, _) => 60_000,
            };
            let sizes: Vec<usize> = match shape {
                "steady" => (0..count)
                    .map(|i| match i {
                        _ if i % 13 == 12 => 70_000.min(limit),
                        _ if i % 9 == 8 => 100,
                        _ => 4096,
                    })
                    .collect(),
                _ => (0..count).map(|i| (i * 7919) % limit).collect(),
            };
            let sizes2 = sizes.clone();
            let sender = std::thread::spawn(move || {
                for (i, size) in sizes2.into_iter().enumerate() {
                    let fds: Vec<_> = files
                        .iter()
                        .cycle()
                        .skip(i)
                        .take(i % 4)
                        .map(|f| f.as_fd())
                        .collect();
                    a.send_with_fds(&vec![i as u8; size], &fds).unwrap();
                }
            });
            for (i, size) in sizes.into_iter().enumerate() {
                if shape != "varied" && i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(5)); // let messages pile up
                }
                let mut fds = Vec::new();
                let message = b.recv_with_fds(&mut fds).unwrap().unwrap();
                assert_eq!(message, vec![i as u8; size], "{ty:?} message {i}");
                let got: Vec<u64> = fds.iter().map(inode).collect();
                let want: Vec<u64> = expected_inodes
                    .iter()
                    .cycle()
                    .skip(i)
                    .take(i % 4)
                    .copied()
                    .collect();
                assert_eq!(got, want, "{ty:?} message {i}");
                for fd in &fds {
                    assert!(crate::util::cloexec_nonblock(fd).0);
                }
            }
            sender.join().unwrap();
        }
    });
}

#[test]
fn recv_closes_the_descriptors_it_was_not_asked_for() {
    watchdog(|| {
        let (mut a, mut b) = channels::<Vec<u8>>(Type::STREAM);
        b.accept_fds(true).unwrap();
        let (mut pipe_r, pipe_w) = std::io::pipe().unwrap();
        a.send_with_fds(&b"x".to_vec(), &[pipe_w.as_fd()]).unwrap();
        drop(pipe_w);
        assert_eq!(b.recv().unwrap(), Some(b"x".to_vec()));
        let mut rest = Vec::new();
        use std::io::Read;
        assert_eq!(
            pipe_r.read_to_end(&mut rest).unwrap(),
            0,
            "EOF: the received copy was closed"
        );
    });
}

#[test]
fn sixty_four_mebibytes_on_every_type() {
    watchdog(|| {
        let big: Vec<u8> = (0..64usize << 20).map(|i| (i % 251) as u8).collect();
        for ty in TYPES {
            let (mut a, mut b) = channels::<Vec<u8>>(ty);
            let sent = big.clone();
            let sender = std::thread::spawn(move || a.send(&sent).map(|()| a));
            let got = b.recv().unwrap().unwrap();
            assert!(got == big, "{ty:?}: {} bytes back", got.len());
            let mut a = sender.join().unwrap().unwrap();
            a.send(&b"after".to_vec()).unwrap();
            assert_eq!(b.recv().unwrap(), Some(b"after".to_vec()), "{ty:?}");
        }
    });
}

#[test]
fn a_silent_peer_times_out_and_a_late_frame_still_arrives_whole() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
        b.read_timeout(Some(Duration::from_millis(100)));
        let start = Instant::now();
        assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::TimedOut);
        assert!(
            start.elapsed() >= Duration::from_millis(100)
                && start.elapsed() < Duration::from_secs(5)
        );
        // Half a frame, a timeout, then the rest: the message arrives whole.
        (&a).write_all(b"\0\0\0\x06hal").unwrap();
        assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::TimedOut);
        (&a).write_all(b"f!!").unwrap();
        assert_eq!(b.recv().unwrap(), Some(b"half!!".to_vec()));
    });
}

/// After a send, a stream channel waits for the reply in `poll` (not in `recv`); a reply
/// that comes late and in pieces, or the peer's end, still arrives as it should, with and
/// without a read timeout.
#[test]
fn a_reply_after_a_send_arrives_late_and_in_pieces() {
    watchdog(|| {
        for timeout in [None, Some(Duration::from_secs(20))] {
            let (a, b) = pair(Type::STREAM).unwrap();
            let mut a: Channel<Vec<u8>> = Channel::new(a).unwrap();
            a.read_timeout(timeout);
            let peer = std::thread::spawn(move || {
                let mut request = [0; 11];
                std::io::Read::read_exact(&mut &b, &mut request).unwrap();
                assert_eq!(&request, b"\0\0\0\x07request");
                for piece in [&b"\0\0"[..], b"\0\x05re", b"ply"] {
                    std::thread::sleep(Duration::from_millis(30));
                    (&b).write_all(piece).unwrap();
                }
                // Read the second request before closing: closing with it unread would
                // make our end's next read fail once with ECONNRESET instead.
                std::io::Read::read_exact(&mut &b, &mut request).unwrap();
            });
            a.send(&b"request".to_vec()).unwrap();
            assert_eq!(a.recv().unwrap(), Some(b"reply".to_vec()), "{timeout:?}");
            a.send(&b"request".to_vec()).unwrap();
            peer.join().unwrap();
            assert_eq!(a.recv().unwrap(), None, "{timeout:?}");
        }
    });
}

#[test]
fn a_peer_that_stops_reading_costs_a_timeout_not_a_hang() {
    watchdog(|| {
        for ty in TYPES {
            let (a, _b_never_reads) = pair(ty).unwrap();
            let mut a: Channel<Vec<u8>> = Channel::new(a).unwrap();
            a.write_timeout(Some(Duration::from_millis(200)));
            let start = Instant::now();
            let message = vec![0; 100_000];
            let err = loop {
                if let Err(err) = a.send(&message) {
                    break err;
                }
            };
            assert_eq!(err.kind(), ErrorKind::TimedOut, "{ty:?}: {err}");
            assert!(start.elapsed() < Duration::from_secs(10));
            if ty == Type::STREAM {
                // Part of a frame may have gone out: the channel says so rather than
                // sending the peer a stream it cannot parse.
                let next = a.send(&b"x".to_vec());
                assert!(matches!(
                    next.map_err(|e| e.kind()),
                    Err(ErrorKind::Unusable) | Err(ErrorKind::TimedOut)
                ));
            }
        }
    });
}

/// A frame far larger than the socket's buffer, sent with a zero write timeout: the send
/// writes what fits, each flush writes on from where the last stopped, and the peer reads
/// the frame whole, every byte in place, then the next one.
#[test]
fn a_large_frame_sent_in_many_parts_arrives_whole_and_in_order() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let message: Vec<u8> = (0..24 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expected = message.clone();
        let reader = std::thread::spawn(move || {
            let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
            b.max_frame_len(usize::MAX);
            let first = b.recv().unwrap().unwrap();
            let second = b.recv().unwrap().unwrap();
            (first == expected, second)
        });
        let mut a: Channel<Vec<u8>> = Channel::new(a).unwrap();
        a.write_timeout(Some(Duration::ZERO));
        let mut parts = 1;
        let mut sent = a.send(&message);
        while let Err(err) = sent {
            assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
            std::thread::sleep(Duration::from_micros(100));
            parts += 1;
            sent = a.flush();
        }
        a.write_timeout(None);
        a.send(&b"next".to_vec()).unwrap();
        let (whole, second) = reader.join().unwrap();
        assert!(whole, "the large frame arrived changed");
        assert_eq!(second, b"next");
        assert!(parts > 10, "written in {parts} parts: the test needs many");
    });
}

#[test]
fn request_reply_with_a_child_survives_its_death() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut a: Channel<String> = Channel::new(a).unwrap();
        drop(b); // the peer dies
        let err = a.send("request").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(
            std::io::Error::from(err).kind(),
            std::io::ErrorKind::BrokenPipe
        );
        assert!(a.recv().unwrap().is_none());
    });
}

#[test]
fn lines_framing_and_its_limits() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut a: Channel<String> = Channel::with_framing(a, Framing::Lines).unwrap();
        let mut b: Channel<String> = Channel::with_framing(b, Framing::Lines).unwrap();
        a.send("{\"n\":1}").unwrap();
        assert_eq!(a.send("two\nlines").unwrap_err().kind(), ErrorKind::Encode);
        assert_eq!(b.recv().unwrap(), Some("{\"n\":1}".into()));
        b.max_frame_len(8);
        a.send("123456789").unwrap();
        assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::TooLarge);
    });
}

#[test]
fn framings_that_do_not_fit_the_socket_are_refused() {
    let (a, b) = pair(Type::SEQPACKET).unwrap();
    let err = Channel::<Vec<u8>>::with_framing(a, Framing::Length).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    let ok: Channel<Vec<u8>> = Channel::new(b).unwrap();
    assert_eq!(ok.framing(), None, "one message per record");
    let (c, _d) = pair(Type::STREAM).unwrap();
    let ok: Channel<Vec<u8>> = Channel::with_framing(c, Framing::Lines).unwrap();
    assert_eq!(ok.framing(), Some(Framing::Lines));
}

#[test]
fn strings_must_be_utf8() {
    let (a, b) = pair(Type::STREAM).unwrap();
    let mut a: Channel<Vec<u8>> = Channel::new(a).unwrap();
    let mut b: Channel<String> = Channel::new(b).unwrap();
    a.send(&vec![0xff, 0xfe]).unwrap();
    assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::Decode);
}

#[test]
#[cfg(feature = "serde")]
fn typed_messages_with_serde() {
    use serde::{Deserialize, Serialize};
    use sockpair::{Json, Postcard};
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: i32,
        label: String,
    }
    let p = Point {
        x: -3,
        label: "here".into(),
    };
    let (a, b) = pair(Type::STREAM).unwrap();
    let (mut a, mut b): (Channel<Postcard<Point>>, Channel<Postcard<Point>>) =
        (Channel::new(a).unwrap(), Channel::new(b).unwrap());
    a.send(&Postcard(Point {
        x: -3,
        label: "here".into(),
    }))
    .unwrap();
    assert_eq!(
        b.recv().unwrap(),
        Some(Point {
            x: -3,
            label: "here".into()
        })
    );

    let (c, d) = pair(Type::SEQPACKET).unwrap();
    let mut c: Channel<Json<Point>> = Channel::new(c).unwrap();
    c.send(&Json(p)).unwrap();
    let mut buf = [0; 64];
    let n = d.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], br#"{"x":-3,"label":"here"}"#);
}

/// Small messages are decoded from the channel's receive buffer, large ones from a buffer
/// of their own (or a memfd on records): typed values come back whole either way, mixed.
#[test]
#[cfg(feature = "serde")]
fn typed_messages_small_and_large_mixed_on_every_type() {
    use sockpair::Postcard;
    watchdog(|| {
        for ty in TYPES {
            let (mut a, mut b) = channels::<Postcard<(u32, Vec<u8>)>>(ty);
            let sizes = [0, 3, 100, 300_000, 5, 2 << 20, 0, 17];
            let receiver = std::thread::spawn(move || sizes.map(|_| b.recv().unwrap().unwrap()));
            for (n, size) in sizes.iter().enumerate() {
                a.send(&(n as u32, vec![n as u8; *size])).unwrap();
            }
            for (n, (index, bytes)) in receiver.join().unwrap().into_iter().enumerate() {
                assert_eq!(index, n as u32, "{ty:?}");
                assert_eq!(bytes, vec![n as u8; sizes[n]], "{ty:?} message {n}");
            }
        }
    })
}

#[test]
fn a_batch_arrives_as_separate_messages_in_order() {
    watchdog(|| {
        for ty in TYPES {
            let (mut a, mut b) = channels::<String>(ty);
            let batch: Vec<String> = (0..500).map(|i| format!("message {i}")).collect();
            let sent = batch.clone();
            // More than the socket holds (a datagram queue takes 10 by default): send
            // from a thread while this one receives.
            let sender = std::thread::spawn(move || {
                a.send_batch(&sent).unwrap();
                a.send_batch::<str>([]).unwrap();
            });
            for expected in &batch {
                assert_eq!(b.recv().unwrap().as_ref(), Some(expected), "{ty:?}");
            }
            sender.join().unwrap();
        }
        let (a, _b) = pair(Type::STREAM).unwrap();
        let mut a: Channel<String> = Channel::with_framing(a, Framing::Lines).unwrap();
        let err = a.send_batch(["fine", "not\nfine"]).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Encode,
            "one bad message: none is sent"
        );
    });
}

#[test]
fn a_channel_that_refuses_descriptors_says_so_and_loses_nothing() {
    watchdog(|| {
        use std::io::Read;
        // A stream: where the kernel can refuse them (SO_PASSRIGHTS, Linux 6.16+), the
        // sender knows at once and nothing of the message goes out; before that, the
        // receiver closes them, says so, then delivers the message.
        let kernel_refuses = crate::util::kernel_has_pass_rights();
        let (mut a, mut b) = channels::<Vec<u8>>(Type::STREAM);
        b.accept_fds(false).unwrap();
        let (mut pipe_r, pipe_w) = std::io::pipe().unwrap();
        let sent = a.send_with_fds(&b"with fd".to_vec(), &[pipe_w.as_fd()]);
        if kernel_refuses {
            let err = sent.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Fds, "{err}");
            assert!(err.to_string().contains("accept_fds"), "{err}");
        } else {
            sent.unwrap();
            assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::Fds);
            assert_eq!(b.recv().unwrap(), Some(b"with fd".to_vec()));
        }
        a.send(&b"plain".to_vec()).unwrap();
        assert_eq!(
            b.recv().unwrap(),
            Some(b"plain".to_vec()),
            "the refused message never went out, or came once"
        );
        b.accept_fds(true).unwrap();
        a.send_with_fds(&b"with fd".to_vec(), &[pipe_w.as_fd()])
            .unwrap();
        let mut fds = Vec::new();
        assert_eq!(
            b.recv_with_fds(&mut fds).unwrap(),
            Some(b"with fd".to_vec())
        );
        assert_eq!(fds.len(), 1);
        drop((fds, pipe_w));
        assert_eq!(
            pipe_r.read_to_end(&mut Vec::new()).unwrap(),
            0,
            "every copy was closed"
        );

        // Records keep the kernel's door open (large messages need it): the receiver
        // closes what it did not ask for, says so, then delivers the message.
        for ty in [Type::SEQPACKET, Type::DGRAM] {
            let (mut a, mut b) = channels::<Vec<u8>>(ty);
            b.accept_fds(false).unwrap();
            let (mut pipe_r, pipe_w) = std::io::pipe().unwrap();
            a.send_with_fds(&b"with fd".to_vec(), &[pipe_w.as_fd()])
                .unwrap();
            drop(pipe_w);
            assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::Fds, "{ty:?}");
            assert_eq!(
                b.recv().unwrap(),
                Some(b"with fd".to_vec()),
                "{ty:?}: the message still comes"
            );
            assert_eq!(
                pipe_r.read_to_end(&mut Vec::new()).unwrap(),
                0,
                "{ty:?}: the refused copy was closed"
            );
        }
    });
}

#[test]
fn acceptance_belongs_to_the_socket_not_to_a_channel_on_it() {
    watchdog(|| {
        for ty in TYPES {
            let (a, b) = pair(ty).unwrap();
            let mut a: Channel<Vec<u8>> = Channel::new(a).unwrap();
            // A new pair accepts; a second channel on a copy of the end changes nothing.
            let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
            let _second: Channel<Vec<u8>> = Channel::new(b.socket().try_clone().unwrap()).unwrap();
            let (_r, w) = std::io::pipe().unwrap();
            a.send_with_fds(&b"one".to_vec(), &[w.as_fd()]).unwrap();
            let mut fds = Vec::new();
            assert_eq!(b.recv_with_fds(&mut fds).unwrap(), Some(b"one".to_vec()));
            assert_eq!(fds.len(), 1, "{ty:?}");
        }
    });
}

/// A typed channel sends a `&T` (no clone, no wrapper) and receives a `T` (no `.0`), on
/// every socket type; a frame that is not a `T` says why in serde's own words.
#[test]
#[cfg(feature = "serde")]
fn typed_channels_send_a_reference_and_receive_the_value() {
    use serde::{Deserialize, Serialize};
    use sockpair::{Json, Postcard};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Request {
        id: u32,
        path: String,
    }

    watchdog(|| {
        let request = Request {
            id: 7,
            path: "/etc/hosts".into(),
        };
        for ty in TYPES {
            let (mut a, mut b) = channels::<Json<Request>>(ty);
            a.send(&request).unwrap();
            a.send(&Json(request.clone())).unwrap(); // the wrapper still works
            let got: Request = b.recv().unwrap().unwrap();
            assert_eq!(got, request, "{ty:?}");
            assert_eq!(b.recv().unwrap(), Some(request.clone()), "{ty:?}");
            let (mut a, mut b) = channels::<Postcard<Request>>(ty);
            a.send(&request).unwrap();
            assert_eq!(b.recv().unwrap(), Some(request.clone()), "{ty:?}");
            let (mut tx, mut rx) = channels::<Postcard<Request>>(ty);
            tx.send_batch([&request, &request]).unwrap();
            let both: Vec<Request> = [rx.recv(), rx.recv()]
                .into_iter()
                .map(|got| got.unwrap().unwrap())
                .collect();
            assert_eq!(both, [request.clone(), request.clone()], "{ty:?}");

            // Decode errors carry the decoder's own words in Display.
            let (a, b) = pair(ty).unwrap();
            let mut raw: Channel<Vec<u8>> = Channel::new(a).unwrap();
            let mut b: Channel<Json<Request>> = Channel::new(b).unwrap();
            raw.send(br#"{"path":"/"}"#).unwrap();
            let err = b.recv().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode);
            assert!(err.to_string().contains("missing field `id`"), "{err}");
            raw.send(b"\xff").unwrap();
            let err = b.recv().unwrap_err();
            assert!(err.to_string().contains("expected value"), "{err}");
            let (a, b) = pair(ty).unwrap();
            let mut raw: Channel<Vec<u8>> = Channel::new(a).unwrap();
            let mut b: Channel<Postcard<Request>> = Channel::new(b).unwrap();
            raw.send(&[7]).unwrap(); // an id, then nothing for the path
            let err = b.recv().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode);
            assert!(err.to_string().contains("Hit the end of buffer"), "{err}");
            let (d, e) = pair(ty).unwrap();
            let mut d: Channel<Vec<u8>> = Channel::new(d).unwrap();
            let mut e: Channel<String> = Channel::new(e).unwrap();
            d.send(b"\xff\xfe").unwrap();
            let err = e.recv().unwrap_err();
            assert!(err.to_string().contains("invalid utf-8"), "{err}");
        }
    })
}
