//! Serial protocol messages between the host (`facelock`) and the board (`facelockd`).
//!
//! Every frame carries one [`Envelope`]: the protocol version, a sequence number chosen by the
//! host and echoed by the board, and a [`Request`] or [`Response`] body. Payloads borrow from
//! the receive buffer, so decoding allocates nothing. Framing lives in [`crate::frame`].

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Protocol version carried in every envelope; the board refuses other versions with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest image (JPEG/PNG/PNM bytes) that fits in one `Verify` or `EnrollChunk` frame.
pub const MAX_IMAGE_LEN: usize = 32_000;

/// Most users per [`Response::UserList`] page.
pub const LIST_PAGE_LEN: usize = 16;

/// Longest [`Response::Error`] detail text the board sends, in bytes.
pub const MAX_DETAIL_LEN: usize = 128;

/// Length of a challenge nonce and of an HMAC-SHA256 response, in bytes.
pub const NONCE_LEN: usize = 32;

/// Five facial landmarks in pixels of the image they belong to: left eye x y, right eye x y,
/// nose x y, left mouth corner x y, right mouth corner x y.
pub type Landmarks = [f32; 10];

/// One frame's content: version, sequence number and message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Envelope<B> {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u8,
    /// Chosen by the host per request; the response carries the same number.
    pub seq: u32,
    /// The message.
    pub body: B,
}

impl<B> Envelope<B> {
    /// Wraps `body` with the current [`PROTOCOL_VERSION`].
    pub const fn new(seq: u32, body: B) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            seq,
            body,
        }
    }
}

/// A request from the host to the board.
///
/// Enrollment is a small state machine on the board: `EnrollBegin`, then for each image its
/// chunks in order (`offset` counting from 0, `last` on the final chunk of that image), then
/// `EnrollCommit`. A new `EnrollBegin` discards an unfinished enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request<'a> {
    /// Asks for versions, model and capacity; needs no authentication.
    Hello,
    /// Asks for a fresh nonce to authenticate with.
    AuthChallenge,
    /// HMAC-SHA256 of the last nonce under the admin key (see [`crate::auth::respond`]).
    AuthResponse {
        /// The MAC, 32 bytes.
        mac: [u8; NONCE_LEN],
    },
    /// Starts enrolling a user from `image_count` images (admin only).
    EnrollBegin {
        /// The user's id, unique on the board.
        user_id: u32,
        /// Display name, at most 32 bytes of UTF-8.
        name: &'a str,
        /// Number of images that will follow, at least 1.
        image_count: u8,
        /// Replace an existing user with this id instead of failing with `DuplicateUser`.
        replace: bool,
    },
    /// A piece of one enrollment image.
    EnrollChunk {
        /// Which image, `0..image_count`.
        image_index: u8,
        /// Byte offset of `bytes` within the image; chunks come in order.
        offset: u32,
        /// This chunk ends the image.
        last: bool,
        /// Landmarks of this image (read from the chunk at offset 0); `None` means centre crop.
        landmarks: Option<Landmarks>,
        /// Encoded image bytes.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// Averages the received images into a template and stores the user.
    EnrollCommit,
    /// 1:1 check of a probe image against a claimed user.
    Verify {
        /// The claimed user's id.
        user_id: u32,
        /// Landmarks in the probe image; `None` means centre crop.
        landmarks: Option<Landmarks>,
        /// Encoded probe image, at most [`MAX_IMAGE_LEN`] bytes.
        #[serde(borrow)]
        image: &'a [u8],
    },
    /// One page of enrolled users, starting at position `start` in the gallery.
    List {
        /// Index of the first entry wanted (0 for the first page).
        start: u32,
    },
    /// Removes a user (admin only).
    Delete {
        /// The user's id.
        user_id: u32,
    },
    /// Asks for counters.
    Stats,
    /// Unlock for a claimed user from the board's own camera (what a keypad or card reader
    /// sends): the board captures frames, finds one face, and answers [`Response::Verified`], or
    /// an error saying why no frame could be used (no face, several faces, too small, locked
    /// out, no camera). Needs no authentication; decisions count towards the lockout.
    Unlock {
        /// The claimed user's id.
        user_id: u32,
    },
}

/// One user in a [`Response::UserList`] page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UserEntry<'a> {
    /// The user's id.
    pub user_id: u32,
    /// Display name.
    pub name: &'a str,
    /// Number of images averaged into the template.
    pub samples: u16,
}

