//! facelock workstation library: data sets, alignment, the AM-Softmax loss, training,
//! evaluation, export and the serial client for the board.
#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod export;
pub mod loss;
pub mod onnx;
pub mod progress;
pub mod quantize;

pub use error::{Error, Result};
