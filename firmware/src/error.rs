//! The firmware library's error type.
use std::path::PathBuf;

/// Everything that can go wrong in the board daemon's library code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read, written or renamed.
    #[error("{what} '{path}': {source}")]
    Io {
        /// What was being done ("reading model", "renaming gallery").
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The ONNX model could not be parsed, optimised or run by tract.
    #[error("model '{path}': {message}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// tract's message, with its context chain.
        message: String,
    },
    /// The ONNX model lacks a facelock metadata key or holds a bad value.
    #[error("model '{path}' is not a facelock model: {message}")]
    ModelMetadata {
        /// The model file.
        path: PathBuf,
        /// Which key is missing or wrong.
        message: String,
    },
    /// Running the model on an input failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// An input buffer has the wrong size.
    #[error("{what} has {got} values, expected {expected}")]
    Shape {
        /// The buffer concerned.
        what: &'static str,
        /// Values received.
        got: usize,
        /// Values expected.
        expected: usize,
    },
    /// The gallery file was written for another model.
    #[error(
        "gallery '{path}' belongs to model {gallery_model:016x} but the loaded model is \
         {loaded_model:016x}; re-enroll with the new model or point --gallery elsewhere"
    )]
    GalleryModelMismatch {
        /// The gallery file.
        path: PathBuf,
        /// Model id stored in the gallery.
        gallery_model: u64,
        /// Model id of the loaded ONNX model.
        loaded_model: u64,
    },
    /// A stored file did not parse; it was renamed aside.
    #[error("{what} '{path}' is corrupt ({reason}); kept as '{kept_as}'")]
    Corrupt {
        /// Which store ("gallery", "lockout state").
        what: &'static str,
        /// The file that failed to parse.
        path: PathBuf,
        /// Why it failed to parse.
        reason: String,
        /// Where the corrupt file now lives.
        kept_as: PathBuf,
    },
    /// The admin key file is missing, unreadable or too short.
    #[error("admin key file '{path}': {message}")]
    AdminKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never the key itself).
        message: String,
    },
    /// A lock output specification or driver failed.
    #[error("lock output '{spec}': {message}")]
    Lock {
        /// The `--lock-gpio` value.
        spec: String,
        /// What failed.
        message: String,
    },
    /// An image could not be decoded or aligned.
    #[error("image: {0}")]
    Image(String),
    /// The serial device could not be opened or configured.
    #[error("serial device '{path}': {message}")]
    Serial {
        /// The tty path.
        path: String,
        /// What failed.
        message: String,
    },
    /// The configuration file is invalid.
    #[error("config '{path}': {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The camera could not be opened, configured or read.
    #[error("camera: {0}")]
    Camera(String),
    /// A feature that this build does not support.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

impl Error {
    /// Wraps an I/O error with what was being done and to which file.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Result with the firmware [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
