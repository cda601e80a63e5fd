//! Host side of the serial protocol: numbered requests, matched responses, chunked enrollment.
//!
//! Generic over a [`Link`] (a serial port, a pseudo-terminal, a test pipe), so the workstation
//! client, the firmware's tests and the end-to-end tests drive the board with one piece of code.

use crate::auth;
use crate::frame::{self, BadFrame, Event, FrameDecoder, MAX_FRAME_LEN};
use crate::protocol::{
    Envelope, ErrorCode, Landmarks, Request, Response, MAX_DETAIL_LEN, NONCE_LEN,
};
use crate::Error;

/// Image bytes per `EnrollChunk`: leaves room for the envelope inside one frame.
pub const ENROLL_CHUNK_LEN: usize = 16 * 1024;

/// Auth context the board mixes into the admin MAC: empty, so one key serves any board.
pub const AUTH_CONTEXT: &[u8] = b"";

/// A byte link to the board.
pub trait Link {
    /// What the link reports when it fails.
    type Error;

    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> core::result::Result<(), Self::Error>;

    /// Reads what has arrived into `buf`; `Ok(0)` when nothing came within the link's timeout.
    fn read(&mut self, buf: &mut [u8]) -> core::result::Result<usize, Self::Error>;
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientError<E> {
    /// The link failed.
    Link(E),
    /// The request could not be framed (too long for a frame, ...).
    Encode(Error),
    /// No response arrived within the allowed number of idle reads.
    Timeout,
    /// The response frame was damaged or not a response.
    BadFrame(BadFrame),
    /// The board answered with something other than what the exchange expects.
    Unexpected,
}

impl<E: core::fmt::Display> core::fmt::Display for ClientError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Link(e) => write!(f, "serial link failed: {e}"),
            ClientError::Encode(e) => write!(f, "request could not be framed: {e}"),
            ClientError::Timeout => f.write_str("the board did not answer in time"),
            ClientError::BadFrame(reason) => {
                write!(f, "the board's answer was damaged ({reason:?})")
            }
            ClientError::Unexpected => f.write_str("the board answered out of turn"),
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> core::error::Error for ClientError<E> {}

/// One image to enroll: encoded bytes (JPEG, PNG, PGM) and optional 5-point landmarks.
#[derive(Debug, Clone, Copy)]
pub struct EnrollImage<'a> {
    /// The encoded image file.
    pub bytes: &'a [u8],
    /// Landmarks in the image's pixel coordinates; without them the board crops the centre.
    pub landmarks: Option<Landmarks>,
}

/// A protocol client: sends requests with fresh sequence numbers and waits for their answers.
pub struct Client<L: Link> {
    link: L,
    next_seq: u32,
    max_idle_reads: u32,
    tx: [u8; MAX_FRAME_LEN],
    decoder: FrameDecoder<MAX_FRAME_LEN>,
    rx: [u8; 512],
    rx_start: usize,
    rx_end: usize,
}

impl<L: Link> Client<L> {
    /// A client over `link` that gives up after `max_idle_reads` empty reads in a row.
    pub fn new(link: L, max_idle_reads: u32) -> Self {
        Self {
            link,
            next_seq: 1,
            max_idle_reads,
            tx: [0; MAX_FRAME_LEN],
            decoder: FrameDecoder::new(),
            rx: [0; 512],
            rx_start: 0,
            rx_end: 0,
        }
    }

