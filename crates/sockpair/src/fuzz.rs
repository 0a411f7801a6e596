//! Entry points of the fuzz targets in `fuzz/` (feature `fuzz`): each takes any bytes,
//! drives one of the I/O-free parts of the crate with them, and panics only if that part
//! breaks its contract. Not a stable API: only for `cargo fuzz` and the corpus replay
//! that `cargo test` runs (the repository's `docs/reliability.md` says what they prove).
//!
//! ```
//! // A length frame of 3 bytes, then one cut short: two reads, then the end.
//! sockpair::fuzz::length_frames(b"\x00\x00\x00\x00\x00\x03abc\x00\x00\x00\x09ab");
//! sockpair::fuzz::lines(b"\x00\x00\x01one\ntwo\nthr");
//! ```

use std::ops::Range;

use crate::channel::fd_queue::{self, FdQueue, Fds, Trouble};
use crate::channel::memfd::{self, Facts};
use crate::channel::records::{Record, RecordRx};
use crate::channel::stream::StreamRx;
use crate::error::ErrorKind;
use crate::fds::Received;
use crate::frame::{Framing, length, lines};

/// The limits (`max_frame_len`) a fuzz input picks from with one byte.
const LIMITS: [usize; 8] = [0, 1, 7, 100, 4096, 65536, 1 << 20, usize::MAX];

/// Reads little pieces of a fuzz input; past its end, zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.byte()))
    }

    fn limit(&mut self) -> usize {
        LIMITS[usize::from(self.byte()) % LIMITS.len()]
    }
}

/// What a byte stream decodes to: its frames in order, then how it ended (`Ok` at a
/// frame boundary, else the kind of the first error).
type Outcome = (Vec<Vec<u8>>, Result<(), ErrorKind>);

/// Length frames (`Framing::Length`, Python's escape included). The input: a limit
/// byte, a byte seeding the sizes of the reads, then the stream.
///
/// Checks that a `StreamRx` fed the stream in reads of varied sizes (1 byte to 64 KiB,
/// through the predicted-read buffers when it offers them) gives exactly the frames and
/// the error of a direct parse of the whole stream.
pub fn length_frames(data: &[u8]) {
    stream(Framing::Length, data);
}

/// Lines (`Framing::Lines`), checked as [`length_frames`].
pub fn lines(data: &[u8]) {
    stream(Framing::Lines, data);
}

fn stream(framing: Framing, data: &[u8]) {
    let mut input = Input(data);
    let max = input.limit();
    let seed = input.byte();
    let bytes = input.0;
    let expected = match framing {
        Framing::Length => parse_length(bytes, max),
        Framing::Lines => parse_lines(bytes, max),
    };
    let got = decode_in_reads(framing, max, bytes, seed);
    assert_eq!(got, expected, "{framing:?}, limit {max}, read seed {seed}");
}

/// The frames of `bytes` parsed at once, as the wire format defines them.
fn parse_length(bytes: &[u8], max: usize) -> Outcome {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        let (header, len) = match length::decode_header(rest) {
            Err(err) => return (frames, Err(err.kind())),
            Ok(None) if rest.is_empty() => return (frames, Ok(())),
            Ok(None) => return (frames, Err(ErrorKind::UnexpectedEof)),
            Ok(Some(found)) => found,
        };
        if len > max as u64 {
            return (frames, Err(ErrorKind::TooLarge));
        }
        match rest.get(header..).and_then(|body| body.get(..len as usize)) {
            Some(payload) => frames.push(payload.to_vec()),
            None => return (frames, Err(ErrorKind::UnexpectedEof)),
        }
        at += header + len as usize;
    }
}

/// The lines of `bytes`, each at most `max` bytes long (the newline not counted).
fn parse_lines(bytes: &[u8], max: usize) -> Outcome {
    let mut frames = Vec::new();
    let mut rest = bytes;
    loop {
        match lines::memchr(rest) {
            Some(len) if len > max => return (frames, Err(ErrorKind::TooLarge)),
            Some(len) => {
                frames.push(rest[..len].to_vec());
                rest = &rest[len + 1..];
            }
            None if rest.len() > max => return (frames, Err(ErrorKind::TooLarge)),
            None if rest.is_empty() => return (frames, Ok(())),
            None => return (frames, Err(ErrorKind::UnexpectedEof)),
        }
    }
}

