//! Pinned wire bytes of every message, and encode/decode round trips.

use super::*;
use crate::frame::{decode, encode, MAX_FRAME_LEN};
use proptest::prelude::*;

const LANDMARKS: Landmarks = [38.5, 51.0, 73.5, 51.5, 56.0, 71.0, 41.5, 92.0, 70.5, 92.5];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn frame_hex<T: Serialize>(message: &T) -> String {
    let mut buf = [0u8; 512];
    hex(encode(message, &mut buf).unwrap())
}

fn requests() -> Vec<(&'static str, Request<'static>)> {
    vec![
        ("hello", Request::Hello),
        ("auth_challenge", Request::AuthChallenge),
        (
            "auth_response",
            Request::AuthResponse {
                mac: core::array::from_fn(|i| i as u8),
            },
        ),
        (
            "enroll_begin",
            Request::EnrollBegin {
                user_id: 1001,
                name: "Ada",
                image_count: 3,
                replace: false,
            },
        ),
        (
            "enroll_chunk",
            Request::EnrollChunk {
                image_index: 1,
                offset: 0,
                last: false,
                landmarks: Some(LANDMARKS),
                bytes: &[0xff, 0xd8, 0xff, 0x00, 0x10],
            },
        ),
        (
            "enroll_chunk_no_landmarks",
            Request::EnrollChunk {
                image_index: 1,
                offset: 300,
                last: true,
                landmarks: None,
                bytes: &[0xff, 0xd9],
            },
        ),
        ("enroll_commit", Request::EnrollCommit),
        (
            "verify",
            Request::Verify {
                user_id: 1001,
                landmarks: None,
                image: &[0xff, 0xd8, 0x00, 0xd9],
            },
        ),
        (
            "verify_landmarks",
            Request::Verify {
                user_id: 7,
                landmarks: Some(LANDMARKS),
                image: &[1, 2, 3],
            },
        ),
        ("list", Request::List { start: 16 }),
        ("delete", Request::Delete { user_id: 1001 }),
        ("stats", Request::Stats),
        ("unlock", Request::Unlock { user_id: 1001 }),
    ]
}

fn responses() -> Vec<(&'static str, Response<'static>)> {
    let mut entries = heapless::Vec::new();
    entries
        .push(UserEntry {
            user_id: 1001,
            name: "Ada",
            samples: 3,
        })
        .unwrap();
    entries
        .push(UserEntry {
            user_id: 7,
            name: "Björk",
            samples: 1,
        })
        .unwrap();
    vec![
        (
            "hello",
            Response::Hello {
                protocol_version: PROTOCOL_VERSION,
                firmware_version: "0.1.0",
                model_id: 0x0123_4567_89ab_cdef,
                embedding_dim: 128,
                threshold: 0.5,
                capacity: 1000,
                enrolled: 2,
            },
        ),
        (
            "challenge",
            Response::Challenge {
                nonce: [0xa5; NONCE_LEN],
            },
        ),
        ("auth_ok", Response::AuthOk),
        ("enroll_ready", Response::EnrollReady),
        (
            "enroll_progress",
            Response::EnrollProgress {
                image_index: 2,
                received: 20_000,
                image_done: true,
            },
        ),
        (
            "enrolled",
            Response::Enrolled {
                user_id: 1001,
                samples: 3,
            },
        ),
        (
            "verified",
            Response::Verified {
                user_id: 1001,
                score: 0.75,
                accepted: true,
                failures: 0,
                locked_out_ms: 0,
            },
        ),
        (
            "verified_locked",
            Response::Verified {
                user_id: 1001,
                score: -0.125,
                accepted: false,
                failures: 0,
                locked_out_ms: 30_000,
            },
        ),
        (
            "user_list",
            Response::UserList {
                total: 18,
                entries,
                more: true,
            },
        ),
        ("deleted", Response::Deleted { user_id: 1001 }),
        (
            "stats",
            Response::Stats(Counters {
                uptime_ms: 3_600_000,
                verifies: 10,
                accepts: 7,
                rejects: 3,
                lockouts: 0,
                bad_frames: 1,
                enrolled: 2,
                capacity: 1000,
                failures: 3,
                locked_out_ms: 0,
            }),
        ),
        (
            "error",
            Response::Error {
                code: ErrorCode::UnknownUser,
                detail: "no user 5",
            },
        ),
        (
            "error_other",
            Response::Error {
                code: ErrorCode::Other(300),
                detail: "",
            },
        ),
    ]
}

