//! The framing over in-memory buffers: every framing, every chunking, hostile input.

use std::io::Read;

use super::read::MOST_PREDICTED;
use super::*;
use proptest::prelude::*;

/// A `Read` that hands out `data` in chunks of the given sizes (cycled), as a socket
/// might.
struct Chunked {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn reader(data: Vec<u8>, sizes: Vec<usize>, framing: Framing, max: usize) -> FrameReader<Chunked> {
    let mut reader = FrameReader::new(
        Chunked {
            data,
            at: 0,
            sizes,
            turn: 0,
        },
        framing,
    );
    reader.max_frame_len(max);
    reader
}

fn encode(framing: Framing, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for payload in payloads {
        write_frame(&mut wire, framing, payload).unwrap();
    }
    wire
}

/// Feeds `wire[*at..]` through the decoder's read targets as the kernel fills them
/// (in order, each up to its limit and its spare capacity, never growing it), at
/// most `chunk` bytes, as if that much had arrived; returns the payload buffers'
/// addresses handed to this read.
fn kernel_read(decoder: &mut Decoder, wire: &[u8], at: &mut usize, chunk: usize) -> Vec<usize> {
    decoder.prepare_read().unwrap();
    let mut taken = 0;
    let available = chunk.min(wire.len() - *at);
    let mut buffers = Vec::new();
    for (vec, most) in decoder.targets() {
        buffers.push(vec.as_ptr() as usize);
        let n = most.min(vec.capacity() - vec.len()).min(available - taken);
        let capacity = vec.capacity();
        vec.extend_from_slice(&wire[*at + taken..*at + taken + n]);
        assert_eq!(vec.capacity(), capacity, "a read never grows a buffer");
        taken += n;
    }
    *at += taken;
    decoder.filled(taken);
    buffers
}

/// Every frame of `wire`, read `chunk` bytes at a time through the read targets,
/// with its stream offsets.
fn decode_by_targets(wire: &[u8], chunks: &[usize]) -> Result<Vec<(Vec<u8>, u64, u64)>, Error> {
    let mut decoder = Decoder::new(Framing::Length);
    let (mut at, mut turn, mut frames) = (0, 0, Vec::new());
    loop {
        while let Some(frame) = decoder.next_frame()? {
            let (offset, end) = (frame.offset, frame.end);
            frames.push((frame.payload.into_vec(decoder.buffer()), offset, end));
        }
        if at == wire.len() {
            decoder.eof()?;
            return Ok(frames);
        }
        let chunk = chunks[turn % chunks.len()].max(1);
        turn += 1;
        kernel_read(&mut decoder, wire, &mut at, chunk);
    }
}

/// Each payload with the stream offsets of its frame.
fn expected_frames(payloads: &[Vec<u8>]) -> Vec<(Vec<u8>, u64, u64)> {
    let mut offset = 0;
    payloads
        .iter()
        .map(|payload| {
            let end = offset + encode(Framing::Length, std::slice::from_ref(payload)).len() as u64;
            let frame = (payload.clone(), offset, end);
            offset = end;
            frame
        })
        .collect()
}

#[test]
fn frames_as_long_as_the_last_two_are_read_into_their_own_buffers() {
    let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 4096]).collect();
    let wire = encode(Framing::Length, &payloads);
    let mut decoder = Decoder::new(Framing::Length);
    let mut at = 0;
    let mut seen = 0;
    let mut direct = 0;
    while seen < payloads.len() {
        let buffers = kernel_read(&mut decoder, &wire, &mut at, 3 * 4100);
        while let Some(frame) = decoder.next_frame().unwrap() {
            assert_eq!(
                (frame.offset, frame.end),
                (seen as u64 * 4100, (seen as u64 + 1) * 4100)
            );
            if let Payload::Own(payload) = &frame.payload {
                assert!(
                    buffers.contains(&(payload.as_ptr() as usize)),
                    "the buffer read into"
                );
                direct += 1;
            }
            assert!(frame.payload.into_vec(decoder.buffer()) == payloads[seen]);
            seen += 1;
        }
    }
    // The first two teach the length; after that, only the reads' first frames
    // until the batch grows to take all three that arrive at once.
    assert!(
        direct >= 34,
        "{direct} of 40 frames read straight into their buffers"
    );
    assert!(decoder.slots.len() <= MOST_PREDICTED);
}

