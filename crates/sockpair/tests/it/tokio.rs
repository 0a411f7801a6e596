//! `sockpair::tokio`: the async socket, the async channel against blocking ones and
//! other runtimes' children, and async child waits, on both runtime flavours. (Cancel
//! safety is tested under load in the fault suite: `tests/faults/cancel.rs`.)

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sockpair::tokio::{AsyncChannel, AsyncSocket};
use sockpair::{Channel, ErrorKind, Framing, Program, SpawnOptions, Type, pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::interop::PYTHON_CHILD;
use crate::spawn::child_program;
use crate::util::{cloexec_nonblock, kernel_has_pass_rights, watchdog};

/// Runs `test` on a runtime of each flavour, within the watchdog's limit.
fn on_both_runtimes<F: Future<Output = ()>>(test: impl Fn() -> F + Send + Sync + 'static) {
    watchdog(move || {
        for multi_thread in [false, true] {
            let runtime = match multi_thread {
                false => tokio::runtime::Builder::new_current_thread(),
                true => tokio::runtime::Builder::new_multi_thread(),
            }
            .enable_all()
            .build()
            .unwrap();
            runtime.block_on(test());
        }
    });
}

#[test]
fn an_async_socket_makes_only_its_own_end_non_blocking() {
    on_both_runtimes(|| async {
        for ty in crate::util::TYPES {
            let (a, b) = pair(ty).unwrap();
            let a = AsyncSocket::new(a).unwrap();
            assert_eq!(cloexec_nonblock(&a), (true, true), "{ty:?}: this end");
            assert_eq!(cloexec_nonblock(&b), (true, false), "{ty:?}: the other end");
            let a = a.into_blocking();
            assert_eq!(
                cloexec_nonblock(&a),
                (true, false),
                "{ty:?}: blocking again"
            );
            // And it works as a blocking socket.
            b.send(b"x").unwrap();
            assert_eq!(a.recv(&mut [0; 4]).unwrap(), 1);
        }
    });
}

#[test]
fn an_async_socket_outside_a_runtime_is_an_error_not_a_panic() {
    let (a, _b) = pair(Type::STREAM).unwrap();
    let err = AsyncSocket::new(a).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
    let (a, _b) = pair(Type::STREAM).unwrap();
    let err = AsyncChannel::<Vec<u8>>::new(a).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[test]
fn an_async_socket_sends_receives_passes_descriptors_and_shuts_down() {
    on_both_runtimes(|| async {
        let (a, b) = pair(Type::STREAM).unwrap();
        let (a, b) = (AsyncSocket::new(a).unwrap(), AsyncSocket::new(b).unwrap());
        assert_eq!(
            a.peer_cred().unwrap().pid(),
            Some(std::process::id() as i32)
        );

        // A receive waits, without blocking the runtime, for a send that comes later.
        let mut buf = [0; 16];
        let (received, sent) = tokio::join!(b.recv(&mut buf), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            a.send(b"late").await
        });
        assert_eq!((received.unwrap(), sent.unwrap()), (4, 4));
        assert_eq!(&buf[..4], b"late");

        let (mut pipe_read, pipe_write) = std::io::pipe().unwrap();
        a.send_with_fds(b"fd", &[pipe_write.as_fd()]).await.unwrap();
        drop(pipe_write);
        let mut fds = Vec::new();
        assert_eq!(b.recv_with_fds(&mut buf, &mut fds).await.unwrap(), 2);
        assert_eq!(fds.len(), 1);
        assert!(cloexec_nonblock(&fds[0]).0, "received close-on-exec");
        std::io::PipeWriter::from(fds.pop().unwrap())
            .write_all(b"via")
            .unwrap();
        let mut text = [0; 3];
        pipe_read.read_exact(&mut text).unwrap();
        assert_eq!(&text, b"via");

        // Descriptors need a byte to travel with on a stream: refused, nothing sent.
        let err = a
            .send_with_fds(b"", &[pipe_read.as_fd()])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

        a.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(b.recv(&mut buf).await.unwrap(), 0, "end of stream");
    });
}

#[test]
fn an_async_socket_is_async_read_and_async_write_with_backpressure() {
    on_both_runtimes(|| async {
        let (a, b) = pair(Type::STREAM).unwrap();
        let (mut a, mut b) = (AsyncSocket::new(a).unwrap(), AsyncSocket::new(b).unwrap());
        // Far more than the socket buffers hold: the writer must wait for the reader.
        let data: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let (written, read) = tokio::join!(
            async {
                a.write_all(&data).await?;
                AsyncWriteExt::shutdown(&mut a).await
            },
            async {
                let mut all = Vec::new();
                b.read_to_end(&mut all).await.map(|_| all)
            }
        );
        written.unwrap();
        assert!(read.unwrap() == expected, "8 MB through, in order");
    });
}

/// A blocking channel on a thread that answers each message with itself reversed and
/// the number of descriptors that came with it, as one more message, until EOF or
/// `stop` (a datagram pair has no EOF).
fn blocking_echo(channel: Channel<Vec<u8>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut channel = channel;
        loop {
            let mut fds = Vec::new();
            match channel.recv_with_fds(&mut fds).unwrap() {
                None => return,
                Some(message) if message == b"stop" => return,
                Some(mut message) => {
                    message.reverse();
                    channel.send(&message).unwrap();
                    channel.send(&fds.len().to_string().into_bytes()).unwrap();
                }
            }
        }
    })
}

