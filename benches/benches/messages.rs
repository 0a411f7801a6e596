//! Messages between a parent and a child process: sockpair's `Channel` beside the same
//! work done with raw libc calls, std's `UnixStream`, and ipc-channel.
//!
//! `cargo bench -p sockpair-benches --bench messages`
//!
//! The child is this binary re-executed (its end handed over with `SpawnOptions`); both
//! processes are pinned to one CPU. Groups:
//! - `rtt_64B`: round trip of a 64-byte frame (a 4-byte length + 64 bytes, echoed).
//! - `rtt_struct`: round trip of a small serde struct, decoded and re-encoded by the child
//!   (postcard over a stream and a seqpacket pair; ipc-channel over its own).
//! - `rate_64B`: one-way frames of 64 bytes, 1000 per iteration, then an acknowledgement.
//! - `throughput`: one-way 64 KiB and 1 MiB messages.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ipc_channel::ipc::IpcOneShotServer;
use sockpair::{Channel, Postcard, Socket, Type};
use sockpair_benches::{
    IpcPair, child, child_with, length_frame, libc_recv_exact, libc_send_all, pin_to_one_cpu,
    request, run_child_mode,
};

fn main() {
    if run_child_mode() {
        return;
    }
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    if let Some(cpu) = pin_to_one_cpu() {
        eprintln!("parent and children pinned to CPU {cpu}");
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

fn rtt_64(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtt_64B");
    let frame = length_frame(&[7; 64]);
    let payload = vec![7u8; 64];

    let (mut child_a, socket) = child("echo");
    let fd = socket.as_raw_fd();
    let mut back = vec![0; frame.len()];
    group.bench_function("libc", |b| {
        b.iter(|| {
            libc_send_all(fd, &frame);
            libc_recv_exact(fd, &mut back);
        })
    });
    let mut std_stream = UnixStream::from(socket.try_clone().unwrap());
    group.bench_function("std_unixstream", |b| {
        b.iter(|| {
            std_stream.write_all(&frame).unwrap();
            std_stream.read_exact(&mut back).unwrap();
        })
    });
    let mut channel: Channel<Vec<u8>> = Channel::new(socket).unwrap();
    group.bench_function("sockpair_channel", |b| {
        b.iter(|| {
            channel.send(&payload).unwrap();
            black_box(channel.recv().unwrap().unwrap());
        })
    });
    drop((channel, std_stream));
    child_a.wait().unwrap();
    group.finish();
}

fn rtt_struct(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtt_struct");
    for (name, ty) in [
        ("sockpair_postcard_stream", Type::STREAM),
        ("sockpair_postcard_seqpacket", Type::SEQPACKET),
    ] {
        let (mut echo, socket) = child_with("typed-echo", ty);
        let mut channel: Channel<Postcard<sockpair_benches::Request>> =
            Channel::new(socket).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                channel.send(&Postcard(request())).unwrap();
                black_box(channel.recv().unwrap().unwrap());
            })
        });
        drop(channel);
        echo.wait().unwrap();
    }

    let (server, name) = IpcOneShotServer::<IpcPair>::new().unwrap();
    let (mut ipc, mut socket) = child("ipc");
    socket.write_all(name.as_bytes()).unwrap();
    drop(socket);
    let (_, (to_child, from_child)) = server.accept().unwrap();
    group.bench_function("ipc_channel", |b| {
        b.iter(|| {
            to_child.send(request()).unwrap();
            black_box(from_child.recv().unwrap());
        })
    });
    drop((to_child, from_child));
    ipc.wait().unwrap();
    group.finish();
}

/// Times `iters` rounds of: announce `bytes`, run `send`, wait for the sink's ack.
fn timed_sink(socket: &Socket, iters: u64, bytes: usize, mut send: impl FnMut()) -> Duration {
    let fd = socket.as_raw_fd();
    let start = Instant::now();
    for _ in 0..iters {
        libc_send_all(fd, &(bytes as u64).to_le_bytes());
        send();
        let mut ack = [0];
        libc_recv_exact(fd, &mut ack);
    }
    start.elapsed()
}

fn rate_64(c: &mut Criterion) {
    const FRAMES: usize = 1000;
    let mut group = c.benchmark_group("rate_64B");
    group.throughput(Throughput::Elements(FRAMES as u64));
    let frame = length_frame(&[7; 64]);
    let total = frame.len() * FRAMES;
    let (mut sink, socket) = child("sink");
    let fd = socket.as_raw_fd();
    group.bench_function("libc_one_frame_per_send", |b| {
        b.iter_custom(|iters| {
            timed_sink(&socket, iters, total, || {
                for _ in 0..FRAMES {
                    libc_send_all(fd, &frame);
                }
            })
        })
    });
    let mut channel: Channel<Vec<u8>> = Channel::new(socket.try_clone().unwrap()).unwrap();
    let payload = vec![7u8; 64];
    group.bench_function("sockpair_send", |b| {
        b.iter_custom(|iters| {
            timed_sink(&socket, iters, total, || {
                for _ in 0..FRAMES {
                    channel.send(&payload).unwrap();
                }
            })
        })
    });
    let batch: Vec<Vec<u8>> = vec![payload.clone(); 100];
    group.bench_function("sockpair_send_batch_100", |b| {
        b.iter_custom(|iters| {
            timed_sink(&socket, iters, total, || {
                for _ in 0..FRAMES / 100 {
                    channel.send_batch(&batch).unwrap();
                }
            })
        })
    });
    drop((channel, socket));
    sink.wait().unwrap();
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput");
    let (mut sink, socket) = child("sink");
    let fd = socket.as_raw_fd();
    let mut channel: Channel<Vec<u8>> = Channel::new(socket.try_clone().unwrap()).unwrap();
    for size in [64 << 10, 1 << 20] {
        group.throughput(Throughput::Bytes(size as u64));
        let frame = length_frame(&vec![7; size]);
        group.bench_with_input(BenchmarkId::new("libc", size), &frame, |b, frame| {
            b.iter_custom(|iters| {
                timed_sink(&socket, iters, frame.len(), || libc_send_all(fd, frame))
            })
        });
        let payload = vec![7u8; size];
        group.bench_with_input(
            BenchmarkId::new("sockpair_channel", size),
            &payload,
            |b, payload| {
                b.iter_custom(|iters| {
                    timed_sink(&socket, iters, payload.len() + 4, || {
                        channel.send(payload).unwrap()
                    })
                })
            },
        );
    }
    drop((channel, socket));
    sink.wait().unwrap();
    group.finish();
}

criterion_group!(benches, rtt_64, rtt_struct, rate_64, throughput);
