//! Large messages as sealed shared memory (`sockpair::shm`) against the same bytes
//! through a `Channel<Vec<u8>>` and through ipc-channel's `IpcSharedMemory`.
//!
//! - handover: `send` of a frozen `Shared` and the peer's `recv` returning it (checks
//!   and mapping included, and the drop of what was received), at 1 MiB and 64 MiB,
//!   against the one-way time of a 64 MiB `Channel<Vec<u8>>` message (a thread sends,
//!   this one receives);
//! - end to end, 64 MiB: fill a fresh buffer, send it, the peer reads every byte;
//!   `Shared` (SharedMut::new, fill, freeze, send / recv, read), `Vec<u8>` (vec!, fill,
//!   send / recv, read) and ipc-channel (fill a fresh Vec, `IpcSharedMemory::from_bytes`,
//!   send / recv, read);
//! - fresh pages: what `SharedMut::new` costs (the pages allocated, zeroed and mapped)
//!   against filling them;
//! - the receiver's memory: peak RSS growth of a child that receives a 64 MiB `Shared`
//!   and reads every byte.
//!
//! Pinned to one CPU, interleaved rounds, medians.
//!
//! `cargo bench -p sockpair-benches --bench shm`

use std::cell::RefCell;
use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use ipc_channel::ipc::IpcSharedMemory;
use sockpair::shm::{Shared, SharedMut};
use sockpair::{Channel, Program, SpawnOptions, Type};
use sockpair_benches::{interleaved, pin_to_one_cpu};

const MIB: usize = 1 << 20;
const ROUNDS: usize = 9;

/// Set in the environment of the memory child: receive one Shared, report.
const MEMORY_CHILD: &str = "SOCKPAIR_BENCH_SHM_CHILD";

fn fill(bytes: &mut [u8]) {
    for (i, chunk) in bytes.chunks_mut(4096).enumerate() {
        chunk.fill(i as u8);
    }
}

/// Reads every byte (a sum the compiler cannot skip).
fn read_all(bytes: &[u8]) -> u64 {
    bytes.chunks(8).map(|chunk| chunk[0] as u64).sum::<u64>()
        + bytes.iter().step_by(4096).map(|&b| b as u64).sum::<u64>()
}

fn frozen(len: usize) -> Shared {
    let mut buffer = SharedMut::new(len).unwrap();
    fill(&mut buffer);
    buffer.freeze().unwrap()
}

fn pair_of(ty: Type) -> (Channel<Shared>, Channel<Shared>) {
    let (a, b) = sockpair::pair(ty).unwrap();
    let mut b: Channel<Shared> = Channel::new(b).unwrap();
    b.accept_fds(true).unwrap();
    (Channel::new(a).unwrap(), b)
}

fn vec_pair() -> (Channel<Vec<u8>>, Channel<Vec<u8>>) {
    let (a, b) = sockpair::pair(Type::STREAM).unwrap();
    let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
    b.max_frame_len(128 * MIB);
    (Channel::new(a).unwrap(), b)
}

fn ms(t: Duration) -> String {
    format!("{:.3} ms", t.as_secs_f64() * 1e3)
}

