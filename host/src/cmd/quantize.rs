//! `facelock quantize`: f32 facelock ONNX → QDQ int8 ONNX calibrated on aligned faces, with
//! thresholds re-measured on the int8 model.
use std::path::PathBuf;

use anyhow::Context;
use facelock_host::data::{Landmarks, Pairs};
use facelock_host::onnx::{self, Embedder, ModelMeta};
use facelock_host::quantize::{self, images, Method, QuantizeOptions};

/// Arguments of `quantize`.
#[derive(clap::Args)]
pub struct Args {
    /// The f32 model written by `facelock export`.
    #[arg(long)]
    model: PathBuf,
    /// Image root of the calibration set (e.g. `$FACELOCK_DATA/lfw`).
    #[arg(long)]
    calib: PathBuf,
    /// 5-point landmarks TSV of the calibration images.
    #[arg(long)]
    landmarks: PathBuf,
    /// Calibration images, spread evenly over the landmark file.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// How activation ranges are taken.
    #[arg(long, value_enum, default_value_t = Method::Minmax)]
    method: Method,
    /// Layers left in float: `first`, `last`, `depthwise`, node names (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "first")]
    keep_float: Vec<String>,
    /// Pairs file to re-measure the thresholds on (images under --calib). Required when the
    /// f32 model carries thresholds; without it the int8 model carries none.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Output int8 ONNX file.
    #[arg(long)]
    out: PathBuf,
}

/// Calibrates, quantizes, re-measures thresholds and writes the model.
pub fn run(args: Args) -> anyhow::Result<()> {
    let model = onnx::read_model(&args.model)?;
    let meta = ModelMeta::from_model(&model, &args.model)?;
    let calibration = images::calibration_images(&args.calib, &args.landmarks, args.count, &meta)
        .context("loading calibration images")?;
    let options = QuantizeOptions {
        method: args.method,
        keep_float: args.keep_float.clone(),
    };
    let mut quantized =
        quantize::quantize_model(&model, &args.model, &calibration, &options, None)?;

    let thresholds = match (&meta.thresholds, &args.pairs) {
        (_, Some(pairs_path)) => {
            let pairs = Pairs::load(pairs_path)?;
            let landmarks = Landmarks::load(&args.landmarks)?;
            let embedder = Embedder::from_model(&quantized, &args.out, 32)?;
            let scores = images::score_pairs(&embedder, &args.calib, &landmarks, &pairs)?;
            let name = pairs_path
                .file_name()
                .map(|n| n.to_string_lossy().to_string());
            let source = name.unwrap_or_else(|| pairs_path.display().to_string());
            Some(quantize::thresholds_from_scores(&scores, &source)?)
        }
        (Some(_), None) => {
            tracing::warn!(
                "the f32 model has thresholds but no --pairs was given: the int8 model gets none \
                 (thresholds shift after quantization)"
            );
            None
        }
        (None, None) => None,
    };
    if let Some(t) = &thresholds {
        println!(
            "int8 thresholds: FAR 1e-2 {:.4}, 1e-3 {:.4}, 1e-4 {:.4} on {}",
            t.far_1e2, t.far_1e3, t.far_1e4, t.source
        );
    }
    let final_meta = ModelMeta {
        thresholds,
        ..ModelMeta::from_model(&quantized, &args.out)?
    };
    final_meta.write_into(&mut quantized);
    onnx::write_model(&quantized, &args.out)?;
    let before = std::fs::metadata(&args.model)?.len();
    let after = std::fs::metadata(&args.out)?.len();
    println!(
        "wrote {} ({after} bytes, {:.1}% of the f32 file; model id {:016x})",
        args.out.display(),
        100.0 * after as f64 / before as f64,
        final_meta.model_id
    );
    Ok(())
}
