//! Coalesced sends: `feed` queues, `flush` writes the queue in few writes; what arrives
//! is every message whole, in order, each descriptor with its own message.

use std::os::fd::AsFd;
use std::time::Duration;

use proptest::prelude::*;
use sockpair::{Channel, ErrorKind, Program, SpawnOptions, Type, pair};

use crate::util::{TYPES, in_fresh_process, inode, open_fds, watchdog};

/// One message of a burst: its size, and whether a descriptor goes with it.
type Plan = Vec<(usize, bool)>;

/// Feeds `plan` (flushing every `flush_every` messages, and at the end) and checks what
/// the peer receives: every message whole, in order, each descriptor with its own.
fn burst(ty: Type, plan: Plan, flush_every: usize) {
    let (a, b) = pair(ty).unwrap();
    let mut tx: Channel<Vec<u8>> = Channel::new(a).unwrap();
    let mut rx: Channel<Vec<u8>> = Channel::new(b).unwrap();
    let (_read, write) = std::io::pipe().unwrap();
    let expected_inode = inode(&write);
    let count = plan.len();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..count {
            let mut fds = Vec::new();
            let message = rx.recv_with_fds(&mut fds).unwrap().expect("a message");
            got.push((message, fds.iter().map(inode).collect::<Vec<_>>()));
        }
        got
    });
    for (i, &(size, with_fd)) in plan.iter().enumerate() {
        let message = vec![(i % 251) as u8; size];
        match with_fd {
            true => tx.feed_with_fds(&message, &[write.as_fd()]).unwrap(),
            false => tx.feed(&message).unwrap(),
        }
        if (i + 1) % flush_every == 0 {
            tx.flush().unwrap();
        }
    }
    tx.flush().unwrap();
    assert_eq!(tx.queued(), 0);
    let got = reader.join().unwrap();
    for (i, ((message, fds), &(size, with_fd))) in got.iter().zip(&plan).enumerate() {
        assert_eq!(message.len(), size, "{ty:?} message {i}");
        assert!(
            message.iter().all(|&b| b == (i % 251) as u8),
            "{ty:?} message {i}"
        );
        let expected = if with_fd {
            vec![expected_inode]
        } else {
            Vec::new()
        };
        assert_eq!(fds, &expected, "{ty:?} message {i}: its own descriptors");
    }
}

/// Random bursts on a stream, in a process of their own so that the descriptor count is
/// theirs alone.
#[test]
fn random_bursts_arrive_whole_in_order_with_their_descriptors() {
    in_fresh_process("feed::random_bursts_inner");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random bursts on a stream: sizes small and large, descriptors on random messages,
    /// flushes at random points; the receiver's reads take what the kernel gives.
    #[test]
    #[ignore = "run alone in a fresh process by random_bursts_arrive_whole_in_order_with_their_descriptors"]
    fn random_bursts_inner(
        plan in prop::collection::vec((prop_oneof![0usize..200, 200usize..5000, 60_000usize..70_000], prop::bool::weighted(0.05)), 1..1000),
        flush_every in 1usize..2000,
    ) {
        let before = open_fds();
        burst(Type::STREAM, plan, flush_every);
        prop_assert_eq!(open_fds(), before, "no descriptor leaked");
    }
}

#[test]
fn bursts_on_records_too() {
    watchdog(|| {
        for ty in [Type::SEQPACKET, Type::DGRAM] {
            let plan: Plan = (0..300).map(|i| (i * 37 % 3000, i % 17 == 0)).collect();
            burst(ty, plan, 50);
        }
    });
}

#[test]
fn a_feed_is_no_system_call_until_the_high_water_mark() {
    watchdog(|| {
        for ty in TYPES {
            let (a, b) = pair(ty).unwrap();
            let mut tx: Channel<Vec<u8>> = Channel::new(a).unwrap();
            b.set_nonblocking(true).unwrap();
            for _ in 0..10 {
                tx.feed(&[7u8; 4000]).unwrap();
            }
            assert_eq!(tx.queued(), 10, "{ty:?}");
            let err = b.recv(&mut [0; 64]).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::WouldBlock,
                "{ty:?}: nothing written yet"
            );
            // Past 64 KiB the feed writes the queue itself.
            for _ in 0..7 {
                tx.feed(&[7u8; 4000]).unwrap();
            }
            assert_eq!(tx.queued(), 0, "{ty:?}: the queue was written");
            assert!(b.recv(&mut [0; 8192]).unwrap() > 0, "{ty:?}");
        }
    });
}

#[test]
fn a_send_after_feeds_goes_after_them() {
    watchdog(|| {
        for ty in TYPES {
            let (a, b) = pair(ty).unwrap();
            let (mut a, mut b): (Channel<String>, Channel<String>) =
                (Channel::new(a).unwrap(), Channel::new(b).unwrap());
            a.feed("one").unwrap();
            a.feed("two").unwrap();
            a.send("three").unwrap(); // flushes what is queued first
            for expected in ["one", "two", "three"] {
                assert_eq!(b.recv().unwrap().as_deref(), Some(expected), "{ty:?}");
            }
        }
    });
}

