//! facelock workstation library: data sets, alignment, the AM-Softmax loss, training,
//! evaluation, export and the serial client for the board.
#![warn(missing_docs)]

pub mod data;
pub mod demo;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod landmarks;
pub mod loss;
pub mod model;
pub mod onnx;
pub mod plot;
pub mod progress;
pub mod quantize;
pub mod train;

pub use error::{Error, Result};