/// Frames of `Envelope::new(258, message)`, computed once and checked by hand against the
/// postcard format: version 01, seq 258 = varint 82 02, variant index, fields, CRC-32 LE,
/// all COBS-encoded and ended by 00.
const REQUEST_FRAMES: &[(&str, &str)] = &[
    ("hello", "040182020515157f4900"),
    ("auth_challenge", "09018202018325783e00"),
    (
        "auth_response",
        "0501820202240102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fa7cf070500",
    ),
    ("enroll_begin", "0c01820203e907034164610305b57bc69e00"),
    (
        "enroll_chunk",
        "06018202040101020101031a4201034c420103934201034e420103604201038e42010326420103b8420103\
         8d420107b94205ffd8ff06109406d7b100",
    ),
    (
        "enroll_chunk_no_landmarks",
        "090182020401ac02010802ffd93cf542c500",
    ),
    ("enroll_commit", "09018202059ae1153900"),
    ("verify", "0701820206e9070404ffd806d9e4013ab600"),
    (
        "verify_landmarks",
        "0701820206070101031a4201034c420103934201034e420103604201038e42010326420103b84201038d42\
         010bb94203010203ee8d0fc100",
    ),
    ("list", "0a0182020710d0f260ed00"),
    ("delete", "0b01820208e907c1d57a0400"),
    ("stats", "0901820209b1ada33000"),
    ("unlock", "0b0182020ae907af01fe0700"),
];

/// Same as [`REQUEST_FRAMES`] for responses.
const RESPONSE_FRAMES: &[(&str, &str)] = &[
    (
        "hello",
        "04018202130105302e312e30ef9bafcdf8acd1910180010101093fe8070238408ae900",
    ),
    (
        "challenge",
        "2901820201a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5bd2f69b800",
    ),
    ("auth_ok", "0901820202397471a700"),
    ("enroll_ready", "0901820203af4476d000"),
    ("enroll_progress", "0e0182020402a09c010153dbdc4100"),
    ("enrolled", "0c01820205e9070319ee065500"),
    ("verified", "0701820206e9070104403f010105de43456600"),
    (
        "verified_locked",
        "0701820206e907010102be0108b0ea0155c2f80b00",
    ),
    (
        "user_list",
        "1c018202071202e90703416461030706426ac3b6726b010130b595a500",
    ),
    ("deleted", "0b01820208e907c1d57a0400"),
    ("stats", "0c0182020980dddb010a0703060102e8070305e095cde700"),
    ("error", "140182020a06096e6f20757365722035bdc30ebd00"),
    ("error_other", "070182020aac02059b144a9f00"),
];

fn check_golden<'a, T>(cases: Vec<(&'static str, T)>, pinned: &[(&str, &str)])
where
    T: Serialize + Deserialize<'a> + PartialEq + core::fmt::Debug,
{
    assert_eq!(cases.len(), pinned.len());
    for ((name, message), (pinned_name, pinned_hex)) in cases.into_iter().zip(pinned) {
        assert_eq!(name, *pinned_name);
        let envelope = Envelope::new(258, message);
        assert_eq!(
            frame_hex(&envelope),
            *pinned_hex,
            "wire bytes of {name} changed"
        );
    }
}

#[test]
fn request_wire_bytes_are_pinned() {
    check_golden(requests(), REQUEST_FRAMES);
}

