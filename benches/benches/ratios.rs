//! The same comparisons as the `messages` benchmark, measured the way that survives a
//! noisy machine: candidates interleaved round by round, medians of rounds, ratios
//! against raw libc calls made in the same run.
//!
//! `cargo bench -p sockpair-benches --bench ratios`

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use ipc_channel::ipc::IpcOneShotServer;
use sockpair::{Channel, Framing, Postcard, Type};
use sockpair_benches::{
    FRAME_LEN, IpcPair, Request, child, child_with, interleaved, length_frame, libc_recv_exact,
    libc_recvmsg, libc_recvmsg_exact, libc_send_all, pin_to_one_cpu, request, run_child_mode,
};

const ROUNDS: usize = 21;

fn report(title: &str, names: &[&str], times: &[std::time::Duration]) {
    println!("{title}");
    for (name, time) in names.iter().zip(times) {
        println!(
            "  {name:<28} {:>12.3?} {:>7.3}x",
            time,
            time.as_secs_f64() / times[0].as_secs_f64()
        );
    }
}

fn main() {
    if run_child_mode() || std::env::args().any(|arg| arg == "--list") {
        return;
    }
    println!("{ROUNDS} interleaved rounds; medians; ratio against the first row");
    // First, before pinning: parent and child each on a CPU of the scheduler's choosing,
    // as they run in practice. Every later comparison has both on one CPU.
    end_to_end("not pinned");
    match pin_to_one_cpu() {
        Some(cpu) => println!("pinned to CPU {cpu} from here on"),
        None => println!("pinning failed; not pinned"),
    }

    // Round trip of a 64-byte frame through one echo child.
    let (mut echo, socket) = child("echo");
    let fd = socket.as_raw_fd();
    let frame = length_frame(&[7; 64]);
    let payload = vec![7u8; 64];
    let mut back = vec![0; frame.len()];
    let mut std_stream = UnixStream::from(socket.try_clone().unwrap());
    let mut channel: Channel<Vec<u8>> = Channel::new(socket.try_clone().unwrap()).unwrap();
    let mut back2 = back.clone();
    let mut back3 = back.clone();
    let mut back4 = back.clone();
    let times = interleaved(
        ROUNDS,
        2000,
        &mut [
            &mut || {
                libc_send_all(fd, &frame);
                libc_recv_exact(fd, &mut back);
            },
            &mut || {
                channel.send(&payload).unwrap();
                black_box(channel.recv().unwrap().unwrap());
            },
            &mut || {
                (&socket).write_all(&frame).unwrap();
                (&socket).read_exact(&mut back2).unwrap();
            },
            &mut || {
                std_stream.write_all(&frame).unwrap();
                std_stream.read_exact(&mut back3).unwrap();
            },
            &mut || {
                libc_send_all(fd, &frame);
                libc_recvmsg_exact(fd, &mut back4);
            },
        ],
    );
    report(
        "round trip, 64-byte frame",
        &[
            "libc send/recv",
            "sockpair Channel<Vec<u8>>",
            "sockpair Socket",
            "std UnixStream",
            "libc send/recvmsg (fd room)",
        ],
        &times,
    );

    // Typed round trip against ipc-channel: every child decodes the request and sends it
    // back re-encoded, every parent builds a fresh request each time.
    let (server, name) = IpcOneShotServer::<IpcPair>::new().unwrap();
    let (mut ipc, mut ipc_socket) = child("ipc");
    ipc_socket.write_all(name.as_bytes()).unwrap();
    drop(ipc_socket);
    let (_, (to_child, from_child)) = server.accept().unwrap();
    let (mut typed_echo, stream) = child_with("typed-echo", Type::STREAM);
    let mut typed: Channel<Postcard<Request>> = Channel::new(stream).unwrap();
    let (mut typed_echo_seqpacket, seqpacket) = child_with("typed-echo", Type::SEQPACKET);
    let mut typed_seqpacket: Channel<Postcard<Request>> = Channel::new(seqpacket).unwrap();
    // The floors: the same encoded bytes, framed by hand, echoed by a libc child; no
    // serde at either end, so less work than any typed row does.
    let encoded = postcard::to_allocvec(&request()).unwrap();
    let (mut hand_echo, hand_stream) = child("echo");
    let hand_fd = hand_stream.as_raw_fd();
    let hand_frame = length_frame(&encoded);
    let mut hand_back = vec![0; hand_frame.len()];
    let (mut record_echo, hand_seqpacket) = child_with("echo", Type::SEQPACKET);
    let record_fd = hand_seqpacket.as_raw_fd();
    let mut record_back = vec![0; encoded.len() + 64];
    let times = interleaved(
        ROUNDS,
        2000,
        &mut [
            &mut || {
                to_child.send(request()).unwrap();
                black_box(from_child.recv().unwrap());
            },
            &mut || {
                typed.send(&Postcard(request())).unwrap();
                black_box(typed.recv().unwrap().unwrap());
            },
            &mut || {
                typed_seqpacket.send(&Postcard(request())).unwrap();
                black_box(typed_seqpacket.recv().unwrap().unwrap());
            },
            &mut || {
                libc_send_all(hand_fd, &hand_frame);
                libc_recvmsg_exact(hand_fd, &mut hand_back);
            },
            &mut || {
                libc_send_all(record_fd, &encoded);
                assert_eq!(
                    libc_recvmsg(record_fd, &mut record_back),
                    encoded.len() as isize
                );
            },
        ],
    );
    report(
        "round trip, small serde struct",
        &[
            "ipc-channel",
            "sockpair Channel<Postcard<_>>, stream",
            "sockpair Channel<Postcard<_>>, seqpacket",
            "floor: the bytes by hand, stream",
            "floor: the bytes by hand, seqpacket",
        ],
        &times,
    );
    drop((hand_stream, hand_seqpacket));
    hand_echo.wait().unwrap();
    record_echo.wait().unwrap();
    drop((
        to_child,
        from_child,
        typed,
        typed_seqpacket,
        channel,
        std_stream,
        socket,
    ));
    typed_echo.wait().unwrap();
    typed_echo_seqpacket.wait().unwrap();
    ipc.wait().unwrap();
    echo.wait().unwrap();

    // One-way message rate and throughput into a sink child.
    let (mut sink, socket) = child("sink");
    let fd = socket.as_raw_fd();
    let mut channel: Channel<Vec<u8>> = Channel::new(socket.try_clone().unwrap()).unwrap();
    let mut batching: Channel<Vec<u8>> = Channel::new(socket.try_clone().unwrap()).unwrap();
    let sync = |bytes: usize, send: &mut dyn FnMut()| {
        libc_send_all(fd, &(bytes as u64).to_le_bytes());
        send();
        let mut ack = [0];
        libc_recv_exact(fd, &mut ack);
    };
    const FRAMES: usize = 1000;
    let batch = vec![payload.clone(); 100];
    let times = interleaved(
        ROUNDS,
        20,
        &mut [
            &mut || {
                sync(frame.len() * FRAMES, &mut || {
                    for _ in 0..FRAMES {
                        libc_send_all(fd, &frame)
                    }
                })
            },
            &mut || {
                sync(frame.len() * FRAMES, &mut || {
                    for _ in 0..FRAMES {
                        channel.send(&payload).unwrap()
                    }
                })
            },
            &mut || {
                sync(frame.len() * FRAMES, &mut || {
                    for _ in 0..FRAMES / 100 {
                        batching.send_batch(&batch).unwrap()
                    }
                })
            },
            &mut || {
                // What a hand-written sender does when messages vary: write the length
                // and copy the payload into a buffer, then send.
                sync(frame.len() * FRAMES, &mut || {
                    for _ in 0..FRAMES {
                        let mut by_hand = [0u8; 128];
                        by_hand[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
                        by_hand[4..4 + payload.len()].copy_from_slice(black_box(&payload));
                        libc_send_all(fd, &by_hand[..4 + payload.len()])
                    }
                })
            },
        ],
    );
    report(
        "1000 one-way 64-byte frames (time; rate is the inverse)",
        &[
            "libc, one frame per send",
            "sockpair Channel::send",
            "sockpair send_batch(100)",
            "libc, framing each message",
        ],
        &times,
    );
    for size in [64usize << 10, 1 << 20] {
        let big_frame = length_frame(&vec![7; size]);
        let big = vec![7u8; size];
        let times = interleaved(
            ROUNDS,
            if size > 100_000 { 50 } else { 500 },
            &mut [
                &mut || sync(big_frame.len(), &mut || libc_send_all(fd, &big_frame)),
                &mut || sync(big.len() + 4, &mut || channel.send(&big).unwrap()),
            ],
        );
        report(
            &format!(
                "one-way {} KiB message (time; throughput is the inverse)",
                size >> 10
            ),
            &["libc send", "sockpair Channel::send"],
            &times,
        );
    }
    drop((channel, batching, socket));
    sink.wait().unwrap();
    end_to_end("pinned");
    lines_against_length();
}

/// A 64 MiB message as one line (`Framing::Lines`) against one length frame, sent from
/// a thread and received by a `Channel` in this one: the decoder's cost per byte.
fn lines_against_length() {
    let payload = vec![b'x'; 64 << 20];
    let run = |framing: Framing| {
        let (a, b) = sockpair::pair(Type::STREAM).unwrap();
        let mut a: Channel<Vec<u8>> = Channel::with_framing(a, framing).unwrap();
        let mut b: Channel<Vec<u8>> = Channel::with_framing(b, framing).unwrap();
        b.max_frame_len(65 << 20);
        std::thread::scope(|scope| {
            scope.spawn(|| a.send(&payload).unwrap());
            black_box(b.recv().unwrap().unwrap());
        });
    };
    let times = interleaved(
        5,
        1,
        &mut [&mut || run(Framing::Length), &mut || run(Framing::Lines)],
    );
    report(
        "one 64 MiB message through a stream, thread to thread",
        &["length frame", "line"],
        &times,
    );
}

/// The message rate end to end: `FRAME_COUNT` 64-byte messages from the parent, each
/// taken by the child, then one acknowledgement. Raw libc one frame per system call at
/// both ends (`send` of a prebuilt frame, `recv` of exactly one frame) against a
/// `Channel` at both ends.
fn end_to_end(placement: &str) {
    const FRAME_COUNT: u64 = 1000;
    let (mut libc_child, libc_socket) = child("libc-frames");
    let (mut channel_child, channel_socket) = child("channel-frames");
    let fd = libc_socket.as_raw_fd();
    let frame = length_frame(&[7; 64]);
    assert_eq!(frame.len(), FRAME_LEN);
    let payload = vec![7u8; 64];
    let count = FRAME_COUNT.to_le_bytes().to_vec();
    let mut channel: Channel<Vec<u8>> = Channel::new(channel_socket).unwrap();
    let times = interleaved(
        ROUNDS,
        20,
        &mut [
            &mut || {
                libc_send_all(fd, &count);
                for _ in 0..FRAME_COUNT {
                    libc_send_all(fd, &frame);
                }
                libc_recv_exact(fd, &mut [0]);
            },
            &mut || {
                channel.send(&count).unwrap();
                for _ in 0..FRAME_COUNT {
                    channel.send(&payload).unwrap();
                }
                black_box(channel.recv().unwrap().unwrap());
            },
        ],
    );
    report(
        &format!("1000 64-byte messages end to end, {placement} (time; rate is the inverse)"),
        &[
            "libc, one frame per system call",
            "sockpair Channel at both ends",
        ],
        &times,
    );
    drop((libc_socket, channel));
    libc_child.wait().unwrap();
    channel_child.wait().unwrap();
}
