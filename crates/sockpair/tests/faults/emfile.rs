//! EMFILE: with `RLIMIT_NOFILE` at 64 and every descriptor taken, each operation fails
//! cleanly (an error, no panic, no descriptor left half-made) and works again once
//! descriptors are free, descriptor-carrying messages included. Runs in a fresh process
//! (the limit is process-wide).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use sockpair::{Channel, ErrorKind, Program, SpawnOptions, Type, pair};

use crate::{Row, Scale, children, util};

#[test]
fn emfile() {
    let _serial = crate::serial();
    children::fresh("emfile");
}

/// Takes every free descriptor but `spare`; dropping what it returns frees them.
fn exhaust(spare: usize) -> Vec<File> {
    let mut held = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        held.push(file);
    }
    held.truncate(held.len().saturating_sub(spare));
    held
}

fn is_emfile(err: &std::io::Error) -> bool {
    err.raw_os_error() == Some(libc::EMFILE)
}

/// The experiment, in the fresh process.
pub fn run() {
    let limit = rustix::process::Rlimit {
        current: Some(64),
        maximum: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    let mut row = Row::new("EMFILE (RLIMIT_NOFILE 64)");
    let rounds = Scale::now().pick(20, 500);
    let before = util::fd_numbers();
    for round in 0..rounds {
        for (name, check) in CHECKS {
            let outcome = check().and_then(|()| crate::same_fds(&before));
            row.trial(outcome.map_err(|why| format!("round {round}, {name}: {why}")));
        }
    }
    row.worst = format!("{} checks per round, {rounds} rounds", CHECKS.len());
    row.finish();
}

type Check = fn() -> Result<(), String>;

const CHECKS: [(&str, Check); 7] = [
    ("pair", pair_at_the_limit),
    ("recv_with_fds", socket_fds_at_the_limit),
    ("Channel fds", channel_fds_at_the_limit),
    ("large record", large_record_at_the_limit),
    ("spawn", spawn_at_the_limit),
    ("wait_timeout", wait_timeout_at_the_limit),
    ("Channel::new", channel_new_at_the_limit),
];

/// `pair` needs two descriptors: with one free it fails, and takes none.
fn pair_at_the_limit() -> Result<(), String> {
    let full = exhaust(1);
    match pair(Type::STREAM) {
        Err(err) if is_emfile(&err) => {}
        other => return Err(format!("with one descriptor free: {other:?}")),
    }
    // The one free descriptor is still free.
    let one = File::open("/dev/null").map_err(|err| format!("the spare one: {err}"))?;
    drop((one, full));
    pair(Type::STREAM)
        .map(drop)
        .map_err(|err| format!("after freeing: {err}"))
}

/// Three descriptors arrive with no room for them: an error that says so, nothing
/// opened; the next message with descriptors, after freeing, arrives whole.
fn socket_fds_at_the_limit() -> Result<(), String> {
    let (a, b) = pair(Type::SEQPACKET).map_err(|err| err.to_string())?;
    let fds: Vec<OwnedFd> = (0..3)
        .map(|_| File::open("/dev/null").unwrap().into())
        .collect();
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    a.send_with_fds(b"one", &borrowed)
        .map_err(|err| err.to_string())?;
    a.send_with_fds(b"two", &borrowed)
        .map_err(|err| err.to_string())?;
    let full = exhaust(1);
    let mut got = Vec::new();
    match b.recv_with_fds(&mut [0; 8], &mut got) {
        Err(err) if err.kind() == std::io::ErrorKind::InvalidData && got.is_empty() => {}
        other => return Err(format!("at the limit: {other:?}, {} fds", got.len())),
    }
    drop(full);
    match b.recv_with_fds(&mut [0; 8], &mut got) {
        Ok(3) if got.len() == 3 => Ok(()),
        other => Err(format!("after freeing: {other:?}, {} fds", got.len())),
    }
}

/// A stream `Channel`: the frame whose descriptors could not arrive fails alone (`Fds`),
/// the frames around it arrive, and descriptors work again after freeing.
fn channel_fds_at_the_limit() -> Result<(), String> {
    let (a, b) = pair(Type::STREAM).map_err(|err| err.to_string())?;
    let mut tx: Channel<Vec<u8>> = Channel::new(a).map_err(|err| err.to_string())?;
    let mut rx: Channel<Vec<u8>> = Channel::new(b).map_err(|err| err.to_string())?;
    let fds: Vec<OwnedFd> = (0..4)
        .map(|_| File::open("/dev/null").unwrap().into())
        .collect();
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    tx.send(b"before").map_err(|err| err.to_string())?;
    tx.send_with_fds(b"carrier", &borrowed)
        .map_err(|err| err.to_string())?;
    tx.send(b"after").map_err(|err| err.to_string())?;
    let full = exhaust(1);
    let mut got = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        match rx.recv_with_fds(&mut got) {
            Ok(Some(message)) => seen.push(String::from_utf8_lossy(&message).into_owned()),
            Err(err) if err.kind() == ErrorKind::Fds => seen.push("Fds".into()),
            other => return Err(format!("at the limit: {other:?}")),
        }
    }
    drop(full);
    // The descriptors belong to the frame that their read ended in: only it fails.
    if seen != ["before", "Fds", "after"] {
        return Err(format!("at the limit: {seen:?}"));
    }
    tx.send_with_fds(b"again", &borrowed)
        .map_err(|err| err.to_string())?;
    match rx.recv_with_fds(&mut got) {
        Ok(Some(message)) if message == b"again" && got.len() == 4 => Ok(()),
        other => Err(format!("after freeing: {other:?}, {} fds", got.len())),
    }
}

