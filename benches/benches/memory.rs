//! Peak memory of sending and receiving one 64 MiB message through a `Channel`, in each
//! process, on every socket type: the growth of the peak resident set (`VmHWM`) over the
//! resident set before, as a multiple of the message size. Target: at most 1.25x.
//!
//! `cargo bench -p sockpair-benches --bench memory`

use std::process::Command;

use sockpair::{Channel, Socket, SpawnOptions, Type};

const SIZE: usize = 64 << 20;
const MODE: &str = "SOCKPAIR_BENCH_MEMORY";

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Resets the peak to the current resident set (Linux 4.0+: write 5 to clear_refs).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

fn growth_ratio(before: usize) -> f64 {
    (status_bytes("VmHWM").saturating_sub(before)) as f64 / SIZE as f64
}

fn main() {
    if let Ok(ty) = std::env::var(MODE) {
        // The child: receive one message and report the growth of its peak.
        // SAFETY: first thing in main, single-threaded; the descriptor is ours.
        let socket = unsafe { Socket::from_inherited("SOCKPAIR_FD") }.unwrap();
        let mut channel: Channel<Vec<u8>> = Channel::new(socket).unwrap();
        reset_peak();
        let before = status_bytes("VmRSS");
        let message = channel.recv().unwrap().unwrap();
        assert_eq!(message.len(), SIZE);
        let ratio = growth_ratio(before);
        drop(message);
        channel.send(&format!("{ratio:.3}").into_bytes()).unwrap();
        let _ = ty;
        return;
    }
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    println!("{:<10} {:>12} {:>12}", "type", "sender", "receiver");
    for (name, ty) in [
        ("stream", Type::STREAM),
        ("seqpacket", Type::SEQPACKET),
        ("dgram", Type::DGRAM),
    ] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(MODE, name);
        let (mut child, socket) = SpawnOptions::new().ty(ty).spawn(&mut cmd).unwrap();
        let mut channel: Channel<Vec<u8>> = Channel::new(socket).unwrap();
        reset_peak();
        let before = status_bytes("VmRSS");
        let message = vec![1u8; SIZE];
        channel.send(&message).unwrap();
        let sender = growth_ratio(before);
        drop(message);
        let receiver = String::from_utf8(channel.recv().unwrap().unwrap()).unwrap();
        assert!(child.wait().unwrap().success());
        println!("{name:<10} {sender:>11.3}x {receiver:>11}x");
    }
}
