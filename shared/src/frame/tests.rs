//! Frame codec tests: error paths, resynchronisation, and property tests on damaged streams.

use super::*;
use crate::protocol::{Envelope, Request};
use proptest::prelude::*;

type Message<'a> = Envelope<Request<'a>>;

fn frame_of(seq: u32, image: &[u8]) -> Vec<u8> {
    let message = Envelope::new(
        seq,
        Request::Verify {
            user_id: seq,
            landmarks: None,
            image,
        },
    );
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    encode(&message, &mut buf).unwrap().to_vec()
}

/// Raw frame around arbitrary payload bytes, with a correct CRC.
fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut with_crc = payload.to_vec();
    with_crc.extend_from_slice(&CRC32.checksum(payload).to_le_bytes());
    let mut out = vec![0u8; cobs::max_encoding_length(with_crc.len()) + 1];
    let n = cobs::encode(&with_crc, &mut out);
    out.truncate(n);
    out.push(0);
    out
}

/// Feeds `stream` in chunks of the given sizes (cycled) and collects what comes out:
/// `Ok(seq)` per decoded frame, `Err(reason)` per bad frame.
fn run<const N: usize>(
    stream: &[u8],
    chunk_sizes: &[usize],
) -> Vec<core::result::Result<u32, BadFrame>> {
    let mut decoder = FrameDecoder::<N>::new();
    let mut events = Vec::new();
    let mut offset = 0;
    let mut sizes = chunk_sizes.iter().cycle();
    while offset < stream.len() {
        let size = (*sizes.next().unwrap()).max(1);
        let mut rest = &stream[offset..(offset + size).min(stream.len())];
        offset += rest.len();
        while !rest.is_empty() {
            let (used, event) = decoder.feed::<Message>(rest);
            assert!(used > 0 && used <= rest.len());
            rest = &rest[used..];
            match event {
                Event::Frame(message) => events.push(Ok(message.seq)),
                Event::BadFrame { reason, .. } => events.push(Err(reason)),
                Event::NeedMore => assert!(rest.is_empty()),
            }
        }
    }
    events
}

#[test]
fn frames_split_anywhere_are_reassembled() {
    let mut stream = frame_of(1, b"first");
    stream.extend(frame_of(2, &[0u8; 600]));
    stream.extend(frame_of(3, b""));
    for sizes in [&[1usize][..], &[2, 7], &[stream.len()], &[300, 1, 5000]] {
        assert_eq!(
            run::<1024>(&stream, sizes),
            [Ok(1), Ok(2), Ok(3)],
            "{sizes:?}"
        );
    }
}

#[test]
fn empty_frames_are_skipped() {
    let mut stream = vec![0, 0];
    stream.extend(frame_of(5, b"x"));
    stream.extend([0, 0, 0]);
    assert_eq!(run::<256>(&stream, &[64]), [Ok(5)]);
}

