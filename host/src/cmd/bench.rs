//! `facelock bench …`: benchmarks that print tables (and CSV) of measured numbers.
use clap::Subcommand;

pub mod infer;

/// Which benchmark to run.
#[derive(Subcommand)]
pub enum Bench {
    /// ONNX inference latency in tract (and onnxruntime when its Python package is installed).
    Infer(infer::Args),
}

impl Bench {
    /// Runs the chosen benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Bench::Infer(args) => infer::run(args),
        }
    }
}
