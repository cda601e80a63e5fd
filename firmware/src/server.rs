//! The serial command server: reads frames from the link, answers each request, never stops
//! serving on bad input.
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use embedded_hal::digital::OutputPin;
use facelock_shared::frame::{self, Event, FrameDecoder, MAX_FRAME_LEN};
use facelock_shared::protocol::{
    Counters, Envelope, ErrorCode, Request, Response, UserEntry, LIST_PAGE_LEN, MAX_DETAIL_LEN,
    MAX_IMAGE_LEN, PROTOCOL_VERSION,
};

use crate::camera::Camera;
use crate::device::{now_ms, Device, VerifyOutcome};
use crate::enroll::{ChunkRefusal, Enrollment, MAX_NAME_LEN};
use crate::finder::{FaceFinder, Refusal};
use crate::lock::Lock;
use crate::nonce::{AuthRefusal, AuthState};
use crate::pipeline;

/// A request failure: the code on the wire and a short detail.
type Failure = (ErrorCode, String);

fn fail(code: ErrorCode, detail: impl Into<String>) -> Failure {
    (code, detail.into())
}

/// The server state of one link: device state, admin session, enrollment in progress.
pub struct Server<P: OutputPin> {
    device: Device,
    lock: Lock<P>,
    auth: AuthState,
    enrollment: Option<Enrollment>,
    counters: Counters,
    started: Instant,
    unlocker: Option<Unlocker>,
}

/// What `Unlock` requests use: the camera, the face finder and the capture budget.
pub struct Unlocker {
    /// Where frames come from.
    pub camera: Box<dyn Camera>,
    /// Detector + landmarks.
    pub finder: FaceFinder,
    /// Most frames examined per unlock.
    pub max_frames: usize,
    /// Longest time spent capturing per unlock.
    pub window: Duration,
}

/// A response body owning its strings, turned into a borrowed [`Response`] for encoding.
enum Reply {
    Plain(Box<Response<'static>>),
    List {
        total: u32,
        entries: Vec<(u32, String, u16)>,
        more: bool,
    },
    Error(Failure),
}

impl<P: OutputPin> Server<P> {
    /// A server for `device`, driving `lock` on accepted verifies.
    pub fn new(device: Device, lock: Lock<P>) -> Self {
        Server {
            device,
            lock,
            auth: AuthState::default(),
            enrollment: None,
            counters: Counters::default(),
            started: Instant::now(),
            unlocker: None,
        }
    }

    /// Serves `Unlock` requests from `unlocker`'s camera.
    pub fn with_camera(mut self, unlocker: Unlocker) -> Self {
        self.unlocker = Some(unlocker);
        self
    }

