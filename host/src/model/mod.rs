//! The face-embedding backbone: configuration, layers, parameters and the network.
pub mod config;
pub mod depthwise;
pub mod fused;
pub mod im2col;
pub mod layers;
pub mod mobilefacenet;
pub mod params;
pub mod pointwise;
#[cfg(test)]
pub(crate) mod testing;

pub use config::{ModelConfig, StageSpec};
pub use mobilefacenet::MobileFaceNet;
pub use params::ParamStore;
