//! A hostile peer: raw `send`/`sendmsg` calls, not sockpair's framing, sending every
//! malformed thing we could think of to a `Channel`. Nothing may panic, abort, hang,
//! leak a descriptor, or allocate what the peer merely claims: the peak memory of the
//! whole run stays far below what the peer claimed. Runs in a fresh process (its peak
//! memory is measured).

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::fs::{MemfdFlags, SealFlags};
use sockpair::{Channel, ErrorKind, Framing, Socket, Type, pair};

use crate::{Row, Scale, children, util};

#[test]
fn hostile_peer() {
    let _serial = crate::serial();
    children::fresh("hostile");
}

/// The peak memory allowed for the whole run, while the peer claims terabytes.
const PEAK: u64 = 256 << 20;

type Case = fn() -> Result<(), String>;

const CASES: &[(&str, Case)] = &[
    ("negative length", negative_length),
    ("length over the limit", over_the_limit),
    ("Python escape claiming 2^63, limit usize::MAX", escape_huge),
    ("Python escape claiming u64::MAX", escape_u64_max),
    ("64 MiB claimed, 10 bytes sent", claimed_not_sent),
    ("200 channels each promised 60 MiB", many_promises),
    ("frame cut short, then EOF", cut_short),
    ("header in 1-byte sends", one_byte_sends),
    ("descriptors inside a frame", fds_mid_frame),
    ("253 descriptors, then 254", many_fds),
    ("fake memfds", fake_memfds),
    ("fake shared messages", fake_shared),
    ("line over the limit", long_line),
    ("random bytes", random_bytes),
    ("invalid UTF-8 for a String channel", invalid_utf8),
    #[cfg(feature = "serde")]
    ("deep JSON", deep_json),
    #[cfg(feature = "serde")]
    ("postcard length bombs", postcard_bombs),
];

/// The experiment, in the fresh process.
pub fn run() {
    let mut row = Row::new("hostile peer");
    let rounds = Scale::now().pick(2, 20);
    let before = util::fd_numbers();
    for round in 0..rounds {
        for (name, case) in CASES {
            eprintln!("hostile: {name}");
            let case = *case;
            let outcome = util::watchdog(case);
            row.trial(
                outcome
                    .and_then(|()| crate::same_fds(&before))
                    .map_err(|why| format!("round {round}, {name}: {why}")),
            );
        }
    }
    let peak = peak_memory();
    row.trial(match peak < PEAK {
        true => Ok(()),
        false => Err(format!("peak memory {} MiB", peak >> 20)),
    });
    row.worst = format!("{} MiB peak memory for {} cases", peak >> 20, CASES.len());
    row.finish();
}

/// `VmHWM`: the most memory this process ever had resident.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

/// A raw writer and a `Channel` reading from it.
fn raw<T>(ty: Type) -> (Socket, Channel<T>) {
    let (raw, end) = pair(ty).unwrap();
    (raw, Channel::new(end).unwrap())
}

/// Writes `bytes` from a thread (they may not fit in the socket buffer), then closes.
fn feed(raw: Socket, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        let _ = (&raw).write_all(&bytes);
    })
}

fn expect_error<T: std::fmt::Debug>(
    got: Result<T, sockpair::Error>,
    kind: ErrorKind,
) -> Result<(), String> {
    match got {
        Err(err) if err.kind() == kind => Ok(()),
        other => Err(format!("expected {kind:?}, got {other:?}")),
    }
}

fn negative_length() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    feed(raw, vec![0x80, 0, 0, 1, 1, 2, 3]).join().unwrap();
    expect_error(rx.recv(), ErrorKind::BadHeader)?;
    expect_error(rx.recv(), ErrorKind::Unusable)
}

fn over_the_limit() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    feed(raw, vec![0x7f, 0xff, 0xff, 0xff, 1, 2])
        .join()
        .unwrap();
    expect_error(rx.recv(), ErrorKind::TooLarge)
}

fn escape_huge() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    rx.max_frame_len(usize::MAX);
    let mut bytes = vec![0xff; 4];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(&[5; 1000]);
    feed(raw, bytes).join().unwrap();
    expect_error(rx.recv(), ErrorKind::UnexpectedEof)
}

