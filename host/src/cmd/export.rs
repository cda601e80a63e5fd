//! `facelock export`: a trained checkpoint (or a random default backbone) to ONNX f32 with
//! BN folded and facelock metadata, then checked: tract's output against candle's.
use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use facelock_host::export::{self, checkpoint, network_to_onnx};
use facelock_host::model::{MobileFaceNet, ModelConfig};
use facelock_host::onnx::{self, Embedder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Arguments of `export`.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory (or a file inside it), e.g. runs/x/checkpoints/epoch-0020.
    #[arg(long, required_unless_present = "random_seed")]
    checkpoint: Option<PathBuf>,
    /// Export a randomly initialised default backbone instead (for size and latency only).
    #[arg(long, conflicts_with = "checkpoint")]
    random_seed: Option<u64>,
    /// `report.json` of the last `facelock eval` of this checkpoint: its thresholds at
    /// FAR 1e-2/1e-3/1e-4 go into the metadata.
    #[arg(long)]
    eval_report: Option<PathBuf>,
    /// Output ONNX file.
    #[arg(long)]
    out: PathBuf,
}

/// Exports, writes and checks the model.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (model, normalisation, what) = match (&args.checkpoint, args.random_seed) {
        (Some(path), _) => {
            let (model, config) = facelock_host::train::checkpoint::load_model(path, &Device::Cpu)?;
            let (_, normalisation, _) = checkpoint::load_checkpoint(path)?;
            (
                model,
                normalisation,
                format!("checkpoint {} (epoch {})", path.display(), config.epoch),
            )
        }
        (None, Some(seed)) => {
            let model = MobileFaceNet::new(&ModelConfig::default(), seed, &Device::Cpu)?;
            let normalisation = export::Normalisation {
                mean: [0.5; 3],
                std: [0.5; 3],
            };
            (
                model,
                normalisation,
                format!("RANDOM default backbone (seed {seed}), not trained"),
            )
        }
        (None, None) => bail!("pass --checkpoint or --random-seed"),
    };
    let network = checkpoint::network_from_model(&model)?;
    let thresholds = match &args.eval_report {
        Some(path) => Some(export::thresholds_from_report(path)?),
        None => {
            tracing::warn!("no --eval-report: the model carries no verification thresholds");
            None
        }
    };
    let proto = network_to_onnx(&network, &normalisation, thresholds)?;
    onnx::write_model(&proto, &args.out)?;
    let size = std::fs::metadata(&args.out)
        .with_context(|| args.out.display().to_string())?
        .len();

    // Check: tract on the written file against the candle backbone, 4 seeded images.
    let embedder = Embedder::load(&args.out, 4)?;
    let side = network.input_size;
    let mut rng = StdRng::seed_from_u64(0);
    let images: Vec<f32> = (0..4 * 3 * side * side)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let tract = embedder.embed(&images)?;
    let input = Tensor::from_slice(&images, (4, 3, side, side), &Device::Cpu)?;
    let candle: Vec<f32> = model.forward(&input, false)?.flatten_all()?.to_vec1()?;
    let diff = tract
        .iter()
        .zip(&candle)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = candle.iter().fold(0f32, |m, v| m.max(v.abs()));
    println!("exported {what}");
    println!(
        "wrote {} ({size} bytes, model id {:016x}); tract vs candle: max abs diff {diff:.2e}, \
         largest output {scale:.2e}",
        args.out.display(),
        embedder.meta().model_id
    );
    // 1e-4 absolute for embeddings of order 1 (trained BN keeps them there); relative for
    // larger ones (an untrained backbone with unit BN statistics grows them layer by layer).
    if diff > 1e-4 * scale.max(1.0) {
        bail!("tract and candle disagree by {diff:.2e} (outputs up to {scale:.2e}): the export is wrong");
    }
    Ok(())
}