    /// The link, e.g. to send raw bytes in a test.
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    /// Sends `request` and hands its response to `on_response`; answers to older requests
    /// (other sequence numbers) are skipped.
    pub fn call<R>(
        &mut self,
        request: &Request<'_>,
        on_response: impl FnOnce(&Response<'_>) -> R,
    ) -> Result<R, ClientError<L::Error>> {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let frame = frame::encode(&Envelope::new(seq, request.clone()), &mut self.tx)
            .map_err(ClientError::Encode)?;
        self.link.write_all(frame).map_err(ClientError::Link)?;

        let mut idle = 0;
        loop {
            if self.rx_start == self.rx_end {
                let got = self.link.read(&mut self.rx).map_err(ClientError::Link)?;
                (self.rx_start, self.rx_end) = (0, got);
                if got == 0 {
                    idle += 1;
                    if idle >= self.max_idle_reads {
                        return Err(ClientError::Timeout);
                    }
                    continue;
                }
                idle = 0;
            }

            let input = &self.rx[self.rx_start..self.rx_end];
            let (used, event) = self.decoder.feed::<Envelope<Response<'_>>>(input);
            self.rx_start += used;
            match event {
                Event::Frame(envelope) if envelope.seq == seq => {
                    return Ok(on_response(&envelope.body));
                }
                Event::Frame(_) | Event::NeedMore => {}
                Event::BadFrame { reason, .. } => return Err(ClientError::BadFrame(reason)),
            }
        }
    }

    /// Runs the admin challenge-response with `key`; returns the board's final answer
    /// (`AuthOk` on success) through `on_response`.
    pub fn authenticate<R>(
        &mut self,
        key: &[u8],
        on_response: impl FnOnce(&Response<'_>) -> R,
    ) -> Result<R, ClientError<L::Error>> {
        let nonce = self.call(&Request::AuthChallenge, |response| match response {
            Response::Challenge { nonce } => Some(*nonce),
            _ => None,
        })?;
        let nonce: [u8; NONCE_LEN] = nonce.ok_or(ClientError::Unexpected)?;
        let mac = auth::respond(key, &nonce, AUTH_CONTEXT).map_err(ClientError::Encode)?;
        self.call(&Request::AuthResponse { mac }, on_response)
    }

    /// Enrolls `user_id` from several images, sent in chunks of at most `chunk_len` bytes.
    ///
    /// `progress(sent, total)` is called after each acknowledged chunk (bytes over all
    /// images). Stops at the first refusal from the board and returns it.
    pub fn enroll(
        &mut self,
        user_id: u32,
        name: &str,
        replace: bool,
        images: &[EnrollImage<'_>],
        chunk_len: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<EnrollOutcome, ClientError<L::Error>> {
        let image_count =
            u8::try_from(images.len()).map_err(|_| ClientError::Encode(Error::BufferTooSmall))?;
        let chunk_len = chunk_len.clamp(1, ENROLL_CHUNK_LEN);
        let total: usize = images.iter().map(|image| image.bytes.len()).sum();
        let mut sent = 0;

        let begin = Request::EnrollBegin {
            user_id,
            name,
            image_count,
            replace,
        };
        if let Some(refusal) = self.step(&begin, |r| matches!(r, Response::EnrollReady))? {
            return Ok(EnrollOutcome::Refused(refusal));
        }
        for (index, image) in images.iter().enumerate() {
            let pieces = image.bytes.chunks(chunk_len).count().max(1);
            for piece in 0..pieces {
                let start = piece * chunk_len;
                let end = (start + chunk_len).min(image.bytes.len());
                let chunk = Request::EnrollChunk {
                    image_index: index as u8,
                    offset: start as u32,
                    last: piece + 1 == pieces,
                    landmarks: if piece == 0 { image.landmarks } else { None },
                    bytes: &image.bytes[start..end],
                };
                let ack = |r: &Response<'_>| matches!(r, Response::EnrollProgress { .. });
                if let Some(refusal) = self.step(&chunk, ack)? {
                    return Ok(EnrollOutcome::Refused(refusal));
                }
                sent += end - start;
                progress(sent, total);
            }
        }

        self.call(&Request::EnrollCommit, |response| match response {
            Response::Enrolled { user_id, samples } => Ok(EnrollOutcome::Enrolled {
                user_id: *user_id,
                samples: *samples,
            }),
            other => Refusal::from_response(other)
                .map(EnrollOutcome::Refused)
                .ok_or(ClientError::Unexpected),
        })?
    }

    /// Sends one step of an exchange: `None` when the answer is the expected one.
    fn step(
        &mut self,
        request: &Request<'_>,
        expected: impl FnOnce(&Response<'_>) -> bool,
    ) -> Result<Option<Refusal>, ClientError<L::Error>> {
        self.call(request, |response| {
            if expected(response) {
                Ok(None)
            } else {
                Refusal::from_response(response)
                    .map(Some)
                    .ok_or(ClientError::Unexpected)
            }
        })?
    }
}

/// An error answer from the board, copied out of the receive buffer.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Refusal {
    /// What went wrong.
    pub code: ErrorCode,
    /// The board's detail text (truncated to [`MAX_DETAIL_LEN`] bytes).
    pub detail: heapless::String<MAX_DETAIL_LEN>,
}

impl Refusal {
    /// The refusal carried by `response`, if it is a `Response::Error`.
    pub fn from_response(response: &Response<'_>) -> Option<Self> {
        let Response::Error { code, detail } = response else {
            return None;
        };
        let mut copy = heapless::String::new();
        for ch in detail.chars() {
            if copy.push(ch).is_err() {
                break;
            }
        }
        Some(Self {
            code: *code,
            detail: copy,
        })
    }
}

/// How an enrollment ended.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EnrollOutcome {
    /// The user is in the gallery with this many samples.
    Enrolled {
        /// The enrolled user.
        user_id: u32,
        /// Images averaged into the template.
        samples: u16,
    },
    /// The board refused a step.
    Refused(Refusal),
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::vec::Vec;

    use super::*;

    /// A fake board: answers each request frame with what `answer` returns, optionally
    /// preceded by a stale answer to an older sequence number.
    struct FakeBoard {
        outbox: VecDeque<u8>,
        requests: Vec<std::string::String>,
        stale_first: bool,
        silent: bool,
        chunk_bytes: usize,
        refuse_chunk: Option<usize>,
    }

    impl FakeBoard {
        fn new() -> Self {
            Self {
                outbox: VecDeque::new(),
                requests: Vec::new(),
                stale_first: false,
                silent: false,
                chunk_bytes: 0,
                refuse_chunk: None,
            }
        }

        fn answer(&mut self, request: &Request<'_>) -> Response<'static> {
            match request {
                Request::Hello => Response::Hello {
                    protocol_version: 1,
                    firmware_version: "test",
                    model_id: 7,
                    embedding_dim: 128,
                    threshold: 0.4,
                    capacity: 10,
                    enrolled: 0,
                },
                Request::AuthChallenge => Response::Challenge {
                    nonce: [3; NONCE_LEN],
                },
                Request::AuthResponse { mac } => {
                    let good =
                        auth::verify(b"0123456789abcdef", &[3; NONCE_LEN], AUTH_CONTEXT, mac);
                    if good == Ok(true) {
                        Response::AuthOk
                    } else {
                        Response::Error {
                            code: ErrorCode::AuthFailed,
                            detail: "bad mac",
                        }
                    }
                }
                Request::EnrollBegin { .. } => Response::EnrollReady,
                Request::EnrollChunk {
                    image_index,
                    bytes,
                    last,
                    ..
                } => {
                    let count = self
                        .requests
                        .iter()
                        .filter(|r| r.starts_with("EnrollChunk"))
                        .count();
                    if self.refuse_chunk == Some(count) {
                        return Response::Error {
                            code: ErrorCode::BadImage,
                            detail: "not an image",
                        };
                    }
                    self.chunk_bytes += bytes.len();
                    Response::EnrollProgress {
                        image_index: *image_index,
                        received: bytes.len() as u32,
                        image_done: *last,
                    }
                }
                Request::EnrollCommit => Response::Enrolled {
                    user_id: 5,
                    samples: 2,
                },
                _ => Response::Error {
                    code: ErrorCode::Internal,
                    detail: "",
                },
            }
        }
    }

    impl Link for FakeBoard {
        type Error = ();

        fn write_all(&mut self, bytes: &[u8]) -> Result<(), ()> {
            let mut frame = bytes.to_vec();
            let envelope: Envelope<Request<'_>> = frame::decode(&mut frame).map_err(|_| ())?;
            let name = std::format!("{:?}", envelope.body);
            self.requests.push(name);
            if self.silent {
                return Ok(());
            }
            let response = self.answer(&envelope.body);
            let mut buf = [0u8; 256];
            if self.stale_first {
                let stale = Envelope::new(envelope.seq.wrapping_sub(1), Response::AuthOk);
                self.outbox
                    .extend(frame::encode(&stale, &mut buf).map_err(|_| ())?);
            }
            let reply = Envelope::new(envelope.seq, response);
            self.outbox
                .extend(frame::encode(&reply, &mut buf).map_err(|_| ())?);
            Ok(())
        }

        fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
            // Deliver in small pieces to exercise partial frames.
            let n = self.outbox.len().min(buf.len()).min(7);
            for slot in buf.iter_mut().take(n) {
                *slot = self.outbox.pop_front().unwrap_or(0);
            }
            Ok(n)
        }
    }

    #[test]
    fn call_returns_the_matching_answer_and_skips_stale_ones() {
        let mut board = FakeBoard::new();
        board.stale_first = true;
        let mut client = Client::new(board, 3);
        let dim = client.call(&Request::Hello, |r| match r {
            Response::Hello { embedding_dim, .. } => Some(*embedding_dim),
            _ => None,
        });
        assert_eq!(dim, Ok(Some(128)));
    }

    #[test]
    fn silence_is_a_timeout() {
        let mut board = FakeBoard::new();
        board.silent = true;
        let mut client = Client::new(board, 3);
        assert_eq!(
            client.call(&Request::Hello, |_| ()),
            Err(ClientError::Timeout)
        );
    }

    #[test]
    fn authenticate_answers_the_challenge_with_the_key() {
        let mut client = Client::new(FakeBoard::new(), 3);
        let ok = client.authenticate(b"0123456789abcdef", |r| matches!(r, Response::AuthOk));
        assert_eq!(ok, Ok(true));
        let wrong = client.authenticate(b"fedcba9876543210", |r| matches!(r, Response::AuthOk));
        assert_eq!(wrong, Ok(false));
        assert_eq!(
            client.authenticate(b"short", |_| ()),
            Err(ClientError::Encode(Error::KeyTooShort))
        );
    }

    #[test]
    fn enroll_sends_every_byte_in_chunks_and_reports_progress() {
        let mut client = Client::new(FakeBoard::new(), 3);
        let first = [1u8; 2500];
        let second = [2u8; 1000];
        let images = [
            EnrollImage {
                bytes: &first,
                landmarks: None,
            },
            EnrollImage {
                bytes: &second,
                landmarks: Some([0.0; 10]),
            },
        ];
        let mut reports = Vec::new();
        let outcome = client.enroll(5, "ada", false, &images, 1024, |sent, total| {
            reports.push((sent, total))
        });
        assert_eq!(
            outcome,
            Ok(EnrollOutcome::Enrolled {
                user_id: 5,
                samples: 2
            })
        );
        assert_eq!(client.link_mut().chunk_bytes, 3500);
        // 3 chunks for the first image, 1 for the second.
        assert_eq!(reports.len(), 4);
        assert_eq!(reports.last(), Some(&(3500, 3500)));
    }

    #[test]
    fn enroll_stops_at_the_first_refusal_and_returns_it() {
        let mut board = FakeBoard::new();
        board.refuse_chunk = Some(1);
        let mut client = Client::new(board, 3);
        let image = [1u8; 3000];
        let images = [EnrollImage {
            bytes: &image,
            landmarks: None,
        }];
        let outcome = client.enroll(5, "ada", false, &images, 1000, |_, _| {});
        let Ok(EnrollOutcome::Refused(refusal)) = outcome else {
            panic!("expected a refusal, got {outcome:?}");
        };
        assert_eq!(refusal.code, ErrorCode::BadImage);
        assert_eq!(refusal.detail.as_str(), "not an image");
        let sent = &client.link_mut().requests;
        assert!(
            !sent.iter().any(|r| r.starts_with("EnrollCommit")),
            "{sent:?}"
        );
    }
}