/// Board counters since boot, plus the lockout state.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// Milliseconds since the board started.
    pub uptime_ms: u64,
    /// Verify requests answered with a decision.
    pub verifies: u32,
    /// Verifies accepted (lock opened).
    pub accepts: u32,
    /// Verifies rejected.
    pub rejects: u32,
    /// Lockouts started.
    pub lockouts: u32,
    /// Frames dropped as bad (CRC, COBS, too long, undecodable).
    pub bad_frames: u32,
    /// Users enrolled now.
    pub enrolled: u32,
    /// Gallery capacity.
    pub capacity: u32,
    /// Consecutive failed verifies now.
    pub failures: u8,
    /// Milliseconds left in the current lockout, 0 if none.
    pub locked_out_ms: u64,
}

/// A response from the board to the host, echoing the request's sequence number.
// A user-list page makes this enum ~0.5 KB; without alloc it cannot be boxed, and it lives on
// the stack only while one frame is encoded or decoded.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Response<'a> {
    /// Answer to [`Request::Hello`].
    Hello {
        /// The board's [`PROTOCOL_VERSION`].
        protocol_version: u8,
        /// Firmware version text, e.g. `"0.1.0"`.
        firmware_version: &'a str,
        /// Id of the loaded model (see [`crate::model_meta::MODEL_ID`]).
        model_id: u64,
        /// Embedding dimension of the model.
        embedding_dim: u16,
        /// Cosine threshold the board accepts at.
        threshold: f32,
        /// Gallery capacity in users.
        capacity: u32,
        /// Users enrolled now.
        enrolled: u32,
    },
    /// A nonce to authenticate against; valid for one `AuthResponse`.
    Challenge {
        /// Random bytes from the board.
        nonce: [u8; NONCE_LEN],
    },
    /// The MAC was right; admin requests are allowed in this session.
    AuthOk,
    /// `EnrollBegin` was accepted; images may follow.
    EnrollReady,
    /// An enrollment chunk was received.
    EnrollProgress {
        /// Image the chunk belonged to.
        image_index: u8,
        /// Bytes of this image received so far.
        received: u32,
        /// The image is complete and a face embedding was computed from it.
        image_done: bool,
    },
    /// `EnrollCommit` stored the user.
    Enrolled {
        /// The user's id.
        user_id: u32,
        /// Images averaged into the template.
        samples: u16,
    },
    /// Result of a `Verify`.
    Verified {
        /// The claimed user's id.
        user_id: u32,
        /// Cosine similarity to the template, in [-1, 1].
        score: f32,
        /// `score` reached the threshold and the lock was pulsed.
        accepted: bool,
        /// Consecutive failures now (0 after an accept).
        failures: u8,
        /// Milliseconds of lockout now in force after this attempt (0 if none).
        locked_out_ms: u64,
    },
    /// One page of enrolled users.
    UserList {
        /// Total users enrolled.
        total: u32,
        /// Entries from the requested start, at most [`LIST_PAGE_LEN`].
        #[serde(borrow)]
        entries: heapless::Vec<UserEntry<'a>, LIST_PAGE_LEN>,
        /// More entries follow; ask again with `start + entries.len()`.
        more: bool,
    },
    /// The user was removed.
    Deleted {
        /// The user's id.
        user_id: u32,
    },
    /// Answer to [`Request::Stats`].
    Stats(Counters),
    /// The request failed.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Short human-readable detail, at most [`MAX_DETAIL_LEN`] bytes.
        detail: &'a str,
    },
}

/// Why a request failed. On the wire each code is its stable number ([`ErrorCode::number`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: the frame was damaged (CRC, COBS) or could not be decoded.
    BadFrame,
    /// 2: the request used another protocol version.
    UnsupportedVersion,
    /// 3: the request needs admin authentication first.
    AuthRequired,
    /// 4: the authentication response was wrong (or no challenge was open).
    AuthFailed,
    /// 5: too many requests; try again later.
    RateLimited,
    /// 6: no user with this id.
    UnknownUser,
    /// 7: the gallery is full.
    GalleryFull,
    /// 8: a user with this id exists.
    DuplicateUser,
    /// 9: the image could not be decoded or has unusable dimensions.
    BadImage,
    /// 10: no face was found in the image.
    NoFace,
    /// 11: the face in the image is too small.
    FaceTooSmall,
    /// 12: the payload is larger than the board accepts.
    PayloadTooLarge,
    /// 13: reading or writing persistent storage failed.
    StorageError,
    /// 14: verification is locked out after repeated failures.
    LockedOut,
    /// 15: the request does not fit the current state (e.g. a chunk without `EnrollBegin`).
    SequenceError,
    /// 16: the stored gallery belongs to another model.
    WrongModel,
    /// 17: an unexpected error on the board.
    Internal,
    /// 18: a request field is invalid (e.g. a name longer than 32 bytes).
    InvalidArgument,
    /// 19: more than one face was found in the image.
    SeveralFaces,
    /// 20: the board has no camera, or the camera failed.
    NoCamera,
    /// A code this build does not know (sent by a newer peer).
    Other(u16),
}

