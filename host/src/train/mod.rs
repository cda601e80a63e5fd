//! Training: SGD with momentum, LR and margin schedules, checkpoints, metrics and curves.
pub mod allocator;
pub mod checkpoint;
pub mod curves;
pub mod device;
pub mod head;
pub mod loader_source;
pub mod optimizer;
pub mod schedule;
pub mod synthetic;
pub mod trainer;

pub use checkpoint::{CheckpointConfig, HeadConfig, LossKind};
pub use optimizer::Sgd;
pub use schedule::{Decay, Schedule};
pub use trainer::{train, BatchSource, EpochSummary, Objective, TrainBatch, TrainOptions};

#[cfg(test)]
mod tests;