/// `bytes` through a `StreamRx`, in reads whose sizes follow from `seed`.
fn decode_in_reads(framing: Framing, max: usize, bytes: &[u8], seed: u8) -> Outcome {
    let mut rx = StreamRx::new(framing, true);
    rx.set_max(max);
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut state = u32::from(seed) | 1;
    loop {
        loop {
            match rx.next() {
                Ok(Some(received)) => {
                    assert!(received.fds.is_empty());
                    frames.push(received.payload.into_vec(rx.buffer()));
                }
                Ok(None) => break,
                Err(err) => return (frames, Err(err.kind())),
            }
        }
        if rest.is_empty() {
            return (frames, rx.eof().map_err(|err| err.kind()));
        }
        if let Err(err) = rx.prepare_read() {
            return (frames, Err(err.kind()));
        }
        // xorshift: read sizes from 1 byte to 64 KiB, small ones most often.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let mut want = match state % 4 {
            0 => 1 + state as usize % 4,
            1 => 1 + state as usize % 64,
            2 => 1 + state as usize % 4096,
            _ => 65536,
        }
        .min(rest.len());
        let mut n = 0;
        for (target, room) in rx.targets() {
            let take = want.min(room).min(target.capacity() - target.len());
            target.extend_from_slice(&rest[n..n + take]);
            n += take;
            want -= take;
            if want == 0 {
                break;
            }
        }
        assert!(n > 0, "a read was offered no room");
        rest = &rest[n..];
        rx.received(n, Vec::new(), false);
    }
}

/// One received record (`RecordRx`), as the kernel could report it. The input: flags
/// (seqpacket, accepting, descriptors lost, control message seen, descriptor count),
/// a limit byte, the length the kernel reports, then the bytes received.
///
/// Checks that what the record is named (the end, a message, a possible large message,
/// an error) follows from the facts alone, and that a message is the bytes received.
pub fn records(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let (seqpacket, accept, fds_lost, control_seen) = (
        flags & 1 != 0,
        flags & 2 != 0,
        flags & 4 != 0,
        flags & 8 != 0,
    );
    let fd_count = usize::from(flags >> 4) % 3;
    let max = input.limit();
    let claimed = input.u64() % (1 << 21);
    let mut rx = RecordRx::new(seqpacket, accept, max);
    let buffer = match rx.buffer() {
        Ok(buffer) => buffer,
        Err(err) => return assert_eq!(err.kind(), ErrorKind::TooLarge),
    };
    let bytes = input.0.len().min(buffer.capacity());
    buffer.extend_from_slice(&input.0[..bytes]);
    let len = (claimed as usize).max(bytes);
    let fds: Vec<_> = (0..fd_count)
        .map(|_| std::io::pipe().expect("a pipe for a descriptor").0.into())
        .collect();
    let got = rx.received(
        Received {
            bytes,
            len,
            fds_lost,
            control_seen,
        },
        fds,
    );
    match got {
        Err(err) if err.kind() == ErrorKind::TooLarge => assert!(len > bytes || len > max),
        Err(err) if err.kind() == ErrorKind::Fds => {
            assert!(len <= max && (fds_lost || (fd_count > 0 && !accept && bytes > 0)));
            if !fds_lost {
                let held = rx
                    .held()
                    .expect("a refused message is held for the next call");
                assert_eq!(held.into_vec(rx.lent()), &input.0[..bytes]);
            }
        }
        Err(err) => panic!("unexpected error {err}"),
        Ok(Record::Eof) => assert!(seqpacket && bytes == 0 && !control_seen && len == 0),
        Ok(Record::MaybeLarge(fds)) => assert!(bytes == 0 && fds.len() == fd_count),
        Ok(Record::Message(payload, fds)) => {
            assert!(!fds_lost && len == bytes && bytes <= max);
            assert_eq!(fds.len(), fd_count);
            assert_eq!(payload.into_vec(rx.lent()), &input.0[..bytes]);
        }
    }
}

