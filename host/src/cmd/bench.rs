//! `facelock bench …`: benchmarks that print tables (and CSV) of measured numbers.
use clap::Subcommand;

/// Which benchmark to run.
#[derive(Subcommand)]
pub enum Bench {}

impl Bench {
    /// Runs the chosen benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        match self {}
    }
}
