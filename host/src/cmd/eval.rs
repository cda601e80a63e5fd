//! `facelock eval`: verification accuracy of a checkpoint on a pairs file (k-fold when the
//! file has folds), TAR@FAR, EER, AUC, with report.json, roc.png and scores.png.
use std::path::PathBuf;

use clap::Args;
use facelock_host::data::{AlignConfig, Pairs};
use facelock_host::eval::pair_scores::{score_pairs, score_pairs_onnx, PairImages};
use facelock_host::eval::{ScoredPairs, VerificationReport};
use facelock_host::train::checkpoint;
use facelock_host::train::device;

/// Arguments of `facelock eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Checkpoint directory (or a file in it), or an exported `.onnx` model.
    #[arg(long)]
    model: PathBuf,
    /// Pairs file: LFW `pairs.txt` (10 folds), `pairsDevTest.txt` (no folds) or TSV.
    #[arg(long)]
    pairs: PathBuf,
    /// Root the pair paths are relative to (e.g. `$FACELOCK_DATA/lfw`).
    #[arg(long)]
    images: PathBuf,
    /// Directory for report.json, roc.png and scores.png.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    face: super::EmbedOptions,
}

impl EvalArgs {
    /// Runs the evaluation and prints the summary.
    pub fn run(self) -> anyhow::Result<()> {
        // candle allocates per batch as in training (see `train::allocator`).
        facelock_host::train::allocator::tune_for_training();
        let onnx = self
            .model
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        let (candle, onnx_model, epoch) = if onnx {
            let model = facelock_host::onnx::Embedder::load(&self.model, self.face.batch.max(1))?;
            (None, Some(model), None)
        } else {
            let device = device::open(self.face.device)?;
            let (model, config) = checkpoint::load_model(&self.model, &device)?;
            (Some(model), None, Some(config.epoch))
        };
        let pairs = Pairs::load(&self.pairs)?;
        let resolved = pairs.resolve(&self.images);
        anyhow::ensure!(
            !resolved.pairs.is_empty(),
            "no usable pairs in {}",
            self.pairs.display()
        );
        let landmarks = self.face.load_landmarks()?;

        let images = PairImages {
            root: &self.images,
            landmarks: landmarks.as_ref(),
            align: AlignConfig::default(),
            flip: self.face.flip,
            batch: self.face.batch,
            progress: true,
        };
        let scores = match (&candle, &onnx_model) {
            (Some(model), _) => score_pairs(model, &resolved.pairs, &images)?,
            (None, Some(model)) => score_pairs_onnx(model, &resolved.pairs, &images)?,
            (None, None) => anyhow::bail!("no model loaded"),
        };
        let same: Vec<bool> = resolved.pairs.iter().map(|p| p.same).collect();
        let folds: Vec<usize> = resolved.pairs.iter().map(|p| p.fold).collect();
        let scored = ScoredPairs {
            scores: &scores,
            same: &same,
        };
        let folds = (pairs.folds > 1).then_some(folds.as_slice());
        let report = VerificationReport::compute(&scored, folds)?;
        for line in report.summary() {
            println!("{line}");
        }
        if !resolved.skipped.is_empty() {
            println!(
                "skipped {} pairs with missing images",
                resolved.skipped.len()
            );
        }
        let extra = serde_json::json!({
            "model": self.model.display().to_string(),
            "checkpoint_epoch": epoch,
            "pairs_file": self.pairs.display().to_string(),
            "pairs_skipped": resolved.skipped.len(),
            "flip_tta": self.face.flip,
        });
        report.write(&scored, &self.out, extra)?;
        println!("report: {}", self.out.join("report.json").display());
        Ok(())
    }
}
