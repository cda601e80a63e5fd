//! `facelock bench …`: benchmarks that print tables (and CSV) of measured numbers.
use clap::Subcommand;

/// Which benchmark to run.
#[derive(Subcommand)]
pub enum Bench {
    /// Training images/s of the backbone + AM-Softmax head (and a per-layer profile).
    Train(super::bench_train::TrainBench),
}

impl Bench {
    /// Runs the chosen benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Bench::Train(bench) => bench.run(),
        }
    }
}
