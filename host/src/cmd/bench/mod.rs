//! `facelock bench …`: benchmarks that print tables (and CSV) of measured numbers.
use clap::Subcommand;

mod align;
mod detect;
mod infer;
mod loss;
mod train;

/// Which benchmark to run.
#[derive(Subcommand)]
pub enum Bench {
    /// Aligned images per second: decode + 5-point alignment of LFW images on N threads.
    Align(align::AlignBench),
    /// Face detector recall on LFW and ORL, and time per 640x480 frame.
    Detect(detect::DetectBench),
    /// ONNX inference latency in tract (and onnxruntime when its Python package is installed).
    Infer(infer::Args),
    /// Fused vs naive AM-Softmax: forward+backward time and measured peak extra memory.
    Loss(loss::LossArgs),
    /// Training images/s of the backbone + AM-Softmax head (and a per-layer profile).
    Train(train::TrainBench),
}

impl Bench {
    /// Runs the chosen benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Bench::Align(args) => args.run(),
            Bench::Detect(args) => args.run(),
            Bench::Infer(args) => infer::run(args),
            Bench::Loss(args) => loss::run(args),
            Bench::Train(bench) => bench.run(),
        }
    }
}