    /// The device state (tests and shutdown).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Serves `link` until `stop()` is true or the link fails; the lock is released on return.
    /// Reads must time out regularly (returning `Ok(0)`) so `stop` and the lock pulse are polled.
    pub fn serve<L: Read + Write>(
        &mut self,
        link: &mut L,
        stop: impl Fn() -> bool,
    ) -> io::Result<()> {
        let mut decoder = Box::new(FrameDecoder::<MAX_FRAME_LEN>::new());
        let mut input = vec![0u8; 4096];
        let mut output = vec![0u8; MAX_FRAME_LEN];
        let result = 'serve: loop {
            self.lock.poll(Instant::now());
            if stop() {
                break Ok(());
            }
            let n = match link.read(&mut input) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => break Err(e),
            };
            let mut rest = &input[..n];
            while !rest.is_empty() {
                let (used, event) = decoder.feed::<Envelope<Request>>(rest);
                rest = &rest[used..];
                let (seq, reply) = match event {
                    Event::NeedMore => continue,
                    Event::Frame(envelope) => (envelope.seq, self.handle(&envelope)),
                    Event::BadFrame { reason, header } => {
                        self.counters.bad_frames = self.counters.bad_frames.saturating_add(1);
                        tracing::warn!(?reason, "bad frame dropped");
                        let code = match (reason, header) {
                            (frame::BadFrame::TooLong, _) => ErrorCode::PayloadTooLarge,
                            (_, Some(h)) if h.version != PROTOCOL_VERSION => {
                                ErrorCode::UnsupportedVersion
                            }
                            _ => ErrorCode::BadFrame,
                        };
                        let seq = header.map_or(0, |h| h.seq);
                        (seq, Reply::Error(fail(code, format!("{reason:?}"))))
                    }
                };
                if let Err(e) = self.send(link, &mut output, seq, reply) {
                    break 'serve Err(e);
                }
            }
        };
        self.lock.release();
        result
    }

    fn send<L: Write>(
        &self,
        link: &mut L,
        buf: &mut [u8],
        seq: u32,
        reply: Reply,
    ) -> io::Result<()> {
        let mut detail_text = String::new();
        let list_entries: heapless::Vec<UserEntry<'_>, LIST_PAGE_LEN>;
        let response = match &reply {
            Reply::Plain(response) => (**response).clone(),
            Reply::List {
                total,
                entries,
                more,
            } => {
                list_entries = entries
                    .iter()
                    .map(|(user_id, name, samples)| UserEntry {
                        user_id: *user_id,
                        name,
                        samples: *samples,
                    })
                    .collect();
                Response::UserList {
                    total: *total,
                    entries: list_entries,
                    more: *more,
                }
            }
            Reply::Error((code, detail)) => {
                tracing::debug!(code = code.number(), detail, "request failed");
                detail_text.push_str(truncate(detail, MAX_DETAIL_LEN));
                Response::Error {
                    code: *code,
                    detail: &detail_text,
                }
            }
        };
        let bytes = frame::encode(&Envelope::new(seq, response), buf)
            .map_err(|e| io::Error::other(format!("encoding response: {e}")))?;
        link.write_all(bytes)?;
        link.flush()
    }

    /// Answers one request.
    fn handle(&mut self, envelope: &Envelope<Request<'_>>) -> Reply {
        if envelope.version != PROTOCOL_VERSION {
            return Reply::Error(fail(
                ErrorCode::UnsupportedVersion,
                format!(
                    "version {} (board speaks {PROTOCOL_VERSION})",
                    envelope.version
                ),
            ));
        }
        let now = Instant::now();
        let result = match &envelope.body {
            Request::Hello => Ok(self.hello()),
            Request::AuthChallenge => self.challenge(now),
            Request::AuthResponse { mac } => self.authenticate(now, mac),
            Request::EnrollBegin {
                user_id,
                name,
                image_count,
                replace,
            } => self
                .require_admin(now)
                .and_then(|()| self.enroll_begin(*user_id, name, *image_count, *replace)),
            Request::EnrollChunk {
                image_index,
                offset,
                last,
                landmarks,
                bytes,
            } => self.require_admin(now).and_then(|()| {
                self.enroll_chunk(*image_index, *offset, *last, landmarks.as_ref(), bytes)
            }),
            Request::EnrollCommit => self.require_admin(now).and_then(|()| self.enroll_commit()),
            Request::Verify {
                user_id,
                landmarks,
                image,
            } => self.verify(*user_id, landmarks.as_ref(), image),
            Request::List { start } => return self.list(*start),
            Request::Delete { user_id } => {
                self.require_admin(now).and_then(|()| self.delete(*user_id))
            }
            Request::Stats => Ok(Response::Stats(self.stats())),
            Request::Unlock { user_id } => self.unlock(*user_id),
        };
        match result {
            Ok(response) => Reply::Plain(Box::new(response)),
            Err(failure) => Reply::Error(failure),
        }
    }

    fn hello(&self) -> Response<'static> {
        Response::Hello {
            protocol_version: PROTOCOL_VERSION,
            firmware_version: env!("CARGO_PKG_VERSION"),
            model_id: self.device.model_id(),
            embedding_dim: self.device.embedding_dim() as u16,
            threshold: self.device.threshold(),
            capacity: self.device.capacity() as u32,
            enrolled: self.device.enrolled() as u32,
        }
    }

    fn challenge(&mut self, now: Instant) -> Result<Response<'static>, Failure> {
        let nonce = self
            .auth
            .issue(now)
            .map_err(|e| fail(ErrorCode::Internal, format!("random source: {e}")))?;
        Ok(Response::Challenge { nonce })
    }

    fn authenticate(&mut self, now: Instant, mac: &[u8; 32]) -> Result<Response<'static>, Failure> {
        let device = &self.device;
        match self.auth.answer(now, |nonce| device.check_mac(nonce, mac)) {
            Ok(()) => {
                tracing::info!("admin authenticated");
                Ok(Response::AuthOk)
            }
            Err(AuthRefusal::RateLimited(wait)) => Err(fail(
                ErrorCode::RateLimited,
                format!("auth blocked for {} ms after failures", wait.as_millis()),
            )),
            Err(AuthRefusal::NoChallenge) => Err(fail(
                ErrorCode::AuthFailed,
                "no open challenge (used, expired or never issued)",
            )),
            Err(AuthRefusal::BadResponse) => {
                tracing::warn!("admin authentication failed");
                Err(fail(ErrorCode::AuthFailed, "wrong response"))
            }
        }
    }

    fn require_admin(&mut self, now: Instant) -> Result<(), Failure> {
        if self.auth.is_admin(now) {
            Ok(())
        } else {
            Err(fail(
                ErrorCode::AuthRequired,
                "authenticate first (AuthChallenge, AuthResponse)",
            ))
        }
    }

    fn enroll_begin(
        &mut self,
        user_id: u32,
        name: &str,
        image_count: u8,
        replace: bool,
    ) -> Result<Response<'static>, Failure> {
        self.enrollment = None;
        if name.len() > MAX_NAME_LEN {
            return Err(fail(
                ErrorCode::InvalidArgument,
                format!("name is {} bytes, max {MAX_NAME_LEN}", name.len()),
            ));
        }
        if image_count == 0 {
            return Err(fail(
                ErrorCode::InvalidArgument,
                "image_count must be at least 1",
            ));
        }
        let exists = self.device.has_user(user_id);
        if exists && !replace {
            return Err(fail(
                ErrorCode::DuplicateUser,
                format!("user {user_id} exists"),
            ));
        }
        if !exists && self.device.enrolled() >= self.device.capacity() {
            return Err(fail(
                ErrorCode::GalleryFull,
                format!("{} users", self.device.capacity()),
            ));
        }
        self.enrollment = Some(Enrollment::new(user_id, name, image_count, replace));
        Ok(Response::EnrollReady)
    }

    fn enroll_chunk(
        &mut self,
        image_index: u8,
        offset: u32,
        last: bool,
        landmarks: Option<&[f32; 10]>,
        bytes: &[u8],
    ) -> Result<Response<'static>, Failure> {
        let enrollment = self
            .enrollment
            .as_mut()
            .ok_or_else(|| fail(ErrorCode::SequenceError, "EnrollChunk without EnrollBegin"))?;
        let landmarks = landmarks.map(pipeline::landmarks_from_wire);
        let complete = match enrollment.add_chunk(image_index, offset, last, landmarks, bytes) {
            Ok(complete) => complete,
            Err(ChunkRefusal::OutOfOrder(detail)) => {
                return Err(fail(ErrorCode::SequenceError, detail))
            }
            Err(ChunkRefusal::TooLarge) => {
                self.enrollment = None;
                return Err(fail(
                    ErrorCode::PayloadTooLarge,
                    "enrollment image too large; enrollment dropped",
                ));
            }
        };
        let Some(image) = complete else {
            return Ok(Response::EnrollProgress {
                image_index,
                received: enrollment.received() as u32,
                image_done: false,
            });
        };
        let received = image.bytes.len() as u32;
        match self.device.embed(&image.bytes, image.landmarks.as_ref()) {
            Ok(embedding) => {
                enrollment.embeddings.push(embedding);
                Ok(Response::EnrollProgress {
                    image_index,
                    received,
                    image_done: true,
                })
            }
            Err(e) => {
                // The image is refused; the host may send image `image_index` again.
                Err(fail(
                    ErrorCode::BadImage,
                    format!("image {}: {e}", image.index),
                ))
            }
        }
    }

    fn enroll_commit(&mut self) -> Result<Response<'static>, Failure> {
        let enrollment = self
            .enrollment
            .take_if(|e| e.is_complete())
            .ok_or_else(|| {
                fail(
                    ErrorCode::SequenceError,
                    "EnrollCommit before all images were received",
                )
            })?;
        let samples = enrollment.embeddings.len() as u16;
        let user_id = enrollment.user_id;
        self.device.enroll(&enrollment)?;
        tracing::info!(user_id, samples, "user enrolled");
        Ok(Response::Enrolled { user_id, samples })
    }

    fn verify(
        &mut self,
        user_id: u32,
        landmarks: Option<&[f32; 10]>,
        image: &[u8],
    ) -> Result<Response<'static>, Failure> {
        if image.len() > MAX_IMAGE_LEN {
            return Err(fail(
                ErrorCode::PayloadTooLarge,
                format!("{} bytes, max {MAX_IMAGE_LEN}", image.len()),
            ));
        }
        let landmarks = landmarks.map(pipeline::landmarks_from_wire);
        let outcome = self
            .device
            .verify(user_id, image, landmarks.as_ref(), now_ms())?;
        Ok(self.decided(user_id, outcome))
    }

    /// Captures frames until one shows exactly one big-enough face, then verifies it; answers
    /// why not when the frame or time budget runs out. Frames without a usable face do not
    /// count as failed attempts.
    fn unlock(&mut self, user_id: u32) -> Result<Response<'static>, Failure> {
        self.device.may_verify(user_id, now_ms())?;
        let unlocker = self.unlocker.as_mut().ok_or_else(|| {
            fail(
                ErrorCode::NoCamera,
                "facelockd was started without --camera",
            )
        })?;
        unlocker
            .camera
            .flush()
            .map_err(|e| fail(ErrorCode::NoCamera, e.to_string()))?;
        let start = Instant::now();
        let mut frames = 0;
        let mut last_refusal = None;
        while frames < unlocker.max_frames && start.elapsed() < unlocker.window {
            let frame = match unlocker.camera.capture() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(fail(ErrorCode::NoCamera, e.to_string())),
            };
            frames += 1;
            let found = unlocker
                .finder
                .find(&frame)
                .map_err(|e| fail(ErrorCode::Internal, e.to_string()))?;
            match found {
                Ok(points) => {
                    let outcome = self
                        .device
                        .verify_frame(user_id, &frame, &points, now_ms())?;
                    tracing::info!(user_id, frames, "unlock: face found");
                    return Ok(self.decided(user_id, outcome));
                }
                Err(refusal) => {
                    tracing::debug!(user_id, ?refusal, "unlock: frame refused");
                    last_refusal = Some(refusal);
                }
            }
        }
        let detail = format!(
            "no usable face in {frames} frames within {} ms",
            start.elapsed().as_millis()
        );
        tracing::info!(user_id, frames, ?last_refusal, "unlock: no usable frame");
        Err(fail(
            last_refusal.map_or(ErrorCode::NoFace, Refusal::code),
            detail,
        ))
    }

    /// Counts a verify decision, pulses the lock on accept, and builds the answer.
    fn decided(&mut self, user_id: u32, outcome: VerifyOutcome) -> Response<'static> {
        let VerifyOutcome {
            score,
            accepted,
            failures,
            locked_out_ms,
            lockout_started,
        } = outcome;
        self.counters.verifies += 1;
        if accepted {
            self.counters.accepts += 1;
            self.lock.unlock(Instant::now());
        } else {
            self.counters.rejects += 1;
        }
        if lockout_started {
            self.counters.lockouts += 1;
        }
        tracing::info!(user_id, score, accepted, failures, "verify");
        Response::Verified {
            user_id,
            score,
            accepted,
            failures,
            locked_out_ms,
        }
    }

    fn list(&self, start: u32) -> Reply {
        let users = self.device.users();
        let total = users.len() as u32;
        let entries: Vec<_> = users
            .into_iter()
            .skip(start as usize)
            .take(LIST_PAGE_LEN)
            .collect();
        let more = (start as usize).saturating_add(entries.len()) < total as usize;
        Reply::List {
            total,
            entries,
            more,
        }
    }

    fn delete(&mut self, user_id: u32) -> Result<Response<'static>, Failure> {
        self.device.delete(user_id)?;
        tracing::info!(user_id, "user deleted");
        Ok(Response::Deleted { user_id })
    }

    fn stats(&self) -> Counters {
        let lockout = self.device.lockout_status(now_ms());
        Counters {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            enrolled: self.device.enrolled() as u32,
            capacity: self.device.capacity() as u32,
            failures: lockout.0,
            locked_out_ms: lockout.1,
            ..self.counters
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
