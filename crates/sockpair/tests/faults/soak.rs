//! Descriptor soak: random mixes of pair creation, descriptor passing (whole, into a
//! too-small buffer, truncated datagrams, refused), channels with descriptors (stream,
//! seqpacket, large messages through memfds), spawns, and drops with descriptors still
//! in flight. The open descriptors are counted before and after: not one may be left.

use std::os::fd::{AsFd, OwnedFd};

use sockpair::{Channel, ErrorKind, SpawnOptions, Type, pair};

use crate::{Rng, Row, Scale, serial, util};

#[test]
fn descriptor_soak() {
    let _serial = serial();
    let scale = Scale::now();
    let mut rng = Rng::new("descriptor_soak");
    let mut row = Row::new("descriptor soak");
    let pass_rights = util::kernel_has_pass_rights();
    let before = util::fd_numbers();
    let mut most_open = before.len();
    for _ in 0..scale.pick(3_000, 100_000) {
        let op = rng.below(100);
        let outcome = match op {
            0..=14 => make_pairs(&mut rng),
            15..=34 => pass_fds(&mut rng),
            35..=44 => truncated_datagram(&mut rng),
            45..=49 => refused(&mut rng, pass_rights),
            50..=64 => channel_fds(&mut rng),
            65..=79 => in_flight_drop(&mut rng),
            80..=84 => large_record_in_flight(&mut rng),
            85..=87 => spawn_and_drop(&mut rng),
            88..=89 => control_truncated(&mut rng),
            _ => channel_then_drop_unread(&mut rng),
        };
        most_open = most_open.max(util::open_fds());
        row.trial(outcome.map_err(|why| format!("op {op}: {why}")));
    }
    let after = util::fd_numbers();
    row.trial(match after == before {
        true => Ok(()),
        false => Err(format!("descriptors {before:?} before, {after:?} after")),
    });
    row.worst = format!(
        "{} open between operations at most, {} left over",
        most_open,
        after.len() - before.len().min(after.len())
    );
    row.finish();
}

fn ty(rng: &mut Rng) -> Type {
    util::TYPES[rng.below(3) as usize]
}

/// Some descriptors to send: pipes and /dev/null, 1 to `most`.
fn some_fds(rng: &mut Rng, most: u64) -> Vec<OwnedFd> {
    let count = 1 + rng.below(most);
    (0..count)
        .map(|i| match i % 2 {
            0 => std::io::pipe().unwrap().0.into(),
            _ => std::fs::File::open("/dev/null").unwrap().into(),
        })
        .collect()
}

fn borrowed(fds: &[OwnedFd]) -> Vec<std::os::fd::BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}

fn make_pairs(rng: &mut Rng) -> Result<(), String> {
    let pairs: Vec<_> = (0..1 + rng.below(8)).map(|_| pair(ty(rng))).collect();
    for made in pairs {
        made.map_err(|err| format!("pair: {err}"))?;
    }
    Ok(())
}

/// Descriptors over a socket, received whole.
fn pass_fds(rng: &mut Rng) -> Result<(), String> {
    let (a, b) = pair(ty(rng)).map_err(|err| err.to_string())?;
    let fds = some_fds(rng, 20);
    a.send_with_fds(b"fds", &borrowed(&fds))
        .map_err(|err| format!("send: {err}"))?;
    let mut got = Vec::new();
    let n = b
        .recv_with_fds(&mut [0; 16], &mut got)
        .map_err(|err| format!("recv: {err}"))?;
    match (n, got.len() == fds.len()) {
        (3, true) => Ok(()),
        other => Err(format!("received {other:?} of {} fds", fds.len())),
    }
}

/// A datagram with descriptors read into a buffer too small for it: the rest of the
/// bytes are cut (`MSG_TRUNC`), the descriptors still come, and none is left behind.
fn truncated_datagram(rng: &mut Rng) -> Result<(), String> {
    let (a, b) = pair(if rng.below(2) == 0 {
        Type::DGRAM
    } else {
        Type::SEQPACKET
    })
    .map_err(|err| err.to_string())?;
    let fds = some_fds(rng, 5);
    a.send_with_fds(&[5; 100], &borrowed(&fds))
        .map_err(|err| format!("send: {err}"))?;
    let mut got = Vec::new();
    let n = b
        .recv_with_fds(&mut [0; 10], &mut got)
        .map_err(|err| format!("recv: {err}"))?;
    match (n, got.len() == fds.len()) {
        (10, true) => Ok(()),
        other => Err(format!("truncated read: {other:?}")),
    }
}