fn main() {
    if std::env::var_os(MEMORY_CHILD).is_some() {
        return memory_child();
    }
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    match pin_to_one_cpu() {
        Some(cpu) => println!("pinned to CPU {cpu}; {ROUNDS} interleaved rounds; medians"),
        None => println!("could not pin; numbers will be noisier"),
    }

    // Handover.
    let (one, sixty_four) = (frozen(MIB), frozen(64 * MIB));
    let ends = RefCell::new(pair_of(Type::STREAM));
    let (mut va, mut vb) = vec_pair();
    let message = vec![7u8; 64 * MIB];
    let hand = |shared: &Shared| {
        let (a, b) = &mut *ends.borrow_mut();
        a.send(shared).unwrap();
        black_box(b.recv().unwrap().unwrap());
    };
    let times = interleaved(
        ROUNDS,
        1,
        &mut [
            &mut || {
                std::thread::scope(|scope| {
                    scope.spawn(|| va.send(&message).unwrap());
                    black_box(vb.recv().unwrap().unwrap());
                })
            },
            &mut || {
                for _ in 0..20 {
                    hand(&sixty_four);
                }
            },
            &mut || {
                for _ in 0..20 {
                    hand(&one);
                }
            },
        ],
    );
    let (vec_time, big, small) = (times[0], times[1] / 20, times[2] / 20);
    println!("\nhandover (send of a frozen Shared, recv returning it, its drop)");
    println!("  Channel<Vec<u8>> 64 MiB, one way   {:>12}", ms(vec_time));
    println!(
        "  Shared 64 MiB                      {:>12}  {:.4}x the Vec one-way time",
        ms(big),
        big.as_secs_f64() / vec_time.as_secs_f64()
    );
    println!(
        "  Shared 1 MiB                       {:>12}  64 MiB / 1 MiB: {:.2}x",
        ms(small),
        big.as_secs_f64() / small.as_secs_f64()
    );
    drop((one, sixty_four));

    // End to end, 64 MiB, and fresh pages.
    let len = 64 * MIB;
    // What a producer writes, a MiB at a time.
    let pattern: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; MIB]).collect();
    let (ipc_tx, ipc_rx) = ipc_channel::ipc::channel::<IpcSharedMemory>().unwrap();
    let times = interleaved(
        ROUNDS,
        1,
        &mut [
            &mut || {
                std::thread::scope(|scope| {
                    scope.spawn(|| {
                        let mut data = vec![0u8; len];
                        fill(&mut data);
                        va.send(&data).unwrap();
                    });
                    black_box(read_all(&vb.recv().unwrap().unwrap()));
                })
            },
            &mut || {
                let mut buffer = SharedMut::new(len).unwrap();
                for chunk in 0..len / MIB {
                    buffer.write_all(&pattern[chunk % pattern.len()]).unwrap();
                }
                let (a, b) = &mut *ends.borrow_mut();
                a.send(&buffer.freeze().unwrap()).unwrap();
                black_box(read_all(&b.recv().unwrap().unwrap()));
            },
            &mut || {
                let mut buffer = SharedMut::new(len).unwrap();
                buffer.populate();
                fill(&mut buffer);
                let (a, b) = &mut *ends.borrow_mut();
                a.send(&buffer.freeze().unwrap()).unwrap();
                black_box(read_all(&b.recv().unwrap().unwrap()));
            },
            &mut || {
                let mut data = vec![0u8; len];
                fill(&mut data);
                ipc_tx.send(IpcSharedMemory::from_bytes(&data)).unwrap();
                drop(data);
                black_box(read_all(&ipc_rx.recv().unwrap()));
            },
            &mut || {
                let mut buffer = SharedMut::new(len).unwrap();
                buffer.populate();
                black_box(buffer);
            },
        ],
    );
    println!("\nend to end, 64 MiB: fill a fresh buffer, send, the peer reads every byte");
    println!("  Channel<Vec<u8>>                   {:>12}", ms(times[0]));
    for (name, time) in [
        ("Shared, filled by io::Write", times[1]),
        ("Shared, populated, filled in place", times[2]),
    ] {
        println!(
            "  {name:<34} {:>12}  {:.2}x the Vec, {:.2}x ipc-channel",
            ms(time),
            time.as_secs_f64() / times[0].as_secs_f64(),
            time.as_secs_f64() / times[3].as_secs_f64()
        );
    }
    println!("  ipc-channel IpcSharedMemory        {:>12}", ms(times[3]));
    println!(
        "  SharedMut::new + populate alone (fresh pages allocated, zeroed, mapped) {:>12}",
        ms(times[4])
    );

    // The receiver's memory.
    let exe = std::env::current_exe().unwrap();
    let mut program = Program::new(exe);
    program.env(MEMORY_CHILD, "1");
    let (mut child, socket) = SpawnOptions::new()
        .accept_fds(true)
        .spawn_program(&program)
        .unwrap();
    let mut channel: Channel<Shared> = Channel::new(socket).unwrap();
    channel.send(&frozen(len)).unwrap();
    let mut report = String::new();
    channel
        .socket()
        .try_clone()
        .unwrap()
        .read_to_string(&mut report)
        .ok();
    child.wait().unwrap();
    let growth: f64 = report.trim().parse().unwrap_or(f64::NAN);
    println!(
        "\nreceiver's peak RSS growth for a 64 MiB Shared, every byte read: {:.1} MiB ({:.3}x its size)",
        growth / MIB as f64,
        growth / len as f64
    );
}

/// Receives one Shared, reads every byte, and writes how much its peak RSS grew (bytes).
fn memory_child() {
    // SAFETY: first thing in main, single-threaded; the end is ours.
    let socket = unsafe { sockpair::Socket::from_inherited("SOCKPAIR_FD") }.unwrap();
    let hwm = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    let mut channel: Channel<Shared> = Channel::new(socket.try_clone().unwrap()).unwrap();
    channel.accept_fds(true).unwrap();
    let before = hwm();
    let shared = channel.recv().unwrap().unwrap();
    black_box(read_all(&shared));
    let after = hwm();
    drop(shared);
    (&socket)
        .write_all((after - before).to_string().as_bytes())
        .unwrap();
}
