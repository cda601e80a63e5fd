//! The host library's error type.
use std::path::PathBuf;

/// Everything that can go wrong in the host library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An image could not be decoded.
    #[error("image '{path}' cannot be read: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// Why decoding failed.
        reason: String,
    },
    /// An image could not be aligned (bad landmarks, unsupported layout).
    #[error("image '{path}' cannot be aligned: {source}")]
    Align {
        /// The image file.
        path: PathBuf,
        /// What the alignment code said.
        source: facelock_shared::align::AlignError,
    },
    /// A text file (landmarks, pairs, identity list) has a malformed line.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file being parsed.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Arguments or tensors that do not fit together.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A case facelock knows about but does not handle (listed in the README's Limitations).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An ONNX model that cannot be read, is not a facelock model, or that tract rejects.
    #[error("onnx model '{path}': {reason}")]
    Onnx {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with the host [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