/// A channel that refuses descriptors: on a stream with `SO_PASSRIGHTS` (Linux 6.16)
/// the kernel refuses them at the sender, which gets `Fds` and sends nothing; elsewhere
/// they arrive and are closed, the receiver gets `Fds`, then the message. Either way,
/// none is left open.
fn refused(rng: &mut Rng, pass_rights: bool) -> Result<(), String> {
    let ty = ty(rng);
    let (a, b) = pair(ty).map_err(|err| err.to_string())?;
    let mut tx: Channel<Vec<u8>> = Channel::new(a).map_err(|err| err.to_string())?;
    let mut rx: Channel<Vec<u8>> = Channel::new(b).map_err(|err| err.to_string())?;
    rx.accept_fds(false).unwrap();
    let fds = some_fds(rng, 10);
    let sent = tx.send_with_fds(b"refused", &borrowed(&fds));
    let mut got = Vec::new();
    if ty == Type::STREAM && pass_rights {
        match sent {
            Err(err) if err.kind() == ErrorKind::Fds => {}
            other => return Err(format!("send to a refusing stream: {other:?}")),
        }
        tx.send(b"plain").map_err(|err| format!("send: {err}"))?;
        return match rx.recv_with_fds(&mut got) {
            Ok(Some(message)) if message == b"plain" && got.is_empty() => Ok(()),
            other => Err(format!("recv after a refused send: {other:?}")),
        };
    }
    sent.map_err(|err| format!("send: {err}"))?;
    match rx.recv_with_fds(&mut got) {
        Err(err) if err.kind() == ErrorKind::Fds => {}
        other => return Err(format!("first recv: {other:?}")),
    }
    match rx.recv_with_fds(&mut got) {
        Ok(Some(message)) if message == b"refused" && got.is_empty() => Ok(()),
        other => Err(format!("second recv: {other:?} with {} fds", got.len())),
    }
}

/// Channels of any type with descriptors both ways, some messages large.
fn channel_fds(rng: &mut Rng) -> Result<(), String> {
    let (a, b) = pair(ty(rng)).map_err(|err| err.to_string())?;
    let mut tx: Channel<Vec<u8>> = Channel::new(a).map_err(|err| err.to_string())?;
    let mut rx: Channel<Vec<u8>> = Channel::new(b).map_err(|err| err.to_string())?;
    let payload = vec![
        3;
        if rng.below(4) == 0 {
            300_000
        } else {
            1 + rng.below(2000) as usize
        }
    ];
    let fds = some_fds(rng, 8);
    let sender = std::thread::spawn(move || {
        tx.send_with_fds(&payload, &borrowed(&fds))
            .map(|()| payload.len())
    });
    let mut got = Vec::new();
    let message = rx.recv_with_fds(&mut got);
    let sent = sender
        .join()
        .unwrap()
        .map_err(|err| format!("send: {err}"))?;
    match message {
        Ok(Some(message)) if message.len() == sent && !got.is_empty() => Ok(()),
        other => Err(format!("recv: {other:?} with {} fds", got.len())),
    }
}

/// Descriptors sent, then both ends dropped with them unread.
fn in_flight_drop(rng: &mut Rng) -> Result<(), String> {
    let (a, b) = pair(ty(rng)).map_err(|err| err.to_string())?;
    for _ in 0..1 + rng.below(4) {
        let fds = some_fds(rng, 10);
        a.send_with_fds(b"x", &borrowed(&fds))
            .map_err(|err| format!("send: {err}"))?;
    }
    // Sometimes a socket in flight too, carrying descriptors of its own.
    if rng.below(2) == 0 {
        let (c, d) = pair(Type::STREAM).map_err(|err| err.to_string())?;
        let fds = some_fds(rng, 3);
        c.send_with_fds(b"y", &borrowed(&fds))
            .map_err(|err| err.to_string())?;
        a.send_with_fds(b"z", &[c.as_fd(), d.as_fd()])
            .map_err(|err| err.to_string())?;
    }
    drop((a, b));
    Ok(())
}