fn escape_u64_max() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    feed(raw, vec![0xff; 12]).join().unwrap();
    expect_error(rx.recv(), ErrorKind::TooLarge)
}

fn claimed_not_sent() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    let mut bytes = ((64u32 << 20) - 1).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[1; 10]);
    feed(raw, bytes).join().unwrap();
    expect_error(rx.recv(), ErrorKind::UnexpectedEof)
}

/// Many receivers each waiting for a frame the peer promised and never sends: what
/// they hold is what arrived, not what was promised.
fn many_promises() -> Result<(), String> {
    let mut held = Vec::new();
    for _ in 0..200 {
        let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
        let mut bytes = (60u32 << 20).to_be_bytes().to_vec();
        bytes.push(1);
        raw.send(&bytes).map_err(|err| err.to_string())?;
        rx.read_timeout(Some(Duration::from_millis(1)));
        expect_error(rx.recv(), ErrorKind::TimedOut)?;
        held.push((raw, rx));
    }
    let peak = peak_memory();
    match peak < PEAK {
        true => Ok(()),
        false => Err(format!(
            "{} MiB resident with 200 promises of 60 MiB",
            peak >> 20
        )),
    }
}

fn cut_short() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[1; 30]);
    feed(raw, bytes).join().unwrap();
    match rx.recv() {
        Err(err)
            if err.kind() == ErrorKind::UnexpectedEof
                && err.to_string().contains("30 of its 100 payload bytes") =>
        {
            Ok(())
        }
        other => Err(format!("{other:?}")),
    }
}

fn one_byte_sends() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    let writer = std::thread::spawn(move || {
        let mut frame = 5u32.to_be_bytes().to_vec();
        frame.extend_from_slice(b"hello");
        for byte in frame.iter().chain(frame.iter()) {
            raw.send(std::slice::from_ref(byte)).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let first = rx.recv();
    let second = rx.recv();
    writer.join().unwrap();
    let third = rx.recv();
    match (first, second, third) {
        (Ok(Some(a)), Ok(Some(b)), Ok(None)) if a == b"hello" && b == b"hello" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A foreign sender attaches descriptors to the middle of a frame: they come with it.
fn fds_mid_frame() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    let (r, w) = std::io::pipe().unwrap();
    let mut head = 10u32.to_be_bytes().to_vec();
    head.extend_from_slice(b"01234");
    raw.send(&head).map_err(|err| err.to_string())?;
    raw.send_with_fds(b"567", &[r.as_fd(), w.as_fd()])
        .map_err(|err| err.to_string())?;
    raw.send(b"89").map_err(|err| err.to_string())?;
    drop(raw);
    let mut fds = Vec::new();
    match rx.recv_with_fds(&mut fds) {
        Ok(Some(message)) if message == b"0123456789" && fds.len() == 2 => {}
        other => return Err(format!("{other:?} with {} fds", fds.len())),
    }
    match rx.recv() {
        Ok(None) => Ok(()),
        other => Err(format!("after it: {other:?}")),
    }
}

fn many_fds() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::STREAM);
    let files: Vec<OwnedFd> = (0..254)
        .map(|_| std::fs::File::open("/dev/null").unwrap().into())
        .collect();
    let borrowed: Vec<_> = files.iter().map(AsFd::as_fd).collect();
    let mut frame = 3u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"fds");
    raw.send_with_fds(&frame, &borrowed[..253])
        .map_err(|err| err.to_string())?;
    if raw.send_with_fds(&frame, &borrowed).is_ok() {
        return Err("254 descriptors were sent".into());
    }
    drop(raw);
    let mut fds = Vec::new();
    match rx.recv_with_fds(&mut fds) {
        Ok(Some(message)) if message == b"fds" && fds.len() == 253 => Ok(()),
        other => Err(format!("{other:?} with {} fds", fds.len())),
    }
}