#[test]
fn an_async_channel_and_a_blocking_one_understand_each_other_on_every_framing() {
    on_both_runtimes(|| async {
        let setups: [(Type, Option<Framing>); 4] = [
            (Type::STREAM, None),
            (Type::STREAM, Some(Framing::Lines)),
            (Type::SEQPACKET, None),
            (Type::DGRAM, None),
        ];
        for (ty, framing) in setups {
            let (a, b) = pair(ty).unwrap();
            let (mut ours, theirs): (AsyncChannel<Vec<u8>>, Channel<Vec<u8>>) = match framing {
                None => (AsyncChannel::new(a).unwrap(), Channel::new(b).unwrap()),
                Some(framing) => (
                    AsyncChannel::with_framing(a, framing).unwrap(),
                    Channel::with_framing(b, framing).unwrap(),
                ),
            };
            assert_eq!(ours.framing(), theirs.framing());
            let echo = blocking_echo(theirs);
            let big = match framing {
                Some(Framing::Lines) => vec![b'x'; 3 << 20], // no newline inside
                _ => (0..5_000_000u32).map(|i| (i % 253) as u8).collect(),
            };
            let messages: Vec<Vec<u8>> = match framing {
                Some(Framing::Lines) => vec![b"one".to_vec(), big],
                _ => vec![Vec::new(), b"one".to_vec(), vec![7; 65536], big],
            };
            let (_r, w) = std::io::pipe().unwrap();
            for message in &messages {
                if framing == Some(Framing::Lines) {
                    ours.send(message).await.unwrap();
                } else {
                    ours.send_with_fds(message, &[w.as_fd(), w.as_fd()])
                        .await
                        .unwrap();
                }
                let mut reversed = message.clone();
                reversed.reverse();
                let back = ours.recv().await.unwrap().expect("an answer");
                assert!(
                    back == reversed,
                    "{ty:?} {framing:?}: {} bytes back",
                    message.len()
                );
                let fds = ours.recv().await.unwrap().expect("a count");
                let want = if framing == Some(Framing::Lines) {
                    "0"
                } else {
                    "2"
                };
                assert_eq!(String::from_utf8(fds).unwrap(), want, "{ty:?} {framing:?}");
            }
            match ty {
                Type::DGRAM => ours.send(b"stop").await.unwrap(),
                _ => drop(ours), // the thread reads the end
            }
            echo.join().unwrap();
        }
    });
}

