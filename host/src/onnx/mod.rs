//! ONNX on facelock's side: graph building on tract's generated protobuf types, metadata,
//! and loading models into tract.
pub mod builder;
pub mod compact;
pub mod lower;
pub mod meta;
pub mod runner;

pub use meta::{ModelMeta, Quantization, Thresholds};
pub use runner::{read_model, write_model, Embedder};
