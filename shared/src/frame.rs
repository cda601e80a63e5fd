//! Serial frame codec: postcard message + CRC-32, COBS-encoded, terminated by one 0x00 byte,
//! and a streaming decoder that resynchronises on the next 0x00 after any damage.
//!
//! Wire layout of one frame: `COBS(postcard(message) ++ crc32_le(postcard(message))) ++ [0x00]`.
//! The CRC is CRC-32/ISO-HDLC (the zlib/Ethernet CRC) over the postcard bytes. Empty frames
//! (two 0x00 in a row) are skipped silently, so a sender may flush the line with a 0x00.

use crc::{Crc, Digest, CRC_32_ISO_HDLC};
use postcard::ser_flavors::Flavor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::log::log_debug;

/// Longest frame on the wire, in bytes, including the 0x00 delimiter: 32 KiB.
///
/// Sized so that a `Verify` with a [`crate::protocol::MAX_IMAGE_LEN`] (32 000 byte) JPEG
/// fits with room for the other fields; a 112×112 face JPEG is typically 3–25 KB.
pub const MAX_FRAME_LEN: usize = 32 * 1024;

/// Longest postcard message that always fits in [`MAX_FRAME_LEN`] after CRC and COBS.
pub const MAX_MESSAGE_LEN: usize = 32_600;

/// CRC-32 parameters of the frame checksum (and the gallery file).
pub(crate) const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Length of the frame checksum in bytes.
const CRC_LEN: usize = 4;

// The worst case COBS expansion of the largest message plus the delimiter fits in a frame.
const _: () = assert!(
    cobs::max_encoding_length(MAX_MESSAGE_LEN + CRC_LEN) < MAX_FRAME_LEN,
    "MAX_MESSAGE_LEN does not fit in MAX_FRAME_LEN"
);

/// Why a received frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BadFrame {
    /// The checksum does not match (or the frame is shorter than a checksum).
    Crc,
    /// The bytes between delimiters are not valid COBS.
    Cobs,
    /// More bytes than the decoder's buffer arrived before a delimiter.
    TooLong,
    /// The checksum is right but the content is not a message of the expected type (for
    /// example a newer protocol version, or a request where a response was expected).
    Undecodable,
}

/// Version and sequence number read from the start of an undecodable frame, so the board can
/// answer it with an error the host can match to its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Protocol version the sender used.
    pub version: u8,
    /// Sequence number of the frame.
    pub seq: u32,
}

/// postcard output flavor that checksums the bytes and COBS-encodes them on the fly.
struct FrameWriter<'a> {
    cobs: cobs::CobsEncoder<'a>,
    crc: Digest<'static, u32>,
    capacity: usize,
}

impl Flavor for FrameWriter<'_> {
    type Output = usize;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.crc.update(data);
        self.cobs
            .push(data)
            .map_err(|_| postcard::Error::SerializeBufferFull)
    }

    fn finalize(mut self) -> postcard::Result<usize> {
        let crc = self.crc.finalize().to_le_bytes();
        self.cobs
            .push(&crc)
            .map_err(|_| postcard::Error::SerializeBufferFull)?;
        let written = self.cobs.finalize();
        // The encoder reports a length past the buffer when the final code byte did not fit.
        if written > self.capacity {
            return Err(postcard::Error::SerializeBufferFull);
        }
        Ok(written)
    }
}

/// Encodes `message` as one frame into `buf` and returns the frame, delimiter included.
///
/// Fails with [`Error::FrameTooLong`] if the frame would exceed [`MAX_FRAME_LEN`], with
/// [`Error::BufferTooSmall`] if it only exceeds `buf`. A buffer of [`MAX_FRAME_LEN`] bytes
/// always suffices.
pub fn encode<'b, T: Serialize + ?Sized>(message: &T, buf: &'b mut [u8]) -> Result<&'b [u8]> {
    let limit = buf.len().min(MAX_FRAME_LEN);
    if limit == 0 {
        return Err(Error::BufferTooSmall);
    }

    // Leave the last byte of the limit for the delimiter.
    let capacity = limit - 1;
    let writer = FrameWriter {
        cobs: cobs::CobsEncoder::new(&mut buf[..capacity]),
        crc: CRC32.digest(),
        capacity,
    };
    let written = match postcard::serialize_with_flavor(message, writer) {
        Ok(written) => written,
        Err(postcard::Error::SerializeBufferFull) if buf.len() >= MAX_FRAME_LEN => {
            return Err(Error::FrameTooLong)
        }
        Err(postcard::Error::SerializeBufferFull) => return Err(Error::BufferTooSmall),
        Err(_) => return Err(Error::Serialize),
    };
    buf[written] = 0;
    Ok(&buf[..=written])
}

/// Decodes one complete frame (COBS bytes, with or without the final 0x00) in place.
///
/// The message borrows from `frame`, whose content is overwritten by the decoded bytes.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a mut [u8]) -> core::result::Result<T, BadFrame> {
    let end = frame.iter().position(|&b| b == 0).unwrap_or(frame.len());
    decode_payload(&mut frame[..end]).map_err(|(reason, _)| reason)
}