#[test]
fn split_halves_work_in_two_tasks_and_the_receiver_is_a_stream() {
    on_both_runtimes(|| async {
        let (a, b) = pair(Type::SEQPACKET).unwrap();
        let (mut tx, rx) = AsyncChannel::<String>::new(a).unwrap().split();
        let echo = std::thread::spawn(move || {
            let mut b: Channel<String> = Channel::new(b).unwrap();
            while let Some(text) = b.recv().unwrap() {
                b.send(&text).unwrap();
            }
        });
        let sender = tokio::spawn(async move {
            for i in 0..1000 {
                tx.send(&i.to_string()).await.unwrap();
            }
            // Dropping `tx` shuts down writing: the echo ends, then so does our stream.
        });
        let received: Vec<String> = rx.map(|message| message.unwrap()).collect().await;
        sender.await.unwrap();
        echo.join().unwrap();
        assert_eq!(
            received,
            (0..1000).map(|i| i.to_string()).collect::<Vec<_>>()
        );
    });
}

#[test]
fn an_async_channel_reports_the_same_errors_as_a_blocking_one() {
    on_both_runtimes(|| async {
        // Too large, refused before memory is spent on it.
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut ours: AsyncChannel<Vec<u8>> = AsyncChannel::new(a).unwrap();
        ours.max_frame_len(10);
        b.send(&[0, 0, 0, 11]).unwrap();
        assert_eq!(ours.recv().await.unwrap_err().kind(), ErrorKind::TooLarge);

        // The stream ends inside a frame.
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut ours: AsyncChannel<Vec<u8>> = AsyncChannel::new(a).unwrap();
        b.send(&[0, 0, 0, 9, 1, 2]).unwrap();
        drop(b);
        assert_eq!(
            ours.recv().await.unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );

        // The peer is gone: EPIPE, no SIGPIPE.
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut ours: AsyncChannel<Vec<u8>> = AsyncChannel::new(a).unwrap();
        drop(b);
        // Another test's child may hold a copy of `b` between its fork and its exec (the
        // descriptor table is copied before close-on-exec runs): the peer is gone once
        // that exec is done, a moment later at most.
        let mut tries = 0;
        let err = loop {
            match ours.send(b"anyone?").await {
                Err(err) => break err,
                Ok(()) if tries < 100 => tries += 1,
                Ok(()) => panic!("the peer is gone, yet sends succeed"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(err.kind(), ErrorKind::Io);

        // A peer that refuses descriptors: nothing of the message is sent.
        if kernel_has_pass_rights() {
            let (a, b) = pair(Type::STREAM).unwrap();
            let mut ours: AsyncChannel<Vec<u8>> = AsyncChannel::new(a).unwrap();
            let mut theirs: Channel<Vec<u8>> = Channel::new(b).unwrap();
            theirs.accept_fds(false).unwrap();
            let (_r, w) = std::io::pipe().unwrap();
            let err = ours.send_with_fds(b"fd", &[w.as_fd()]).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Fds);
            ours.send(b"after").await.unwrap();
            assert_eq!(theirs.recv().unwrap().as_deref(), Some(&b"after"[..]));
        }

        // Timeouts are the runtime's: a receive with nothing coming times out, and what
        // it had read of a message is kept for the next one.
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut ours: AsyncChannel<Vec<u8>> = AsyncChannel::new(a).unwrap();
        b.send(&[0, 0, 0, 3, b'a']).unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(20), ours.recv()).await;
        assert!(waited.is_err(), "timed out");
        b.send(b"bc").unwrap();
        assert_eq!(ours.recv().await.unwrap().as_deref(), Some(&b"abc"[..]));
    });
}

#[test]
fn a_channel_moves_between_blocking_and_async_keeping_what_it_had_read() {
    on_both_runtimes(|| async {
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut blocking: Channel<Vec<u8>> = Channel::new(a).unwrap();
        blocking.read_timeout(Some(Duration::from_millis(10)));
        b.send(&[0, 0, 0, 4, b'h', b'a']).unwrap();
        assert_eq!(blocking.recv().unwrap_err().kind(), ErrorKind::TimedOut);
        let mut ours = AsyncChannel::from_blocking(blocking).unwrap();
        assert!(cloexec_nonblock(ours.socket()).1);
        b.send(b"lf").unwrap();
        assert_eq!(ours.recv().await.unwrap().as_deref(), Some(&b"half"[..]));
        b.send(&[0, 0, 0, 2, b'o']).unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(10), ours.recv()).await;
        assert!(waited.is_err());
        let mut blocking = ours.into_blocking();
        assert!(!cloexec_nonblock(blocking.socket()).1, "blocking again");
        b.send(b"k").unwrap();
        assert_eq!(blocking.recv().unwrap().as_deref(), Some(&b"ok"[..]));
    });
}

