//! Shared pieces of sockpair's benchmarks: pinning, interleaved rounds, medians.
//! Each benchmark in `benches/` prints ratios against a baseline measured in the same run.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};
use sockpair::{Channel, Postcard, Program, Socket, SpawnOptions};

/// Pins this process (and so the children it starts) to one CPU, so that both sides of
/// every measurement share it: on small virtual machines a cross-CPU wake-up costs more
/// than the work measured. Returns the CPU, or `None` if pinning failed.
pub fn pin_to_one_cpu() -> Option<usize> {
    let current = rustix::thread::sched_getaffinity(None).ok()?;
    let cpu = (0..rustix::thread::CpuSet::MAX_CPU).find(|&cpu| current.is_set(cpu))?;
    let mut one = rustix::thread::CpuSet::new();
    one.set(cpu);
    rustix::thread::sched_setaffinity(None, &one).ok()?;
    Some(cpu)
}

/// Puts the calling thread at `SCHED_IDLE`: it runs only when nothing else wants the
/// CPU (for load that must not take time from what is measured).
pub fn run_idle() {
    // SAFETY: a zeroed sched_param is valid (priority 0, which SCHED_IDLE requires);
    // sched_setscheduler only reads it; pid 0 is the calling thread.
    let rc = unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
    };
    assert_eq!(rc, 0, "SCHED_IDLE: {}", std::io::Error::last_os_error());
}

/// The median of `samples` (which it sorts).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Runs each candidate `per_round` times per round, the candidates interleaved round by
/// round so that a noisy moment hits all of them alike, and returns for each the median
/// over `rounds` rounds of its mean time per run.
pub fn interleaved(
    rounds: usize,
    per_round: u32,
    candidates: &mut [&mut dyn FnMut()],
) -> Vec<Duration> {
    let mut samples = vec![Vec::with_capacity(rounds); candidates.len()];
    for _ in 0..rounds {
        for (candidate, samples) in candidates.iter_mut().zip(&mut samples) {
            let start = Instant::now();
            for _ in 0..per_round {
                candidate();
            }
            samples.push(start.elapsed() / per_round);
        }
    }
    samples.iter_mut().map(|s| median(s)).collect()
}

/// `send(fd, buf, MSG_NOSIGNAL)` straight through libc, the baseline every ratio is
/// against; returns bytes sent or a negative value.
pub fn libc_send(fd: std::os::fd::RawFd, buf: &[u8]) -> isize {
    // SAFETY: `buf` is a valid slice for the call's duration; `fd` is a number.
    unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) }
}

/// `recv(fd, buf, 0)` straight through libc.
pub fn libc_recv(fd: std::os::fd::RawFd, buf: &mut [u8]) -> isize {
    // SAFETY: `buf` is a valid, writable slice for the call's duration.
    unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) }
}

/// `recvmsg(fd, [buf], MSG_CMSG_CLOEXEC)` with room for 253 descriptors, as a receiver
/// that accepts descriptors must read; returns bytes received or a negative value.
pub fn libc_recvmsg(fd: std::os::fd::RawFd, buf: &mut [u8]) -> isize {
    let mut control = [0u64; 160];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; it then points to one iovec over `buf` and to
    // `control`, both alive and writable for the call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC)
    }
}

/// Receives exactly `buf.len()` bytes with `recvmsg` ([`libc_recvmsg`]).
pub fn libc_recvmsg_exact(fd: std::os::fd::RawFd, mut buf: &mut [u8]) {
    while !buf.is_empty() {
        let n = libc_recvmsg(fd, buf);
        assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
        buf = &mut buf[n as usize..];
    }
}

/// Sends all of `buf` with raw libc calls.
pub fn libc_send_all(fd: std::os::fd::RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        let n = libc_send(fd, buf);
        assert!(n > 0, "send: {}", std::io::Error::last_os_error());
        buf = &buf[n as usize..];
    }
}

/// Receives exactly `buf.len()` bytes with raw libc calls.
pub fn libc_recv_exact(fd: std::os::fd::RawFd, mut buf: &mut [u8]) {
    while !buf.is_empty() {
        let n = libc_recv(fd, buf);
        assert!(n > 0, "recv: {}", std::io::Error::last_os_error());
        buf = &mut buf[n as usize..];
    }
}

/// `payload` as a length frame (`[u32 big-endian length][payload]`), built once, for the
/// raw libc candidates to send as it is.
pub fn length_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + payload.len());
    sockpair::frame::write_frame(&mut frame, sockpair::Framing::Length, payload).unwrap();
    frame
}

/// Names a child's mode.
const MODE: &str = "SOCKPAIR_BENCH_CHILD";

/// The small struct of the typed round trips.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Request {
    id: u64,
    op: String,
    args: Vec<i32>,
}

/// A typical small request.
pub fn request() -> Request {
    Request {
        id: 42,
        op: "lookup".into(),
        args: vec![1, 2, 3, 4],
    }
}