#[test]
fn response_wire_bytes_are_pinned() {
    check_golden(responses(), RESPONSE_FRAMES);
}

#[test]
fn golden_frames_decode_back() {
    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
    for ((_, request), (name, text)) in requests().into_iter().zip(REQUEST_FRAMES) {
        let mut bytes = unhex(text);
        let decoded: Envelope<Request> = decode(&mut bytes).unwrap();
        assert_eq!(decoded, Envelope::new(258, request), "{name}");
    }
    for ((_, response), (name, text)) in responses().into_iter().zip(RESPONSE_FRAMES) {
        let mut bytes = unhex(text);
        let decoded: Envelope<Response> = decode(&mut bytes).unwrap();
        assert_eq!(decoded, Envelope::new(258, response), "{name}");
    }
}

#[test]
fn every_variant_has_a_golden_case() {
    // Adding a variant breaks this match, a reminder to pin its bytes above.
    for (_, request) in requests() {
        match request {
            Request::Hello
            | Request::AuthChallenge
            | Request::AuthResponse { .. }
            | Request::EnrollBegin { .. }
            | Request::EnrollChunk { .. }
            | Request::EnrollCommit
            | Request::Verify { .. }
            | Request::List { .. }
            | Request::Delete { .. }
            | Request::Stats
            | Request::Unlock { .. } => {}
        }
    }
    for (_, response) in responses() {
        match response {
            Response::Hello { .. }
            | Response::Challenge { .. }
            | Response::AuthOk
            | Response::EnrollReady
            | Response::EnrollProgress { .. }
            | Response::Enrolled { .. }
            | Response::Verified { .. }
            | Response::UserList { .. }
            | Response::Deleted { .. }
            | Response::Stats(_)
            | Response::Error { .. } => {}
        }
    }
}

#[test]
fn error_codes_have_stable_numbers_and_meanings() {
    let mut seen = std::collections::HashSet::new();
    for number in 1..=20u16 {
        let code = ErrorCode::from_number(number);
        assert_eq!(code.number(), number);
        assert!(!matches!(code, ErrorCode::Other(_)), "{number}");
        assert!(
            seen.insert(code.meaning()),
            "duplicate meaning for {number}"
        );
        assert_eq!(code.meaning(), code.meaning().to_lowercase());
    }
    assert_eq!(ErrorCode::from_number(0), ErrorCode::Other(0));
    assert_eq!(ErrorCode::from_number(999).number(), 999);
    assert_eq!(ErrorCode::LockedOut.number(), 14);
    assert_eq!(ErrorCode::from(Error::GalleryFull), ErrorCode::GalleryFull);
    assert_eq!(ErrorCode::from(Error::WrongModel), ErrorCode::WrongModel);
    assert_eq!(ErrorCode::from(Error::CrcMismatch), ErrorCode::StorageError);
    assert_eq!(
        ErrorCode::UnknownUser.to_string(),
        "error 6: no user with this id is enrolled"
    );
}

#[test]
fn largest_image_fits_in_one_frame() {
    let image = vec![0u8; MAX_IMAGE_LEN];
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let landmarks = Some([f32::MAX; 10]);
    let verify = Envelope::new(
        u32::MAX,
        Request::Verify {
            user_id: u32::MAX,
            landmarks,
            image: &image,
        },
    );
    let frame = encode(&verify, &mut buf).unwrap();
    assert!(frame.len() <= MAX_FRAME_LEN);
    let chunk = Request::EnrollChunk {
        image_index: u8::MAX,
        offset: u32::MAX,
        last: true,
        landmarks,
        bytes: &image,
    };
    assert!(encode(&Envelope::new(u32::MAX, chunk), &mut buf).is_ok());
}

