//! The crate's error type: one fieldless enum, printable on the host and through defmt.

use core::fmt;

/// Everything that can go wrong in `facelock-shared`.
///
/// Fieldless so it stays small and `Copy` on a microcontroller; where a caller needs the
/// offending value (e.g. the model id stored in a gallery file) a dedicated function returns it
/// (see [`crate::gallery::read_header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// An embedding contains NaN or an infinity.
    NonFinite,
    /// An embedding is all zeros (or its norm underflows), so it has no direction.
    ZeroNorm,
    /// Two vectors, or a vector and a template, have different lengths.
    DimensionMismatch,
    /// An average of templates was asked for with no samples.
    NoSamples,
    /// A template scale is not a positive finite number.
    BadScale,
    /// The output buffer is too small for the encoded data.
    BufferTooSmall,
    /// The gallery already holds its maximum number of users.
    GalleryFull,
    /// A user with this id is already enrolled.
    DuplicateUser,
    /// No user with this id is enrolled.
    UnknownUser,
    /// A user name is longer than 32 bytes of UTF-8.
    NameTooLong,
    /// Stored bytes end before the data they announce.
    Truncated,
    /// Stored bytes do not start with the expected magic number.
    BadMagic,
    /// Stored bytes use a format version this build does not read.
    UnsupportedVersion,
    /// The CRC-32 over stored bytes does not match.
    CrcMismatch,
    /// Stored bytes pass the CRC but contain an invalid value (bad name, duplicate id, ...).
    Corrupt,
    /// A gallery was made with another model; its templates cannot be compared.
    WrongModel,
    /// A message does not fit in [`crate::frame::MAX_FRAME_LEN`] bytes once framed.
    FrameTooLong,
    /// A message could not be serialised (postcard refused it).
    Serialize,
    /// An authentication key is shorter than [`crate::auth::KEY_LEN_MIN`] bytes.
    KeyTooShort,
    /// A policy value is out of range (threshold not finite, zero failures, zero lockout).
    InvalidPolicy,
}

/// Result with the crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// A short lowercase description, the same text as `Display`.
    pub const fn message(self) -> &'static str {
        match self {
            Error::NonFinite => "embedding contains nan or infinity",
            Error::ZeroNorm => "embedding has zero norm",
            Error::DimensionMismatch => "embedding dimensions do not match",
            Error::NoSamples => "no samples to average",
            Error::BadScale => "template scale is not a positive finite number",
            Error::BufferTooSmall => "output buffer too small",
            Error::GalleryFull => "gallery is full",
            Error::DuplicateUser => "user id already enrolled",
            Error::UnknownUser => "user id not enrolled",
            Error::NameTooLong => "user name longer than 32 bytes",
            Error::Truncated => "stored data is truncated",
            Error::BadMagic => "stored data has the wrong magic number",
            Error::UnsupportedVersion => "stored data has an unsupported format version",
            Error::CrcMismatch => "stored data fails its crc-32 check",
            Error::Corrupt => "stored data contains an invalid value",
            Error::WrongModel => "gallery was made with a different model",
            Error::FrameTooLong => "message too long for one frame",
            Error::Serialize => "message could not be serialised",
            Error::KeyTooShort => "authentication key too short",
            Error::InvalidPolicy => "unlock policy value out of range",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_distinct() {
        let all = [
            Error::NonFinite,
            Error::ZeroNorm,
            Error::DimensionMismatch,
            Error::NoSamples,
            Error::BadScale,
            Error::BufferTooSmall,
            Error::GalleryFull,
            Error::DuplicateUser,
            Error::UnknownUser,
            Error::NameTooLong,
            Error::Truncated,
            Error::BadMagic,
            Error::UnsupportedVersion,
            Error::CrcMismatch,
            Error::Corrupt,
            Error::WrongModel,
            Error::FrameTooLong,
            Error::Serialize,
            Error::KeyTooShort,
            Error::InvalidPolicy,
        ];
        for (i, a) in all.iter().enumerate() {
            let text = a.to_string();
            assert_eq!(text, text.to_lowercase(), "{a:?}");
            for b in &all[i + 1..] {
                assert_ne!(a.message(), b.message());
            }
        }
    }
}