/// What a large message's memfd may claim about itself (`memfd::check`). The input:
/// its seals, size and stored bytes, and a limit byte.
///
/// Checks that a memfd is taken exactly when it carries every seal, fits the limit and
/// is not sparse, and that its length is then its size.
pub fn memfd_facts(data: &[u8]) {
    let mut input = Input(data);
    let seals = rustix::fs::SealFlags::from_bits_retain(input.byte().into());
    let size = input.u64();
    let stored = input.u64();
    let max = input.limit();
    let facts = Facts {
        seals,
        size,
        stored,
    };
    let acceptable =
        seals.contains(memfd::SEALS) && size <= max as u64 && stored >= size / 4096 * 4096;
    match memfd::check(facts, max) {
        Ok(len) => assert!(acceptable && len as u64 == size, "{facts:?} {max}"),
        Err(err) => {
            assert!(!acceptable, "{facts:?} {max}: {err}");
            assert!(matches!(
                err.kind(),
                ErrorKind::Decode | ErrorKind::TooLarge
            ));
        }
    }
}

/// Which frame descriptors belong to (`fd_queue`). The input: frame lengths (a byte
/// each, 0 read as 1) until a 0xff byte, then reads as (length, descriptors lost?)
/// pairs.
///
/// Checks that every read belongs to exactly one frame of the stream, the one holding
/// its last byte, and that a frame is refused its descriptors exactly when a read that
/// belongs to it lost them.
pub fn fd_rule(data: &[u8]) {
    let mut input = Input(data);
    let mut frames: Vec<Range<u64>> = Vec::new();
    let mut end = 0;
    while !input.0.is_empty() && frames.len() < 64 {
        let len = input.byte();
        if len == 0xff {
            break;
        }
        let next = end + u64::from(len.max(1));
        frames.push(end..next);
        end = next;
    }
    let mut reads = Vec::new();
    let mut read_end = 0;
    while !input.0.is_empty() && read_end < end {
        read_end = (read_end + u64::from(input.byte().max(1))).min(end);
        reads.push((read_end, input.byte() & 1 != 0));
    }
    let mut queue = FdQueue::default();
    for &(read_end, lost) in &reads {
        let owners = frames
            .iter()
            .filter(|frame| fd_queue::belongs_to(frame, read_end))
            .count();
        assert_eq!(owners, 1, "read ending at {read_end} in {frames:?}");
        let fds = match lost {
            true => Fds::Lost,
            false => Fds::Here(Vec::new()),
        };
        queue.arrived(read_end, fds);
    }
    for frame in &frames {
        let lost = reads
            .iter()
            .any(|&(read_end, lost)| lost && frame.contains(&(read_end - 1)));
        let taken = queue.take(frame.clone());
        assert_eq!(
            taken.is_err_and(|trouble| trouble == Trouble::Lost),
            lost,
            "{frame:?}"
        );
    }
    assert!(queue.is_empty(), "every read belonged to a frame");
}

/// A typed message from any bytes: `Json` and `Postcard` decoding of nested and
/// length-prefixed types never panics, and what decodes encodes back to the same value.
#[cfg(feature = "serde")]
pub fn typed(data: &[u8]) {
    use crate::message::{Decode, EncodeAs, Json, Postcard, Receive};
    type Nested = Vec<(String, Option<Vec<u64>>, Vec<Vec<u8>>)>;
    let mut scratch = Vec::new();
    if let Ok(value) = Json::<serde_json::Value>::receive(data) {
        let bytes =
            EncodeAs::<Json<_>>::encode_as(&value, &mut scratch).expect("a decoded value encodes");
        let back = Json::<serde_json::Value>::receive(bytes).expect("and decodes");
        assert_eq!(back, value);
    }
    let _ = Json::<Nested>::receive(data);
    if let Ok(value) = Postcard::<Nested>::receive(data) {
        scratch.clear();
        let bytes = EncodeAs::<Postcard<_>>::encode_as(&value, &mut scratch)
            .expect("a decoded value encodes");
        let back = Postcard::<Nested>::receive(bytes).expect("and decodes");
        assert_eq!(back, value);
    }
    let _ = Postcard::<String>::receive(data);
    let _ = String::decode(data);
}