#[test]
fn need_more_until_the_delimiter() {
    let frame = frame_of(9, b"abc");
    let mut decoder = FrameDecoder::<256>::new();
    let (used, event) = decoder.feed::<Message>(&frame[..frame.len() - 1]);
    assert_eq!((used, event), (frame.len() - 1, Event::NeedMore));
    assert_eq!(decoder.buffered(), frame.len() - 1);
    let (used, event) = decoder.feed::<Message>(&frame[frame.len() - 1..]);
    assert_eq!(used, 1);
    assert!(matches!(event, Event::Frame(m) if m.seq == 9));
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn crc_error_then_recovery() {
    let mut bad = frame_of(1, b"hello");
    bad[6] ^= 0x01;
    let mut stream = bad;
    stream.extend(frame_of(2, b"world"));
    assert_eq!(run::<256>(&stream, &[4]), [Err(BadFrame::Crc), Ok(2)]);
}

#[test]
fn frame_shorter_than_a_crc_is_a_crc_error() {
    let mut stream = vec![0x03, 0x01, 0x02, 0x00];
    stream.extend(frame_of(2, b""));
    assert_eq!(run::<256>(&stream, &[100]), [Err(BadFrame::Crc), Ok(2)]);
}

#[test]
fn cobs_error_then_recovery() {
    // The code byte 0x09 announces 8 bytes but only 2 follow before the delimiter.
    let mut stream = vec![0x09, 0x41, 0x42, 0x00];
    stream.extend(frame_of(3, b"ok"));
    assert_eq!(run::<256>(&stream, &[3]), [Err(BadFrame::Cobs), Ok(3)]);
}

#[test]
fn too_long_is_reported_once_then_recovery() {
    let mut stream = frame_of(1, &[7u8; 200]);
    stream.extend(frame_of(2, b"short"));
    let mut decoder = FrameDecoder::<64>::new();
    let (used, event) = decoder.feed::<Message>(&stream);
    assert_eq!(
        event,
        Event::BadFrame {
            reason: BadFrame::TooLong,
            header: None
        }
    );
    assert_eq!(decoder.bad_frames(), 1);
    let (_, event) = decoder.feed::<Message>(&stream[used..]);
    assert!(matches!(event, Event::Frame(m) if m.seq == 2));
}

#[test]
fn undecodable_frame_reports_its_header() {
    // Version 2, seq 300, then a variant index no Request has.
    let stream = raw_frame(&[0x02, 0xac, 0x02, 0x63]);
    let mut decoder = FrameDecoder::<64>::new();
    let (_, event) = decoder.feed::<Message>(&stream);
    let header = Some(Header {
        version: 2,
        seq: 300,
    });
    assert_eq!(
        event,
        Event::BadFrame {
            reason: BadFrame::Undecodable,
            header
        }
    );

    // Trailing bytes after a valid message are refused too.
    let stream = raw_frame(&[0x01, 0x05, 0x00, 0xee]);
    let (_, event) = decoder.feed::<Message>(&stream);
    let header = Some(Header { version: 1, seq: 5 });
    assert_eq!(
        event,
        Event::BadFrame {
            reason: BadFrame::Undecodable,
            header
        }
    );
    assert_eq!(decoder.bad_frames(), 2);
}

#[test]
fn reset_drops_a_partial_frame() {
    let frame = frame_of(4, b"abc");
    let mut decoder = FrameDecoder::<256>::new();
    decoder.feed::<Message>(&frame[..3]);
    decoder.reset();
    let (_, event) = decoder.feed::<Message>(&frame);
    assert!(matches!(event, Event::Frame(m) if m.seq == 4));
}

#[test]
fn encode_error_paths() {
    let message = Envelope::new(1, Request::Hello);
    assert_eq!(encode(&message, &mut []), Err(Error::BufferTooSmall));
    assert_eq!(encode(&message, &mut [0u8; 5]), Err(Error::BufferTooSmall));
    // The exact length works, one byte less does not.
    let len = encode(&message, &mut [0u8; 64]).unwrap().len();
    assert!(encode(&message, &mut vec![0u8; len]).is_ok());
    assert_eq!(
        encode(&message, &mut vec![0u8; len - 1]),
        Err(Error::BufferTooSmall)
    );

    let image = vec![1u8; MAX_FRAME_LEN];
    let too_big = Envelope::new(
        1,
        Request::Verify {
            user_id: 1,
            landmarks: None,
            image: &image,
        },
    );
    assert_eq!(
        encode(&too_big, &mut vec![0u8; 2 * MAX_FRAME_LEN]),
        Err(Error::FrameTooLong)
    );
}

#[test]
fn encoded_length_boundary_in_cobs_runs() {
    // Payloads around the 254-byte COBS block size, with and without zeros, at every buffer
    // length near the boundary: either a correct frame or BufferTooSmall, never a bad frame.
    for image_len in 240..270 {
        for zeros in [false, true] {
            let image: Vec<u8> = (0..image_len)
                .map(|i| if zeros { (i % 3) as u8 } else { 1 })
                .collect();
            let message = Envelope::new(
                1,
                Request::Verify {
                    user_id: 1,
                    landmarks: None,
                    image: &image,
                },
            );
            let full = frame_of_message(&message, 4096).unwrap();
            for buf_len in full.len().saturating_sub(3)..full.len() + 3 {
                match frame_of_message(&message, buf_len) {
                    Ok(frame) => {
                        let mut frame = frame;
                        assert_eq!(decode::<Message>(&mut frame).unwrap(), message);
                    }
                    Err(error) => {
                        assert_eq!(error, Error::BufferTooSmall);
                        assert!(buf_len < full.len());
                    }
                }
            }
        }
    }
}

fn frame_of_message(message: &Message, buf_len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; buf_len];
    encode(message, &mut buf).map(<[u8]>::to_vec)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in proptest::collection::vec(1usize..300, 1..5),
    ) {
        let events = run::<128>(&bytes, &sizes);
        // Every event but a (practically impossible) CRC-valid frame is a bad frame.
        prop_assert!(events.iter().filter(|e| e.is_ok()).count() <= 1);
    }

    #[test]
    fn garbage_between_frames_never_hides_a_frame(
        parts in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| (true, b)),
                proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b)),
            ],
            0..12,
        ),
        sizes in proptest::collection::vec(1usize..500, 1..5),
    ) {
        // Garbage ends in a delimiter, so the next frame starts clean.
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (seq, (is_frame, bytes)) in parts.iter().enumerate() {
            if *is_frame {
                stream.extend(frame_of(seq as u32, bytes));
                expected.push(seq as u32);
            } else {
                stream.extend(bytes);
                stream.push(0);
            }
        }
        let decoded: Vec<u32> = run::<512>(&stream, &sizes).into_iter().filter_map(|e| e.ok()).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn corrupted_frames_are_dropped_and_the_rest_recovered(
        images in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..10),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        sizes in proptest::collection::vec(1usize..200, 1..5),
    ) {
        let mut stream = Vec::new();
        let mut spans = Vec::new();
        for (seq, image) in images.iter().enumerate() {
            let start = stream.len();
            stream.extend(frame_of(seq as u32, image));
            spans.push((start, stream.len()));
        }
        let original = stream.clone();
        for (index, value) in &damage {
            let at = index.index(stream.len());
            stream[at] = *value;
        }
        let changed = |at: usize| stream[at] != original[at];

        // A frame survives if its bytes and the delimiter before it are unchanged.
        let expected: Vec<u32> = spans
            .iter()
            .enumerate()
            .filter(|(_, (start, end))| (start.saturating_sub(1)..*end).all(|at| !changed(at)))
            .map(|(seq, _)| seq as u32)
            .collect();
        let decoded: Vec<u32> = run::<512>(&stream, &sizes).into_iter().filter_map(|e| e.ok()).collect();
        prop_assert_eq!(decoded, expected);
    }
}