#[test]
fn a_child_exit_is_awaited_without_blocking_the_runtime() {
    on_both_runtimes(|| async {
        // While we wait for a child that sleeps, another task on the same runtime
        // (a current-thread one: the same thread) keeps running.
        let (mut child, _end) = SpawnOptions::new()
            .kill_on_drop(true)
            .spawn_program(Program::new("sleep").arg("0.3"))
            .unwrap();
        let ticker = tokio::spawn(async {
            let mut ticks = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(200) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks += 1;
            }
            ticks
        });
        let started = Instant::now();
        let status = child.wait_async().await.unwrap();
        assert!(status.success());
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(
            ticker.await.unwrap() >= 5,
            "the runtime ran other tasks meanwhile"
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{}", child.id())).exists(),
            "reaped"
        );
        // Later waits return the same status.
        assert_eq!(child.wait_async().await.unwrap(), status);
        assert_eq!(
            child.wait_timeout_async(Duration::ZERO).await.unwrap(),
            Some(status)
        );
    });
}

#[test]
fn an_async_child_wait_times_out_leaving_the_child_running_and_takes_any_timeout() {
    on_both_runtimes(|| async {
        let (mut child, _end) = SpawnOptions::new()
            .kill_on_drop(true)
            .spawn_program(Program::new("sleep").arg("600"))
            .unwrap();
        let started = Instant::now();
        let waited = child
            .wait_timeout_async(Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(waited, None);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(
            std::path::Path::new(&format!("/proc/{}", child.id())).exists(),
            "running"
        );
        // A cancelled wait leaves it to a later one.
        let cancelled = tokio::time::timeout(Duration::from_millis(10), child.wait_async()).await;
        assert!(cancelled.is_err());
        child.kill().unwrap();
        let status = child
            .wait_timeout_async(Duration::MAX)
            .await
            .unwrap()
            .expect("killed");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        assert!(
            !std::path::Path::new(&format!("/proc/{}", child.id())).exists(),
            "reaped"
        );
    });
}

#[test]
fn an_async_parent_talks_to_a_blocking_rust_child() {
    on_both_runtimes(|| async {
        let (mut child, socket) = SpawnOptions::new()
            .kill_on_drop(true)
            .spawn_program(&child_program("fd-receiver", 3))
            .unwrap();
        let mut channel: AsyncChannel<Vec<u8>> = AsyncChannel::new(socket).unwrap();
        let (_r, w) = std::io::pipe().unwrap();
        channel
            .send_with_fds(b"with", &[w.as_fd(), w.as_fd()])
            .await
            .unwrap();
        assert_eq!(
            channel.recv().await.unwrap().as_deref(),
            Some(&b"with fds=2"[..])
        );
        channel.send(b"plain").await.unwrap();
        assert_eq!(
            channel.recv().await.unwrap().as_deref(),
            Some(&b"plain fds=0"[..])
        );
        let big = vec![b'z'; 3 << 20];
        channel.send(&big).await.unwrap();
        let back = channel.recv().await.unwrap().unwrap();
        assert_eq!(back.len(), big.len() + 6);
        drop(channel);
        let status = child
            .wait_timeout_async(Duration::from_secs(20))
            .await
            .unwrap();
        assert!(status.expect("the child exits at EOF").success());
    });
}

#[test]
fn an_async_parent_talks_to_a_python_connection_child() {
    on_both_runtimes(|| async {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", PYTHON_CHILD]);
        let (mut child, socket) = SpawnOptions::new()
            .kill_on_drop(true)
            .spawn(&mut cmd)
            .unwrap();
        let mut channel: AsyncChannel<Vec<u8>> = AsyncChannel::new(socket).unwrap();
        channel.send(b"hello").await.unwrap();
        assert_eq!(
            channel.recv().await.unwrap().as_deref(),
            Some(&b"olleh"[..])
        );
        channel.send(b"").await.unwrap();
        assert_eq!(channel.recv().await.unwrap(), Some(Vec::new()));
        let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
        channel.send(&big).await.unwrap();
        let mut reversed = big.clone();
        reversed.reverse();
        assert!(
            channel.recv().await.unwrap() == Some(reversed),
            "2 MB reversed"
        );
        channel
            .socket()
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
        assert_eq!(channel.recv().await.unwrap(), Some(vec![b'x'; 1_500_000]));
        assert_eq!(channel.recv().await.unwrap(), None);
        assert!(child.wait_async().await.unwrap().success());
    });
}

#[test]
#[cfg(feature = "serde")]
fn an_async_parent_talks_to_a_node_process_send_child() {
    use crate::interop::NODE_CHILD;
    use sockpair::{Convention, Json};
    on_both_runtimes(|| async {
        let mut cmd = Command::new("node");
        cmd.args(["-e", NODE_CHILD]);
        let (mut child, socket) = SpawnOptions::new()
            .convention(Convention::Node)
            .kill_on_drop(true)
            .spawn(&mut cmd)
            .unwrap();
        let (mut tx, mut rx) =
            AsyncChannel::<Json<serde_json::Value>>::with_framing(socket, Framing::Lines)
                .unwrap()
                .split();
        let messages = [
            serde_json::json!({"n": 1, "s": "a\nb"}),
            serde_json::json!([1, 2]),
            serde_json::json!("text"),
        ];
        for message in &messages {
            tx.send(message).await.unwrap();
        }
        for message in messages {
            let reply = rx.next().await.expect("a reply").unwrap();
            assert_eq!(reply, serde_json::json!({ "got": message }));
        }
        drop(tx); // shuts down writing: Node's 'disconnect' fires
        assert!(
            rx.next().await.is_none(),
            "Node closes its end on disconnect"
        );
        let status = child
            .wait_timeout_async(Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(
            status.expect("node exits").code(),
            Some(42),
            "'disconnect' fired"
        );
    });
}

/// The async twin sends a `&T` and yields a `T`, from `recv` and from the `Stream`.
#[test]
#[cfg(feature = "serde")]
fn async_typed_channels_send_a_reference_and_receive_the_value() {
    use sockpair::{Json, Postcard};
    on_both_runtimes(|| async {
        for ty in crate::util::TYPES {
            let (a, b) = pair(ty).unwrap();
            let mut a: AsyncChannel<Json<(u32, String)>> = AsyncChannel::new(a).unwrap();
            let mut b: AsyncChannel<Json<(u32, String)>> = AsyncChannel::new(b).unwrap();
            let value = (3, "three".to_string());
            a.send(&value).await.unwrap();
            a.try_send(&value).unwrap();
            assert_eq!(b.recv().await.unwrap(), Some(value.clone()), "{ty:?}");
            let (_tx, mut rx) = b.split();
            let got: (u32, String) = rx.next().await.unwrap().unwrap();
            assert_eq!(got, value, "{ty:?}");

            let (a, b) = pair(ty).unwrap();
            let (mut tx, _) = AsyncChannel::<Postcard<Vec<u64>>>::new(a).unwrap().split();
            let mut b: AsyncChannel<Postcard<Vec<u64>>> = AsyncChannel::new(b).unwrap();
            tx.send(&vec![1, 2, 3]).await.unwrap();
            assert_eq!(b.recv().await.unwrap(), Some(vec![1, 2, 3]), "{ty:?}");
        }
    });
}

/// `SinkExt::send_all` from a `futures` stream, `feed` + `flush` as with tokio-util:
/// every message arrives, in order, on every socket type.
#[test]
fn an_async_sender_is_a_sink() {
    use futures_util::SinkExt;
    on_both_runtimes(|| async {
        for ty in crate::util::TYPES {
            let (a, b) = pair(ty).unwrap();
            let (mut tx, _) = AsyncChannel::<Vec<u8>>::new(a).unwrap().split();
            let reader = std::thread::spawn(move || {
                let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
                (0..2000u32)
                    .map(|_| b.recv().unwrap().unwrap())
                    .collect::<Vec<_>>()
            });
            let mut messages =
                futures_util::stream::iter((0..1000u32).map(|i| Ok(i.to_be_bytes().to_vec())));
            tx.send_all(&mut messages).await.unwrap();
            for i in 1000..2000u32 {
                SinkExt::feed(&mut tx, i.to_be_bytes().to_vec())
                    .await
                    .unwrap();
            }
            assert_eq!(sockpair::tokio::AsyncSender::queued(&tx), 1000, "{ty:?}");
            SinkExt::<Vec<u8>>::flush(&mut tx).await.unwrap();
            let got = reader.join().unwrap();
            let expected: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
            assert_eq!(got, expected, "{ty:?}");
        }
    });
}

/// A flush cancelled while the peer is full leaves the rest queued; the next flush
/// writes it, and the peer gets every fed message whole, in order. Dropping an async
/// sender with messages queued drops them, as documented.
#[test]
fn async_feed_and_flush_are_cancel_safe() {
    on_both_runtimes(|| async {
        let (a, b) = pair(Type::STREAM).unwrap();
        let mut tx: AsyncChannel<Vec<u8>> = AsyncChannel::new(a).unwrap();
        let big = vec![5u8; 30_000]; // queued (from 32 KiB on a message is written at once)
        for _ in 0..40 {
            // Past the high-water mark a feed writes the queue: it may wait, so bound it.
            let fed = tokio::time::timeout(Duration::from_millis(20), tx.feed(&big)).await;
            if fed.is_err() {
                break; // cancelled mid-write: what is not written stays queued
            }
        }
        let queued = tx.queued();
        assert!(queued > 0);
        let flushed = tokio::time::timeout(Duration::from_millis(20), tx.flush()).await;
        assert!(
            flushed.is_err(),
            "the peer reads nothing yet: the flush waits"
        );
        let reader = std::thread::spawn(move || {
            let mut b: Channel<Vec<u8>> = Channel::new(b).unwrap();
            let mut sizes = Vec::new();
            while let Some(message) = b.recv().unwrap() {
                sizes.push(message.len());
            }
            sizes
        });
        tx.flush().await.unwrap();
        assert_eq!(tx.queued(), 0);
        let (mut sender, _) = tx.split();
        sender.feed(b"dropped").await.unwrap();
        drop(sender); // queued, never flushed: dropped (and writing shut down)
        let sizes = reader.join().unwrap();
        assert!(sizes.len() >= queued, "{} < {queued}", sizes.len());
        assert!(
            sizes.iter().all(|&size| size == 30_000),
            "whole, and nothing after"
        );
    });
}