#[test]
fn a_frame_other_than_predicted_is_cut_from_the_bytes_put_back_in_order() {
    // Two to teach 600 bytes, then: shorter, longer, a 12-byte header's escape
    // cannot be one, an empty one, and the predicted length again.
    let mut payloads = vec![vec![1; 600], vec![2; 600], vec![3; 100], vec![4; 5000]];
    payloads.extend([
        vec![],
        vec![5; 600],
        vec![6; 600],
        vec![7; 600],
        vec![8; 599],
    ]);
    let wire = encode(Framing::Length, &payloads);
    for chunk in [1, 3, 4, 5, 603, 604, 605, 1000, 1208, 1209, 100_000] {
        let frames = decode_by_targets(&wire, &[chunk]).unwrap();
        assert!(frames == expected_frames(&payloads), "chunk {chunk}");
    }
}

#[test]
fn a_predicted_length_over_a_lowered_limit_is_refused() {
    let payloads = vec![vec![1; 1000]; 4];
    let wire = encode(Framing::Length, &payloads);
    let mut decoder = Decoder::new(Framing::Length);
    let mut at = 0;
    kernel_read(&mut decoder, &wire, &mut at, 2008);
    assert!(decoder.next_frame().unwrap().is_some());
    assert!(decoder.next_frame().unwrap().is_some());
    decoder.set_max(999);
    kernel_read(&mut decoder, &wire, &mut at, 10_000);
    let err = decoder.next_frame().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert_eq!(
        decoder.next_frame().unwrap_err().kind(),
        ErrorKind::Unusable
    );
}