/// ipc-channel's bootstrap: the child's ends, sent through the one-shot server.
pub type IpcPair = (IpcSender<Request>, IpcReceiver<Request>);

/// If this process is a benchmark's child (`SOCKPAIR_BENCH_CHILD` names its mode), runs
/// that mode and returns `true`; the caller's `main` then returns.
pub fn run_child_mode() -> bool {
    match std::env::var(MODE).as_deref() {
        Ok("echo") => echo_child(),
        Ok("sink") => sink_child(),
        Ok("ipc") => ipc_child(),
        Ok("typed-echo") => typed_echo_child(),
        Ok("libc-frames") => libc_frames_child(),
        Ok("channel-frames") => channel_frames_child(),
        _ => return false,
    }
    true
}

/// A child of this binary in `mode`, with its end of a stream pair at fd 3.
pub fn child(mode: &str) -> (sockpair::Child, Socket) {
    child_with(mode, sockpair::Type::STREAM)
}

/// A child of this binary in `mode`, with its end of a pair of type `ty` at fd 3.
pub fn child_with(mode: &str, ty: sockpair::Type) -> (sockpair::Child, Socket) {
    let mut program = Program::new(std::env::current_exe().unwrap());
    program.env(MODE, mode);
    SpawnOptions::new().ty(ty).spawn_program(&program).unwrap()
}

fn inherited() -> Socket {
    // SAFETY: first thing in the child's main, single-threaded; the fd is ours.
    unsafe { Socket::from_inherited("SOCKPAIR_FD") }.unwrap()
}

/// Echoes whatever arrives, as it arrives, until EOF.
fn echo_child() {
    let socket = inherited();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = socket.recv(&mut buf).unwrap();
        if n == 0 {
            return;
        }
        (&socket).write_all(&buf[..n]).unwrap();
    }
}

/// Reads an 8-byte count, swallows that many bytes, answers one byte; until EOF.
fn sink_child() {
    let mut socket = inherited();
    let mut buf = vec![0; 1 << 20];
    loop {
        let mut count = [0; 8];
        if socket.read_exact(&mut count).is_err() {
            return;
        }
        let mut left = u64::from_le_bytes(count) as usize;
        while left > 0 {
            let n = socket.read(&mut buf[..left.min(1 << 20)]).unwrap();
            assert!(n > 0);
            left -= n;
        }
        socket.write_all(b"k").unwrap();
    }
}

/// ipc-channel's child: connects to the server named in argv, echoes requests.
fn ipc_child() {
    let mut socket = inherited();
    let mut name = String::new();
    socket.read_to_string(&mut name).unwrap();
    let bootstrap = IpcSender::<IpcPair>::connect(name).unwrap();
    let (to_parent, from_child_side) = ipc_channel::ipc::channel::<Request>().unwrap();
    let (to_child, from_parent) = ipc_channel::ipc::channel::<Request>().unwrap();
    bootstrap.send((to_child, from_child_side)).unwrap();
    while let Ok(request) = from_parent.recv() {
        to_parent.send(request).unwrap();
    }
}

/// Decodes each request with a `Channel<Postcard<Request>>` and sends it back, re-encoded:
/// the same work as ipc-channel's echo child.
fn typed_echo_child() {
    let mut channel: Channel<Postcard<Request>> = Channel::new(inherited()).unwrap();
    while let Some(request) = channel.recv().unwrap() {
        channel.send(&request).unwrap();
    }
}

/// Frames of this many bytes (a 4-byte length and 64 bytes) in the end-to-end rate.
pub const FRAME_LEN: usize = 68;

/// The receiving end of a raw libc protocol, one frame per system call: an 8-byte count,
/// then that many `FRAME_LEN`-byte frames each read with its own `recv`, then one byte
/// of acknowledgement; until EOF.
fn libc_frames_child() {
    let socket = inherited();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    let mut frame = [0; FRAME_LEN];
    loop {
        let mut count = [0; 8];
        match libc_recv(fd, &mut count) {
            0 => return,
            n => assert_eq!(n, 8, "recv: {}", std::io::Error::last_os_error()),
        }
        for _ in 0..u64::from_le_bytes(count) {
            libc_recv_exact(fd, &mut frame);
        }
        libc_send_all(fd, b"k");
    }
}

/// The same protocol spoken with a `Channel<Vec<u8>>`: a message holding the count, that
/// many messages, then a one-byte message back; until EOF.
fn channel_frames_child() {
    let mut channel: Channel<Vec<u8>> = Channel::new(inherited()).unwrap();
    while let Some(count) = channel.recv().unwrap() {
        for _ in 0..u64::from_le_bytes(count.try_into().unwrap()) {
            std::hint::black_box(channel.recv().unwrap().unwrap());
        }
        channel.send(&b"k".to_vec()).unwrap();
    }
}
