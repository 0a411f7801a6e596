//! Cancel safety of the async channel: thousands of messages, some large (written in
//! many parts), some with descriptors, while the futures of both sides are dropped at
//! random moments: by `select!` against a few yields, and by `tokio::time::timeout`.
//!
//! The exact sender commits each message with `ready` + `try_send` + `flush`, each of
//! which may be cancelled, and retries only what was not committed: every message must
//! arrive exactly once, whole, in order, with its descriptors. The plain sender uses
//! `send` and never retries: what arrives must be whole, in order, never twice, and must
//! include every message whose `send` completed. The coalescing sender uses `feed` (and
//! the `Sink`'s `feed`) with flushes at random, each cancelled at random, and never
//! retries: the same must hold of every message whose feed completed. Descriptors are
//! counted before and after: none may be left open.

use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sockpair::tokio::{AsyncReceiver, AsyncSender};
use sockpair::{ErrorKind, Type, pair};

use crate::{Rng, Row, Scale, same_fds, serial, util};

#[test]
fn cancelled_futures_lose_and_repeat_nothing() {
    let _serial = serial();
    let scale = Scale::now();
    let seed_rng = Rng::new("cancel");
    let mut row = Row::new("async cancel");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let before = util::fd_numbers();
    let started = Instant::now();
    let mut cancels = 0;
    let mut seed = seed_rng.0;
    for (ty, mode) in [
        (Type::STREAM, Mode::Exact),
        (Type::SEQPACKET, Mode::Exact),
        (Type::STREAM, Mode::Plain),
        (Type::SEQPACKET, Mode::Plain),
        (Type::STREAM, Mode::Feed),
        (Type::SEQPACKET, Mode::Feed),
    ] {
        let count = match mode {
            Mode::Exact => scale.pick(10_000, 100_000),
            Mode::Plain | Mode::Feed => scale.pick(3_000, 30_000),
        };
        seed = seed.wrapping_add(1);
        let outcome = runtime.block_on(storm(ty, mode, count, seed));
        row.trial(
            outcome
                .map(|n| cancels += n)
                .map_err(|why| format!("{ty:?} {mode:?}: {why}")),
        );
    }
    row.trial(same_fds(&before));
    drop(runtime);
    row.worst = format!(
        "{cancels} futures cancelled, {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    row.finish();
}

/// How the sender sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `ready` + `try_send` + `flush`, retrying what was not committed.
    Exact,
    /// `send`, never retried.
    Plain,
    /// `feed` or the `Sink`'s `feed`, flushes now and then; never retried.
    Feed,
}

/// Sends `count` messages from one task to another over a fresh pair of `ty`, both
/// sides cancelled at random; returns how many futures were cancelled.
async fn storm(ty: Type, mode: Mode, count: u64, seed: u64) -> Result<u64, String> {
    let (a, b) = pair(ty).map_err(|err| err.to_string())?;
    let (tx, _) = sockpair::tokio::AsyncChannel::<Vec<u8>>::new(a)
        .map_err(|err| err.to_string())?
        .split();
    let (_, rx) = sockpair::tokio::AsyncChannel::<Vec<u8>>::new(b)
        .map_err(|err| err.to_string())?
        .split();
    let completed = Arc::new(Mutex::new(Vec::new()));
    let sender = tokio::spawn(send_all(tx, mode, count, seed, completed.clone()));
    let receiver = tokio::spawn(receive_all(rx, seed ^ 0x5555));
    let limit = Duration::from_secs(240);
    let (sent, received) = tokio::time::timeout(limit, async {
        (sender.await.unwrap(), receiver.await.unwrap())
    })
    .await
    .map_err(|_| format!("still running after {limit:?}: a hang"))?;
    let send_cancels = sent?;
    let (arrived, receive_cancels) = received?;
    let completed = completed.lock().unwrap();
    match mode == Mode::Exact {
        true if arrived != (0..count).collect::<Vec<_>>() => Err(format!(
            "{} of {count} messages arrived; first wrong at {:?}",
            arrived.len(),
            arrived.iter().enumerate().find(|&(i, &n)| i as u64 != n)
        ))?,
        true => {}
        false => {
            if arrived.windows(2).any(|pair| pair[0] >= pair[1]) {
                Err("messages arrived out of order or twice".to_string())?;
            }
            if let Some(missing) = completed.iter().find(|n| arrived.binary_search(n).is_err()) {
                Err(format!(
                    "message {missing} was sent (send returned Ok) but never arrived"
                ))?;
            }
        }
    }
    if send_cancels == 0 || receive_cancels == 0 {
        Err(format!(
            "cancellations: {send_cancels} sending, {receive_cancels} receiving; the test needs both"
        ))?;
    }
    Ok(send_cancels + receive_cancels)
}

/// Message `n`: its number, then a pattern of a length that depends on `n`: mostly
/// small, now and then 64 KiB or 300 KiB (more than a socket buffer holds).
fn message(n: u64, rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(100) {
        0 => 300 << 10,
        1..=5 => 64 << 10,
        10..=29 => rng.below(4096) as usize,
        _ => rng.below(100) as usize,
    };
    let mut message = n.to_le_bytes().to_vec();
    message.extend((0..len).map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8));
    message
}