#[test]
fn a_full_user_list_page_fits_in_a_small_frame() {
    let name = "é".repeat(16);
    let mut entries = heapless::Vec::new();
    for i in 0..LIST_PAGE_LEN as u32 {
        entries
            .push(UserEntry {
                user_id: u32::MAX - i,
                name: &name,
                samples: u16::MAX,
            })
            .unwrap();
    }
    let page = Envelope::new(
        u32::MAX,
        Response::UserList {
            total: u32::MAX,
            entries,
            more: true,
        },
    );
    let mut buf = [0u8; 1024];
    assert!(encode(&page, &mut buf).is_ok());
}

fn landmarks() -> impl Strategy<Value = Option<Landmarks>> {
    proptest::option::of(proptest::array::uniform10(-1e4f32..1e4))
}

proptest! {
    #[test]
    fn requests_round_trip(
        variant in 0u8..11,
        seq in any::<u32>(),
        id in any::<u32>(),
        small in any::<u8>(),
        flag in any::<bool>(),
        name in "\\PC{0,40}",
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        marks in landmarks(),
        mac in any::<[u8; 32]>(),
    ) {
        let request = match variant {
            0 => Request::Hello,
            1 => Request::AuthChallenge,
            2 => Request::AuthResponse { mac },
            3 => Request::EnrollBegin { user_id: id, name: &name, image_count: small, replace: flag },
            4 => Request::EnrollChunk {
                image_index: small, offset: id, last: flag, landmarks: marks, bytes: &bytes,
            },
            5 => Request::EnrollCommit,
            6 => Request::Verify { user_id: id, landmarks: marks, image: &bytes },
            7 => Request::List { start: id },
            8 => Request::Delete { user_id: id },
            9 => Request::Unlock { user_id: id },
            _ => Request::Stats,
        };
        let envelope = Envelope::new(seq, request);
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let mut frame = encode(&envelope, &mut buf).unwrap().to_vec();
        prop_assert_eq!(frame.iter().filter(|&&b| b == 0).count(), 1);
        let decoded: Envelope<Request> = decode(&mut frame).unwrap();
        prop_assert_eq!(decoded, envelope);
    }

    #[test]
    fn responses_round_trip(
        variant in 0u8..11,
        seq in any::<u32>(),
        id in any::<u32>(),
        wide in any::<u64>(),
        small in any::<u8>(),
        flag in any::<bool>(),
        score in -1.0f32..1.0,
        text in "\\PC{0,40}",
        names in proptest::collection::vec("\\PC{0,32}", 0..=LIST_PAGE_LEN),
        nonce in any::<[u8; 32]>(),
        code in any::<u16>(),
    ) {
        let mut entries = heapless::Vec::new();
        for (i, name) in names.iter().enumerate() {
            entries.push(UserEntry { user_id: id ^ i as u32, name, samples: u16::from(small) }).unwrap();
        }
        let response = match variant {
            0 => Response::Hello {
                protocol_version: small, firmware_version: &text, model_id: wide,
                embedding_dim: u16::from(small), threshold: score, capacity: id, enrolled: id / 2,
            },
            1 => Response::Challenge { nonce },
            2 => Response::AuthOk,
            3 => Response::EnrollReady,
            4 => Response::EnrollProgress { image_index: small, received: id, image_done: flag },
            5 => Response::Enrolled { user_id: id, samples: u16::from(small) },
            6 => Response::Verified {
                user_id: id, score, accepted: flag, failures: small, locked_out_ms: wide,
            },
            7 => Response::UserList { total: id, entries, more: flag },
            8 => Response::Deleted { user_id: id },
            9 => Response::Stats(Counters {
                uptime_ms: wide, verifies: id, accepts: id / 3, rejects: id / 5, lockouts: 1,
                bad_frames: 2, enrolled: 3, capacity: 4, failures: small, locked_out_ms: wide / 7,
            }),
            _ => Response::Error { code: ErrorCode::from_number(code), detail: &text },
        };
        let envelope = Envelope::new(seq, response);
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let mut frame = encode(&envelope, &mut buf).unwrap().to_vec();
        let decoded: Envelope<Response> = decode(&mut frame).unwrap();
        prop_assert_eq!(decoded, envelope);
    }
}
