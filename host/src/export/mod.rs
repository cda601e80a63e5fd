//! Trained backbone → ONNX f32 with batch norm folded and facelock metadata.
pub mod checkpoint;
pub mod network;
pub mod random;
pub mod reference;
pub mod thresholds;
pub mod to_onnx;

pub use network::{BatchNorm, Conv, Layer, Linear, Network};
pub use random::random_network;
pub use thresholds::thresholds_from_report;
pub use to_onnx::{network_to_onnx, Normalisation, INPUT, OUTPUT};

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod checkpoint_tests;