impl ErrorCode {
    /// The stable number sent on the wire.
    pub const fn number(self) -> u16 {
        match self {
            ErrorCode::BadFrame => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::AuthRequired => 3,
            ErrorCode::AuthFailed => 4,
            ErrorCode::RateLimited => 5,
            ErrorCode::UnknownUser => 6,
            ErrorCode::GalleryFull => 7,
            ErrorCode::DuplicateUser => 8,
            ErrorCode::BadImage => 9,
            ErrorCode::NoFace => 10,
            ErrorCode::FaceTooSmall => 11,
            ErrorCode::PayloadTooLarge => 12,
            ErrorCode::StorageError => 13,
            ErrorCode::LockedOut => 14,
            ErrorCode::SequenceError => 15,
            ErrorCode::WrongModel => 16,
            ErrorCode::Internal => 17,
            ErrorCode::InvalidArgument => 18,
            ErrorCode::SeveralFaces => 19,
            ErrorCode::NoCamera => 20,
            ErrorCode::Other(n) => n,
        }
    }

    /// The code with this number; unknown numbers become [`ErrorCode::Other`].
    pub const fn from_number(number: u16) -> Self {
        match number {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::AuthRequired,
            4 => ErrorCode::AuthFailed,
            5 => ErrorCode::RateLimited,
            6 => ErrorCode::UnknownUser,
            7 => ErrorCode::GalleryFull,
            8 => ErrorCode::DuplicateUser,
            9 => ErrorCode::BadImage,
            10 => ErrorCode::NoFace,
            11 => ErrorCode::FaceTooSmall,
            12 => ErrorCode::PayloadTooLarge,
            13 => ErrorCode::StorageError,
            14 => ErrorCode::LockedOut,
            15 => ErrorCode::SequenceError,
            16 => ErrorCode::WrongModel,
            17 => ErrorCode::Internal,
            18 => ErrorCode::InvalidArgument,
            19 => ErrorCode::SeveralFaces,
            20 => ErrorCode::NoCamera,
            n => ErrorCode::Other(n),
        }
    }

    /// What the code means, lowercase, for the host to print.
    pub const fn meaning(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "the board could not decode the request frame",
            ErrorCode::UnsupportedVersion => "the board speaks another protocol version",
            ErrorCode::AuthRequired => "this request needs admin authentication first",
            ErrorCode::AuthFailed => "admin authentication failed (wrong key or no challenge)",
            ErrorCode::RateLimited => "too many requests, try again later",
            ErrorCode::UnknownUser => "no user with this id is enrolled",
            ErrorCode::GalleryFull => "the gallery is full",
            ErrorCode::DuplicateUser => "a user with this id is already enrolled",
            ErrorCode::BadImage => "the image could not be decoded or is unusable",
            ErrorCode::NoFace => "no face was found in the image",
            ErrorCode::FaceTooSmall => "the face in the image is too small",
            ErrorCode::PayloadTooLarge => "the payload is larger than the board accepts",
            ErrorCode::StorageError => "the board could not read or write its storage",
            ErrorCode::LockedOut => "verification is locked out after repeated failures",
            ErrorCode::SequenceError => "the request does not fit the current state",
            ErrorCode::WrongModel => "the gallery was enrolled with a different model",
            ErrorCode::Internal => "internal error on the board",
            ErrorCode::InvalidArgument => "a request field is invalid",
            ErrorCode::SeveralFaces => "more than one face was found",
            ErrorCode::NoCamera => "the board has no working camera",
            ErrorCode::Other(_) => "unknown error code (newer firmware?)",
        }
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "error {}: {}", self.number(), self.meaning())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.number())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u16::deserialize(deserializer).map(ErrorCode::from_number)
    }
}

impl From<Error> for ErrorCode {
    /// The code the board reports for a library error.
    fn from(error: Error) -> Self {
        match error {
            Error::GalleryFull => ErrorCode::GalleryFull,
            Error::DuplicateUser => ErrorCode::DuplicateUser,
            Error::UnknownUser => ErrorCode::UnknownUser,
            Error::NameTooLong | Error::DimensionMismatch => ErrorCode::InvalidArgument,
            Error::NonFinite | Error::ZeroNorm | Error::NoSamples => ErrorCode::BadImage,
            Error::WrongModel => ErrorCode::WrongModel,
            Error::Truncated
            | Error::BadMagic
            | Error::UnsupportedVersion
            | Error::CrcMismatch
            | Error::Corrupt => ErrorCode::StorageError,
            Error::FrameTooLong => ErrorCode::PayloadTooLarge,
            Error::KeyTooShort => ErrorCode::AuthFailed,
            _ => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests;