#[test]
fn a_stream_ending_inside_a_predicted_frame_is_unexpected_eof_with_its_bytes() {
    let payloads = vec![vec![1; 1000]; 3];
    let wire = encode(Framing::Length, &payloads);
    let cut = &wire[..2008 + 4 + 10];
    let err = decode_by_targets(cut, &[1004]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    assert!(
        err.to_string()
            .contains("10 of its 1000 payload bytes came (14 bytes with its header)"),
        "{err}"
    );
}

fn framings() -> impl Strategy<Value = Framing> {
    prop_oneof![Just(Framing::Length), Just(Framing::Lines)]
}

/// Payloads a framing can carry (no newline in a line).
fn payloads(framing: Framing) -> impl Strategy<Value = Vec<Vec<u8>>> {
    let byte = if framing == Framing::Lines {
        (0u8..=255)
            .prop_filter("no newline", |b| *b != b'\n')
            .boxed()
    } else {
        any::<u8>().boxed()
    };
    prop::collection::vec(prop::collection::vec(byte, 0..3000), 0..8)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        framing in framings(),
        data in prop::collection::vec(any::<u8>(), 0..4096),
        sizes in prop::collection::vec(1usize..64, 1..8),
        max in 0usize..2048,
    ) {
        let mut reader = reader(data, sizes, framing, max);
        for _ in 0..10_000 {
            match reader.read_frame() {
                Ok(Some(frame)) => prop_assert!(frame.len() <= max),
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn frames_come_back_whole_however_the_stream_is_cut(
        (framing, sent) in framings().prop_flat_map(|f| (Just(f), payloads(f))),
        sizes in prop::collection::vec(1usize..5000, 1..8),
    ) {
        let mut reader = reader(encode(framing, &sent), sizes, framing, DEFAULT_MAX_FRAME_LEN);
        for payload in &sent {
            let frame = reader.read_frame().unwrap();
            prop_assert_eq!(frame.as_ref(), Some(payload));
        }
        prop_assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_unexpected_eof(
        (framing, sent) in framings().prop_flat_map(|f| (Just(f), payloads(f))),
        cut in any::<prop::sample::Index>(),
        sizes in prop::collection::vec(1usize..5000, 1..8),
    ) {
        let wire = encode(framing, &sent);
        prop_assume!(!wire.is_empty());
        let cut = cut.index(wire.len());
        // Frame boundaries are where a whole number of frames ends.
        let mut boundaries = vec![0];
        for payload in &sent {
            boundaries.push(boundaries.last().unwrap() + encode(framing, std::slice::from_ref(payload)).len());
        }
        prop_assume!(!boundaries.contains(&cut));
        let mut reader = reader(wire[..cut].to_vec(), sizes, framing, DEFAULT_MAX_FRAME_LEN);
        let err = loop {
            match reader.read_frame() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a clean end at {cut}, inside a frame"),
                Err(err) => break err,
            }
        };
        prop_assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_and_the_reader_stops(
        framing in framings(),
        max in 0usize..1000,
        extra in 1usize..1000,
        sizes in prop::collection::vec(1usize..64, 1..8),
    ) {
        let wire = encode(framing, &[vec![b'x'; max + extra], b"after".to_vec()]);
        let mut reader = reader(wire, sizes, framing, max);
        prop_assert_eq!(reader.read_frame().unwrap_err().kind(), ErrorKind::TooLarge);
        prop_assert_eq!(reader.read_frame().unwrap_err().kind(), ErrorKind::Unusable);
    }

    #[test]
    fn frames_come_back_whole_through_predicted_reads(
        shapes in prop::collection::vec((prop::sample::select(vec![0usize, 1, 511, 512, 600, 4096, 20_000]), any::<u8>()), 0..40),
        chunks in prop::collection::vec(1usize..30_000, 1..6),
    ) {
        let payloads: Vec<Vec<u8>> = shapes.iter().map(|&(len, byte)| vec![byte; len]).collect();
        let wire = encode(Framing::Length, &payloads);
        let frames = decode_by_targets(&wire, &chunks).unwrap();
        prop_assert!(frames == expected_frames(&payloads));
    }

    #[test]
    fn any_length_header_is_parsed_or_refused(header in prop::collection::vec(any::<u8>(), 0..16)) {
        match length::decode_header(&header) {
            Ok(Some((4, len))) => prop_assert!(len <= i32::MAX as u64),
            Ok(Some((12, _))) => prop_assert_eq!(&header[..4], &[0xff; 4]),
            Ok(Some(other)) => prop_assert!(false, "odd header length {:?}", other),
            Ok(None) => prop_assert!(header.len() < 12),
            Err(err) => prop_assert_eq!(err.kind(), ErrorKind::BadHeader),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn large_and_small_frames_mixed_come_back_whole(
        lens in prop::collection::vec(prop_oneof![0usize..100, 60_000usize..200_000], 1..6),
        sizes in prop::collection::vec(1usize..100_000, 1..6),
    ) {
        let sent: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &len)| vec![i as u8; len]).collect();
        let mut reader = reader(encode(Framing::Length, &sent), sizes, Framing::Length, DEFAULT_MAX_FRAME_LEN);
        for payload in &sent {
            let frame = reader.read_frame().unwrap();
            prop_assert!(frame.as_ref() == Some(payload));
        }
        prop_assert_eq!(reader.read_frame().unwrap(), None);
    }
}

#[test]
fn a_long_line_is_searched_once_not_again_with_every_read() {
    let mut decoder = Decoder::new(Framing::Lines);
    decoder.set_max(10 << 20);
    let mut fed = 0;
    while fed < 4 << 20 {
        let spare = decoder.spare().unwrap();
        let n = spare.len().min(65536);
        spare[..n].fill(b'x');
        decoder.filled(n);
        fed += n;
        assert!(decoder.next_frame().unwrap().is_none());
        assert_eq!(
            decoder.scanned, fed,
            "what was searched is not searched again"
        );
    }
    let spare = decoder.spare().unwrap();
    spare[0] = b'\n';
    decoder.filled(1);
    let frame = decoder.next_frame().unwrap().unwrap();
    assert_eq!((frame.offset, frame.end), (0, fed as u64 + 1));
    assert_eq!(decoder.scanned, 0);
}

#[test]
fn a_claimed_length_is_not_allocated_before_its_bytes_come() {
    let mut decoder = Decoder::new(Framing::Length);
    decoder.set_max(usize::MAX);
    let spare = decoder.spare().unwrap();
    spare[..4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]); // 2 GiB - 1
    decoder.filled(4);
    assert!(decoder.next_frame().unwrap().is_none());
    decoder.prepare_read().unwrap();
    let mut targets = decoder.targets();
    let (payload, left) = targets.next().unwrap();
    assert_eq!(left, i32::MAX as usize);
    assert!(payload.capacity() <= FIRST_GROWTH, "{}", payload.capacity());
}

#[test]
fn a_large_frame_is_read_into_a_buffer_of_its_own_size() {
    let payload = vec![7; 1 << 20];
    let mut reader = reader(
        encode(Framing::Length, std::slice::from_ref(&payload)),
        vec![4096],
        Framing::Length,
        2 << 20,
    );
    let frame = reader.read_frame().unwrap().unwrap();
    assert!(frame == payload);
    assert_eq!(
        frame.capacity(),
        1 << 20,
        "no spare capacity: allocated once, at its size"
    );
}