/// A large seqpacket message (a sealed memfd) left unread when the pair goes.
fn large_record_in_flight(rng: &mut Rng) -> Result<(), String> {
    let (a, b) = pair(Type::SEQPACKET).map_err(|err| err.to_string())?;
    let mut tx: Channel<Vec<u8>> = Channel::new(a).map_err(|err| err.to_string())?;
    tx.send(&vec![1; 300_000])
        .map_err(|err| format!("send: {err}"))?;
    if rng.below(2) == 0 {
        let mut rx: Channel<Vec<u8>> = Channel::new(b).map_err(|err| err.to_string())?;
        match rx.recv() {
            Ok(Some(message)) if message.len() == 300_000 => {}
            other => return Err(format!("recv: {other:?}")),
        }
    }
    Ok(())
}

/// Descriptors that cannot all arrive (`MSG_CTRUNC`): with the descriptor limit lowered
/// for a moment (the experiments run one at a time) and one descriptor free, a message
/// carrying several is an error, and none of those that did arrive stays open.
fn control_truncated(rng: &mut Rng) -> Result<(), String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let (a, b) = pair(ty(rng)).map_err(|err| err.to_string())?;
    let fds = some_fds(rng, 6);
    let extra = std::fs::File::open("/dev/null").map_err(|err| err.to_string())?;
    let mut borrowed = borrowed(&fds);
    borrowed.push(extra.as_fd());
    a.send_with_fds(b"ctrunc", &borrowed)
        .map_err(|err| format!("send: {err}"))?;
    let limit = getrlimit(Resource::Nofile);
    let highest = *util::fd_numbers().last().unwrap() as u64;
    let lowered = rustix::process::Rlimit {
        current: Some(highest + 8),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, lowered).map_err(|err| err.to_string())?;
    let mut held = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        held.push(file);
    }
    held.pop(); // one free: fewer than the message carries
    let mut got = Vec::new();
    let received = b.recv_with_fds(&mut [0; 16], &mut got);
    drop(held);
    setrlimit(Resource::Nofile, limit).map_err(|err| err.to_string())?;
    match received {
        Err(err) if err.kind() == std::io::ErrorKind::InvalidData && got.is_empty() => Ok(()),
        other => Err(format!("at the limit: {other:?} with {} fds", got.len())),
    }
}

/// A child spawned with its end, sometimes with extra descriptors, then reaped.
fn spawn_and_drop(rng: &mut Rng) -> Result<(), String> {
    let mut options = SpawnOptions::new();
    options.ty(ty(rng)).kill_on_drop(true);
    if rng.below(2) == 0 {
        options.fd(4, std::io::pipe().unwrap().1);
    }
    let (mut child, socket) = options
        .spawn_program(&sockpair::Program::new("true"))
        .map_err(|err| format!("spawn: {err}"))?;
    if rng.below(2) == 0 {
        let fds = some_fds(rng, 3);
        let _ = socket.send_with_fds(b"late", &borrowed(&fds));
        child.wait().map_err(|err| format!("wait: {err}"))?;
    }
    Ok(())
}

/// A channel with frames and descriptors queued inside it, dropped.
fn channel_then_drop_unread(rng: &mut Rng) -> Result<(), String> {
    let (a, b) = pair(Type::STREAM).map_err(|err| err.to_string())?;
    let mut tx: Channel<Vec<u8>> = Channel::new(a).map_err(|err| err.to_string())?;
    let mut rx: Channel<Vec<u8>> = Channel::new(b).map_err(|err| err.to_string())?;
    for _ in 0..2 + rng.below(4) {
        let fds = some_fds(rng, 4);
        tx.send_with_fds(b"queued", &borrowed(&fds))
            .map_err(|err| err.to_string())?;
    }
    // One receive reads them all into the channel; the rest stay queued in it.
    let mut got = Vec::new();
    rx.recv_with_fds(&mut got).map_err(|err| err.to_string())?;
    Ok(())
}
