//! `facelock model info`: layer table, parameter and FLOP counts of a backbone configuration.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use facelock_host::model::ModelConfig;
use facelock_host::train::checkpoint;

/// Inspect backbone configurations.
#[derive(Subcommand)]
pub enum Model {
    /// Print the layers, parameter count and FLOPs of a configuration or checkpoint.
    Info(InfoArgs),
}

/// Arguments of `facelock model info`.
#[derive(Args)]
pub struct InfoArgs {
    /// Width multiplier of the MobileFaceNet layout (ignored with --checkpoint).
    #[arg(long, default_value_t = 0.7)]
    width: f32,
    /// A checkpoint directory (or a file in it) whose config.json to describe.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Print every layer.
    #[arg(long)]
    layers: bool,
}

impl Model {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        let Model::Info(args) = self;
        let config = match &args.checkpoint {
            Some(path) => checkpoint::read_config(path)?.1.model,
            None => ModelConfig::mobilefacenet(args.width),
        };
        config.validate()?;
        if args.layers {
            println!(
                "{:<4} {:>9} {:>6} {:>6} {:>5} {:>10} {:>12}",
                "#", "kind", "in", "out", "side", "params", "mult-adds"
            );
            for (index, layer) in config.layers().iter().enumerate() {
                let kind = if layer.depthwise { "depthwise" } else { "conv" };
                println!(
                    "{index:<4} {kind:>9} {:>6} {:>6} {:>5} {:>10} {:>12}",
                    layer.in_channels,
                    layer.out_channels,
                    layer.out_side,
                    layer.parameters(),
                    layer.multiply_adds()
                );
            }
        }
        print_summary(&config);
        Ok(())
    }
}

/// One line: input, width, parameters, multiply-adds and FLOPs.
pub fn print_summary(config: &ModelConfig) {
    println!(
        "MobileFaceNet width {}: input {}x{}, {}-d embedding, {:.3} M parameters, {:.1} M multiply-adds = {:.3} GFLOPs",
        config.width,
        config.input_size,
        config.input_size,
        config.embedding_dim,
        config.parameter_count() as f64 / 1e6,
        config.multiply_adds() as f64 / 1e6,
        config.flops() as f64 / 1e9
    );
}
