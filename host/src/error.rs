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
    /// A CUDA driver, NVRTC or cuBLAS failure, or no usable GPU.
    #[error("cuda: {0}")]
    Cuda(String),
    /// The board refused a request or the link to it failed.
    #[error("board: {0}")]
    Device(String),
    /// Training produced a NaN or infinite loss and stopped.
    #[error(
        "loss is {value} at epoch {epoch}, step {step}: training stopped; last good checkpoint: {}",
        last_checkpoint.as_ref().map_or("none (no epoch completed)".to_string(), |p| p.display().to_string())
    )]
    NonFiniteLoss {
        /// The loss value (NaN or ±inf).
        value: f32,
        /// 0-based epoch in which it happened.
        epoch: usize,
        /// 0-based global optimizer step.
        step: usize,
        /// The newest checkpoint written before it, left untouched.
        last_checkpoint: Option<PathBuf>,
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