/// Descriptors for message `n`, one in five messages: pipes' read ends, each with `n`
/// written into its pipe, so that the receiver can tell they are this message's.
fn descriptors(n: u64, rng: &mut Rng) -> Vec<OwnedFd> {
    if !n.is_multiple_of(5) {
        return Vec::new();
    }
    (0..1 + rng.below(3))
        .map(|_| {
            let (read, mut write) = std::io::pipe().unwrap();
            write.write_all(&n.to_le_bytes()).unwrap();
            read.into()
        })
        .collect()
}

/// `future`, unless it is cancelled first: after a few yields (so at any await point of
/// it), or by a timeout of up to a millisecond; `None` if it was.
async fn maybe_cancel<T>(rng: &mut Rng, future: impl Future<Output = T>) -> Option<T> {
    match rng.below(4) {
        0 => Some(future.await),
        1 => tokio::time::timeout(rng.duration(Duration::from_millis(1)), future)
            .await
            .ok(),
        _ => {
            let yields = rng.below(6);
            tokio::select! {
                biased;
                done = future => Some(done),
                () = async {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                } => None,
            }
        }
    }
}

async fn send_all(
    mut tx: AsyncSender<Vec<u8>>,
    mode: Mode,
    count: u64,
    seed: u64,
    completed: Arc<Mutex<Vec<u64>>>,
) -> Result<u64, String> {
    let mut rng = Rng(seed | 1);
    let mut cancels = 0;
    for n in 0..count {
        let payload = message(n, &mut rng);
        let fds = descriptors(n, &mut rng);
        let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
        if mode == Mode::Feed {
            // The Sink's feed for a message without descriptors, half the time.
            let fed = match borrowed.is_empty() && rng.below(2) == 0 {
                true => {
                    let item = payload.clone();
                    maybe_cancel(&mut rng, futures_util::SinkExt::feed(&mut tx, item)).await
                }
                false => maybe_cancel(&mut rng, tx.feed_with_fds(&payload, &borrowed)).await,
            };
            match fed {
                Some(fed) => {
                    fed.map_err(|err| format!("feed {n}: {err}"))?;
                    completed.lock().unwrap().push(n);
                }
                None => cancels += 1,
            }
            if rng.below(8) == 0 {
                match maybe_cancel(&mut rng, tx.flush()).await {
                    None => cancels += 1,
                    Some(flushed) => flushed.map_err(|err| format!("flush {n}: {err}"))?,
                }
            }
            continue;
        }
        if mode == Mode::Plain {
            match maybe_cancel(&mut rng, tx.send_with_fds(&payload, &borrowed)).await {
                Some(sent) => {
                    sent.map_err(|err| format!("send {n}: {err}"))?;
                    completed.lock().unwrap().push(n);
                }
                None => cancels += 1,
            }
            continue;
        }
        // ready (cancellable, sends nothing new), then try_send (commits or not), until
        // the message is committed.
        loop {
            match maybe_cancel(&mut rng, tx.ready()).await {
                None => cancels += 1,
                Some(ready) => ready.map_err(|err| format!("ready {n}: {err}"))?,
            }
            match tx.try_send_with_fds(&payload, &borrowed) {
                Ok(()) => break,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => Err(format!("try_send {n}: {err}"))?,
            }
        }
        // Half the time a flush, itself cancelled at random; else the next ready does it.
        if rng.below(2) == 0 {
            match maybe_cancel(&mut rng, tx.flush()).await {
                None => cancels += 1,
                Some(flushed) => flushed.map_err(|err| format!("flush {n}: {err}"))?,
            }
        }
    }
    tx.flush()
        .await
        .map_err(|err| format!("last flush: {err}"))?;
    Ok(cancels) // dropping `tx` shuts down writing: the receiver reads the end
}

/// Receives until the end, checking each message; returns the numbers that arrived and
/// how many receives were cancelled.
async fn receive_all(mut rx: AsyncReceiver<Vec<u8>>, seed: u64) -> Result<(Vec<u64>, u64), String> {
    let mut rng = Rng(seed | 1);
    let mut arrived = Vec::new();
    let mut cancels = 0;
    loop {
        let mut fds = Vec::new();
        let message = match maybe_cancel(&mut rng, rx.recv_with_fds(&mut fds)).await {
            None => {
                if !fds.is_empty() {
                    Err("a cancelled receive handed out descriptors".to_string())?;
                }
                cancels += 1;
                continue;
            }
            Some(received) => received.map_err(|err| format!("receive: {err}"))?,
        };
        let Some(message) = message else {
            return Ok((arrived, cancels));
        };
        let n = u64::from_le_bytes(message[..8].try_into().map_err(|_| "a short message")?);
        let pattern = (0..message.len() - 8)
            .all(|i| message[8 + i] == (n as usize).wrapping_mul(31).wrapping_add(i) as u8);
        if !pattern {
            Err(format!(
                "message {n} arrived corrupted ({} bytes)",
                message.len()
            ))?;
        }
        if n.is_multiple_of(5) == fds.is_empty() {
            Err(format!("message {n} came with {} descriptors", fds.len()))?;
        }
        for fd in fds {
            let mut number = [0; 8];
            std::io::PipeReader::from(fd)
                .read_exact(&mut number)
                .map_err(|err| format!("read message {n}'s pipe: {err}"))?;
            if u64::from_le_bytes(number) != n {
                Err(format!(
                    "message {n} came with another message's descriptor"
                ))?;
            }
        }
        arrived.push(n);
        // Now and then a slow reader, so that the sender meets a full socket.
        if rng.below(200) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