/// A hostile peer's `Shared` messages (`Channel<Shared>`), over a real socket pair with
/// a real memfd. The input: a byte choosing the socket type and whether a descriptor is
/// attached, a byte of seals, the memfd's size (two bytes of 4 KiB pages, or 1 TiB),
/// how many bytes are stored in it (two bytes), the length the frame claims (the size,
/// or eight bytes), and how many bytes the payload has (8, or a byte's worth).
///
/// Checks that the receiver takes the message exactly when the memfd carries every
/// seal, holds every byte of its size, fits the limit and matches the claimed length
/// in an 8-byte payload, that it then has the memfd's length, and that anything else is
/// an error, never a panic or a fault; a good message still comes through afterwards.
pub fn shared_frames(data: &[u8]) {
    use std::os::fd::AsFd;

    use crate::shm::{SEALS, Shared};
    use crate::{Channel, Type, pair};
    use rustix::fs::{MemfdFlags, SealFlags};

    let mut input = Input(data);
    let how = input.byte();
    let ty = if how & 1 == 0 {
        Type::STREAM
    } else {
        Type::SEQPACKET
    };
    let attach = how & 2 == 0;
    let seals = SealFlags::from_bits_retain(input.byte().into()) & SEALS;
    let pages = u64::from(input.byte()) << 8 | u64::from(input.byte());
    let size = match pages {
        0xffff => 1 << 40,
        pages => (pages % 64) * 4096 + u64::from(how >> 2) * 61,
    };
    let stored = (usize::from(input.byte()) << 8 | usize::from(input.byte())) % (300 * 1024);
    let claimed = match input.byte() {
        0 => input.u64(),
        _ => size,
    };
    let payload_len = match input.byte() {
        0 => 8,
        n => usize::from(n) % 20,
    };
    let (raw, end) = pair(ty).expect("a pair");
    let mut rx: Channel<Shared> = Channel::new(end).expect("a channel");
    rx.accept_fds(true).expect("descriptors accepted");
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let memfd = rustix::fs::memfd_create("fuzz", flags).expect("a memfd");
    rustix::io::write(&memfd, &vec![7; stored]).expect("written");
    rustix::fs::ftruncate(&memfd, size).expect("sized");
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&memfd, seals).expect("sealed");
    }
    let held = (stored as u64).min(size).div_ceil(4096) * 4096;
    let acceptable = attach
        && seals.contains(SEALS)
        && held >= size
        && size <= Shared::DEFAULT_MAX_LEN
        && payload_len == 8
        && claimed == size;
    let mut payload = claimed.to_le_bytes().to_vec();
    payload.resize(payload_len, 0);
    let mut frame = match ty == Type::STREAM {
        true => (payload_len as u32).to_be_bytes().to_vec(),
        false => Vec::new(),
    };
    frame.extend(&payload);
    let fds: Vec<_> = match attach {
        true => vec![memfd.as_fd()],
        false => Vec::new(),
    };
    if ty == Type::SEQPACKET && frame.is_empty() && attach {
        return; // an empty record with a sealed memfd is the large-message mark
    }
    raw.send_with_fds(&frame, &fds).expect("sent");
    match rx.recv() {
        Ok(Some(shared)) => {
            assert!(
                acceptable,
                "taken: {how} {seals:?} {size} {stored} {claimed} {payload_len}"
            );
            assert_eq!(shared.len() as u64, size);
            assert!(shared.iter().take(stored).all(|&b| b == 7));
        }
        Ok(None) => panic!("the stream ended"),
        Err(err) => {
            assert!(!acceptable, "refused: {err}");
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Decode | ErrorKind::Fds | ErrorKind::TooLarge
                ),
                "{err}"
            );
        }
    }
}

/// Replays `fuzz/corpus/<target>/` (kept in the repository: the hostile cases and every
/// input that once broke a target) through the entry points, as `cargo test` runs them.
#[cfg(test)]
mod tests {
    use std::path::Path;

    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{dir:?}: {err}")) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {path:?} fails");
            count += 1;
        }
        assert!(count > 0, "{target}: no corpus in {dir:?}");
    }

    #[test]
    fn length_frames_corpus() {
        replay("length_frames", super::length_frames);
    }

    #[test]
    fn lines_corpus() {
        replay("lines", super::lines);
    }

    #[test]
    fn records_corpus() {
        replay("records", super::records);
    }

    #[test]
    fn memfd_facts_corpus() {
        replay("memfd_facts", super::memfd_facts);
    }

    #[test]
    fn fd_rule_corpus() {
        replay("fd_rule", super::fd_rule);
    }

    #[test]
    fn shared_frames_corpus() {
        replay("shared_frames", super::shared_frames);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn typed_corpus() {
        replay("typed", super::typed);
    }
}