/// COBS-decodes, checks the CRC and deserialises; on a bad message also returns its header.
fn decode_payload<'a, T: Deserialize<'a>>(
    encoded: &'a mut [u8],
) -> core::result::Result<T, (BadFrame, Option<Header>)> {
    let len = cobs::decode_in_place(encoded).map_err(|_| (BadFrame::Cobs, None))?;
    let Some(payload_len) = len.checked_sub(CRC_LEN) else {
        return Err((BadFrame::Crc, None));
    };
    let payload: &'a [u8] = &encoded[..len];
    let (message, checksum) = payload.split_at(payload_len);
    let mut expected = [0u8; CRC_LEN];
    expected.copy_from_slice(checksum);
    if CRC32.checksum(message) != u32::from_le_bytes(expected) {
        return Err((BadFrame::Crc, None));
    }

    match postcard::take_from_bytes::<T>(message) {
        Ok((value, [])) => Ok(value),
        _ => {
            let header = postcard::take_from_bytes::<(u8, u32)>(message)
                .ok()
                .map(|((version, seq), _)| Header { version, seq });
            Err((BadFrame::Undecodable, header))
        }
    }
}

/// What one call to [`FrameDecoder::feed`] produced.
#[derive(Debug, PartialEq)]
pub enum Event<T> {
    /// A whole, valid message (borrowed from the decoder's buffer).
    Frame(T),
    /// All input was consumed without completing a frame; feed more bytes.
    NeedMore,
    /// A frame was dropped; decoding continues after its delimiter.
    BadFrame {
        /// Why it was dropped.
        reason: BadFrame,
        /// Version and sequence number, when the CRC was right but the message was not.
        header: Option<Header>,
    },
}

/// Streaming frame decoder with an `N`-byte buffer for the COBS bytes of one frame.
///
/// Feed it whatever the link delivered; each call stops at the first frame boundary and says
/// how many input bytes it consumed, so the caller feeds the rest next:
///
/// ```
/// # use facelock_shared::frame::{FrameDecoder, Event, encode, MAX_FRAME_LEN};
/// # use facelock_shared::protocol::{Envelope, Request};
/// # let mut out = [0u8; 64];
/// # let bytes = encode(&Envelope::new(7, Request::Hello), &mut out).unwrap().to_vec();
/// let mut decoder = FrameDecoder::<MAX_FRAME_LEN>::new();
/// let mut rest: &[u8] = &bytes;
/// while !rest.is_empty() {
///     let (used, event) = decoder.feed::<Envelope<Request>>(rest);
///     rest = &rest[used..];
///     match event {
///         Event::Frame(request) => assert_eq!(request.seq, 7),
///         Event::NeedMore => {}
///         Event::BadFrame { .. } => {}
///     }
/// }
/// ```
///
/// `N` should be at least `MAX_FRAME_LEN - 1` to accept every valid frame; a longer frame is
/// reported once as [`BadFrame::TooLong`] when its delimiter arrives.
pub struct FrameDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
    bad_frames: u32,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflow: false,
            bad_frames: 0,
        }
    }

    /// Consumes bytes from `input` up to and including the first delimiter that ends a
    /// non-empty frame, and returns how many bytes it consumed and what it found.
    ///
    /// Returns `(input.len(), Event::NeedMore)` when no frame ended in `input`.
    pub fn feed<'d, T: Deserialize<'d>>(&'d mut self, input: &[u8]) -> (usize, Event<T>) {
        for (i, &byte) in input.iter().enumerate() {
            if byte != 0 {
                if self.len < N {
                    self.buf[self.len] = byte;
                    self.len += 1;
                } else {
                    self.overflow = true;
                }
                continue;
            }

            // A delimiter: skip empty frames, otherwise take the frame out of the buffer.
            if self.len == 0 && !self.overflow {
                continue;
            }
            let len = core::mem::replace(&mut self.len, 0);
            if core::mem::replace(&mut self.overflow, false) {
                self.bad_frames = self.bad_frames.wrapping_add(1);
                log_debug!("frame dropped: longer than {=usize} bytes", N);
                let event = Event::BadFrame {
                    reason: BadFrame::TooLong,
                    header: None,
                };
                return (i + 1, event);
            }
            let event = match decode_payload(&mut self.buf[..len]) {
                Ok(message) => Event::Frame(message),
                Err((reason, header)) => {
                    self.bad_frames = self.bad_frames.wrapping_add(1);
                    Event::BadFrame { reason, header }
                }
            };
            return (i + 1, event);
        }
        (input.len(), Event::NeedMore)
    }

    /// Forgets a partly received frame (e.g. after a link reset).
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    /// Bytes of an unfinished frame held now.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Frames dropped as bad since creation (wraps at `u32::MAX`).
    pub fn bad_frames(&self) -> u32 {
        self.bad_frames
    }
}

#[cfg(test)]
mod tests;