/// Empty seqpacket records carrying what is not a sealed memfd, each refused with an
/// error, after which the channel goes on.
fn fake_memfds() -> Result<(), String> {
    let (raw, mut rx) = raw::<Vec<u8>>(Type::SEQPACKET);
    rx.max_frame_len(usize::MAX);
    let memfd = |seals: SealFlags, size: u64, write: bool| -> OwnedFd {
        let fd = rustix::fs::memfd_create("fake", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .unwrap();
        if write {
            rustix::io::write(&fd, &[7; 8192]).unwrap();
        }
        rustix::fs::ftruncate(&fd, size).unwrap();
        if !seals.is_empty() {
            rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
        }
        fd
    };
    let all = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    let (pipe, _w) = std::io::pipe().unwrap();
    let fakes: Vec<OwnedFd> = vec![
        pipe.into(),
        memfd(SealFlags::empty(), 300_000, true),
        memfd(all - SealFlags::WRITE, 300_000, true),
        memfd(all, 1 << 40, false),
        memfd(all, 300_000, false),
    ];
    for fake in &fakes {
        raw.send_with_fds(b"", &[fake.as_fd()])
            .map_err(|err| err.to_string())?;
        raw.send(b"next").map_err(|err| err.to_string())?;
    }
    drop((raw, fakes));
    for _ in 0..5 {
        let mut fds = Vec::new();
        match rx.recv_with_fds(&mut fds) {
            Err(err) if matches!(err.kind(), ErrorKind::Decode | ErrorKind::TooLarge) => {}
            // Not a sealed memfd at all: an empty message with its descriptor.
            Ok(Some(message)) if message.is_empty() && fds.len() == 1 => {}
            other => {
                return Err(format!(
                    "a fake memfd gave {other:?} with {} fds",
                    fds.len()
                ));
            }
        }
        match rx.recv() {
            Ok(Some(message)) if message == b"next" => {}
            other => return Err(format!("the message after a fake memfd: {other:?}")),
        }
    }
    Ok(())
}

/// `Channel<Shared>` on both socket types against memfds that would let the sender
/// change or shrink them, sparse ones claiming terabytes, non-memfds, sizes other than
/// the frame's, and frames without a descriptor: each a `Decode` or `Fds` error, no
/// `SIGBUS`, nothing mapped, nothing spent on what the sender claims (the peak memory
/// of the run is checked), and a good message still comes through after them.
fn fake_shared() -> Result<(), String> {
    use sockpair::shm::{SEALS, Shared};
    for ty in [Type::STREAM, Type::SEQPACKET] {
        let (raw, mut rx) = raw::<Shared>(ty);
        rx.accept_fds(true).map_err(|err| err.to_string())?;
        let memfd = |seals: SealFlags, size: u64, stored: usize| -> OwnedFd {
            let fd =
                rustix::fs::memfd_create("fake", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                    .unwrap();
            rustix::io::write(&fd, &vec![7; stored]).unwrap();
            rustix::fs::ftruncate(&fd, size).unwrap();
            if !seals.is_empty() {
                rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
            }
            fd
        };
        let (pipe, _w) = std::io::pipe().unwrap();
        let fakes: Vec<(u64, Option<OwnedFd>)> = vec![
            (4096, Some(memfd(SEALS - SealFlags::WRITE, 4096, 4096))),
            (4096, Some(memfd(SEALS - SealFlags::SHRINK, 4096, 4096))),
            (4096, Some(memfd(SEALS - SealFlags::GROW, 4096, 4096))),
            (4096, Some(memfd(SEALS - SealFlags::SEAL, 4096, 4096))),
            (1 << 40, Some(memfd(SEALS, 1 << 40, 0))),
            (64 << 20, Some(memfd(SEALS, 64 << 20, 4096))),
            (8192, Some(memfd(SEALS, 4096, 4096))),
            (0, Some(pipe.into())),
            (4096, None),
        ];
        let header: &[u8] = if ty == Type::STREAM {
            &[0, 0, 0, 8]
        } else {
            &[]
        };
        for (claimed, fd) in &fakes {
            let frame = [header, &claimed.to_le_bytes()[..]].concat();
            let fds: Vec<_> = fd.iter().map(|fd| fd.as_fd()).collect();
            raw.send_with_fds(&frame, &fds)
                .map_err(|err| err.to_string())?;
        }
        let good = memfd(SEALS, 100, 100);
        let frame = [header, &100u64.to_le_bytes()[..]].concat();
        raw.send_with_fds(&frame, &[good.as_fd()])
            .map_err(|err| err.to_string())?;
        drop((raw, fakes, good));
        for _ in 0..9 {
            match rx.recv() {
                Err(err) if matches!(err.kind(), ErrorKind::Decode | ErrorKind::Fds) => {}
                other => return Err(format!("{ty}: a fake shared message gave {other:?}")),
            }
        }
        match rx.recv() {
            Ok(Some(shared)) if shared.len() == 100 && shared.iter().all(|&b| b == 7) => {}
            other => return Err(format!("{ty}: the good message after the fakes: {other:?}")),
        }
    }
    Ok(())
}

fn long_line() -> Result<(), String> {
    let (raw, end) = pair(Type::STREAM).unwrap();
    let mut rx: Channel<Vec<u8>> = Channel::with_framing(end, Framing::Lines).unwrap();
    rx.max_frame_len(65536);
    feed(raw, vec![b'z'; 70_000]).join().unwrap();
    expect_error(rx.recv(), ErrorKind::TooLarge)
}

/// A mebibyte of random bytes: frames, then an error, never a panic.
fn random_bytes() -> Result<(), String> {
    let mut rng = crate::Rng::new("hostile random bytes");
    for framing in [Framing::Length, Framing::Lines] {
        let (raw, end) = pair(Type::STREAM).unwrap();
        let mut rx: Channel<Vec<u8>> = Channel::with_framing(end, framing).unwrap();
        let bytes: Vec<u8> = (0..1 << 20).map(|_| rng.u64() as u8).collect();
        let writer = feed(raw, bytes);
        while let Ok(Some(_)) = rx.recv() {}
        drop(rx);
        writer.join().unwrap();
    }
    Ok(())
}

fn invalid_utf8() -> Result<(), String> {
    let (raw, mut rx) = raw::<String>(Type::SEQPACKET);
    raw.send(b"\xff\xfe").map_err(|err| err.to_string())?;
    raw.send("après".as_bytes())
        .map_err(|err| err.to_string())?;
    expect_error(rx.recv(), ErrorKind::Decode)?;
    match rx.recv() {
        Ok(Some(text)) if text == "après" => Ok(()),
        other => Err(format!("after it: {other:?}")),
    }
}

#[cfg(feature = "serde")]
fn deep_json() -> Result<(), String> {
    let (raw, mut rx) = raw::<sockpair::Json<serde_json::Value>>(Type::STREAM);
    let deep = "[".repeat(1_000_000);
    let mut bytes = (deep.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(deep.as_bytes());
    bytes.extend_from_slice(&2u32.to_be_bytes());
    bytes.extend_from_slice(b"[]");
    let writer = feed(raw, bytes); // more than the socket buffer holds
    expect_error(rx.recv(), ErrorKind::Decode)?;
    writer.join().unwrap();
    match rx.recv() {
        Ok(Some(value)) if value == serde_json::json!([]) => Ok(()),
        other => Err(format!("after it: {other:?}")),
    }
}

#[cfg(feature = "serde")]
fn postcard_bombs() -> Result<(), String> {
    let (raw, mut rx) = raw::<sockpair::Postcard<Vec<Vec<u64>>>>(Type::SEQPACKET);
    // A length of 2^63 elements; a vector of 2^32 vectors; then a real message.
    raw.send(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
        .map_err(|err| err.to_string())?;
    raw.send(&[0x80, 0x80, 0x80, 0x80, 0x10, 0])
        .map_err(|err| err.to_string())?;
    raw.send(&[1, 2, 5, 6]).map_err(|err| err.to_string())?;
    expect_error(rx.recv(), ErrorKind::Decode)?;
    expect_error(rx.recv(), ErrorKind::Decode)?;
    match rx.recv() {
        Ok(Some(value)) if value == vec![vec![5, 6]] => Ok(()),
        other => Err(format!("after them: {other:?}")),
    }
}
