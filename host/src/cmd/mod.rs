//! One module per subcommand; each has clap arguments and a `run`.
pub mod align;
pub mod bench;
pub mod data;
pub mod demo;
pub mod device;
pub mod embed;
pub mod eval;
pub mod export;
pub mod landmarks;
pub mod model;
pub mod quantize;
pub mod train;

use std::path::PathBuf;

use facelock_host::train::device::DeviceKind;

/// How `facelock eval` and `facelock embed` turn images into embeddings.
#[derive(clap::Args)]
pub struct EmbedOptions {
    /// 5-point landmarks TSV (paths relative to --images); without it, centred crops.
    #[arg(long)]
    landmarks: Option<PathBuf>,
    /// Flip test-time augmentation: sum the embeddings of each image and its mirror.
    #[arg(long)]
    flip: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Compute device (checkpoints only; ONNX models run on the CPU through tract).
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

impl EmbedOptions {
    /// The landmarks file, when one was given.
    fn load_landmarks(&self) -> anyhow::Result<Option<facelock_host::data::Landmarks>> {
        Ok(self
            .landmarks
            .as_deref()
            .map(facelock_host::data::Landmarks::load)
            .transpose()?)
    }
}

/// Logs to stderr through tracing: INFO by default, `-v` debug, `-vv` trace, `RUST_LOG` wins.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