#[test]
fn a_failed_flush_says_how_many_messages_were_not_written_and_keeps_them() {
    watchdog(|| {
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut tx: Channel<Vec<u8>> = Channel::new(a).unwrap();
        tx.write_timeout(Some(Duration::from_millis(50)));
        let mut rx: Channel<Vec<u8>> = Channel::new(b).unwrap();
        let big = vec![1u8; 30_000]; // queued (from 32 KiB on a message is written at once)
        for _ in 0..40 {
            let _ = tx.feed(&big); // the high-water flushes time out once the peer is full
        }
        let err = tx.flush().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        let left = tx.queued();
        assert!(left > 0);
        assert!(
            err.to_string()
                .contains(&format!("{left} queued message(s) not written")),
            "{err}"
        );
        // They stay queued: read on a thread, flush again, every message arrives.
        let reader = std::thread::spawn(move || {
            (0..40)
                .map(|_| rx.recv().unwrap().unwrap().len())
                .collect::<Vec<_>>()
        });
        tx.write_timeout(None);
        tx.flush().unwrap();
        assert_eq!(reader.join().unwrap(), vec![30_000; 40]);
    });
}

#[test]
fn dropping_a_blocking_channel_flushes_what_it_queued() {
    watchdog(|| {
        for ty in TYPES {
            let (a, b) = pair(ty).unwrap();
            let mut tx: Channel<String> = Channel::new(a).unwrap();
            let mut rx: Channel<String> = Channel::new(b).unwrap();
            tx.feed("queued").unwrap();
            drop(tx);
            assert_eq!(rx.recv().unwrap().as_deref(), Some("queued"), "{ty:?}");
        }
    });
}

/// Python's own `multiprocessing.connection.Connection` reads a burst of 10,000
/// messages fed and flushed once, and answers with what it counted.
#[test]
fn python_reads_a_coalesced_burst() {
    watchdog(|| {
        let mut program = Program::new("python3");
        program.args([
            "-c",
            "from multiprocessing.connection import Connection\n\
             c = Connection(3)\n\
             n = total = 0\n\
             while True:\n    m = c.recv_bytes()\n    if m == b'end': break\n    n += 1; total += len(m)\n\
             c.send_bytes(b'%d %d' % (n, total))\n",
        ]);
        let (mut child, socket) = SpawnOptions::new().spawn_program(&program).unwrap();
        let mut channel: Channel<Vec<u8>> = Channel::new(socket).unwrap();
        let mut total = 0;
        for i in 0..10_000usize {
            let message = vec![b'x'; i % 100];
            total += message.len();
            channel.feed(&message).unwrap();
        }
        channel.feed(b"end").unwrap();
        channel.flush().unwrap();
        let answer = channel.recv().unwrap().unwrap();
        assert_eq!(String::from_utf8(answer).unwrap(), format!("10000 {total}"));
        assert!(child.wait().unwrap().success());
    });
}

/// Counts this thread's allocations, to show a steady stream received with `recv_into`
/// allocates nothing.
pub mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    /// The system allocator, counting per thread.
    pub struct Counting;

    // SAFETY: every call is passed on to the system allocator unchanged; the counter is
    // a const-initialised thread-local without destructor, which allocates nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, size) }
        }
    }

    /// This thread's allocations so far.
    pub fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }
}

#[test]
fn a_steady_stream_received_into_one_buffer_allocates_nothing_per_message() {
    watchdog(|| {
        for size in [64, 4096, 65536] {
            let (a, b) = pair(Type::STREAM).unwrap();
            let mut tx: Channel<Vec<u8>> = Channel::new(a).unwrap();
            let mut rx: Channel<Vec<u8>> = Channel::new(b).unwrap();
            let sender = std::thread::spawn(move || {
                for i in 0..2000usize {
                    tx.send(&vec![(i % 256) as u8; size]).unwrap();
                }
            });
            let mut buf = Vec::new();
            for i in 0..200usize {
                assert!(rx.recv_into(&mut buf).unwrap());
                assert_eq!(buf, vec![(i % 256) as u8; size]);
            }
            let before = counting::allocations();
            for i in 200..2000usize {
                assert!(rx.recv_into(&mut buf).unwrap());
                assert_eq!(buf.len(), size);
                assert_eq!(buf[0], (i % 256) as u8);
            }
            let allocated = counting::allocations() - before;
            // None in a steady stream; a few when the reads change pattern under load (a
            // predicted read that brought more or fewer frames than it expected).
            assert!(
                allocated < 1800 / 20,
                "{size}-byte messages: {allocated} allocations in 1800"
            );
            sender.join().unwrap();
        }
    });
}