/// A seqpacket message too large for a record travels as a memfd: at the limit the
/// send fails (no memfd can be made) and the receive of one sent earlier fails (it
/// cannot arrive); both work after freeing.
fn large_record_at_the_limit() -> Result<(), String> {
    let (a, b) = pair(Type::SEQPACKET).map_err(|err| err.to_string())?;
    let mut tx: Channel<Vec<u8>> = Channel::new(a).map_err(|err| err.to_string())?;
    let mut rx: Channel<Vec<u8>> = Channel::new(b).map_err(|err| err.to_string())?;
    let large = vec![8; 1 << 20];
    tx.send(&large)
        .map_err(|err| format!("first send: {err}"))?;
    let full = exhaust(0);
    if tx.send(&large).is_ok() {
        return Err("a large send at the limit succeeded".into());
    }
    match rx.recv() {
        Err(_) => {}
        Ok(other) => {
            return Err(format!(
                "a large receive at the limit: {:?}",
                other.map(|m| m.len())
            ));
        }
    }
    drop(full);
    tx.send(&large)
        .map_err(|err| format!("send after freeing: {err}"))?;
    match rx.recv() {
        Ok(Some(message)) if message == large => Ok(()),
        other => Err(format!(
            "recv after freeing: {:?}",
            other.map(|m| m.map(|m| m.len()))
        )),
    }
}

/// A spawn at the limit fails with the kernel's error and leaves nothing behind.
fn spawn_at_the_limit() -> Result<(), String> {
    let full = exhaust(1);
    if let Ok((mut child, _)) = SpawnOptions::new().spawn_program(&Program::new("true")) {
        let _ = child.wait();
        return Err("a spawn with one descriptor free succeeded".into());
    }
    drop(full);
    let (mut child, _end) = SpawnOptions::new()
        .spawn_program(&Program::new("true"))
        .map_err(|err| format!("after freeing: {err}"))?;
    child.wait().map(drop).map_err(|err| err.to_string())
}

/// `wait_timeout` needs a pidfd; without a descriptor for it, it still waits.
fn wait_timeout_at_the_limit() -> Result<(), String> {
    let (mut child, end) = SpawnOptions::new()
        .spawn_program(&Program::new("true"))
        .map_err(|err| err.to_string())?;
    drop(end);
    let full = exhaust(0);
    let status = child.wait_timeout(Duration::from_secs(5));
    drop(full);
    match status {
        Ok(Some(status)) if status.success() => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// Building a channel takes no descriptor.
fn channel_new_at_the_limit() -> Result<(), String> {
    let (a, b) = pair(Type::STREAM).map_err(|err| err.to_string())?;
    let full = exhaust(0);
    let made = Channel::<Vec<u8>>::new(a).and_then(|_| Channel::<Vec<u8>>::new(b));
    drop(full);
    made.map(drop).map_err(|err| err.to_string())
}
