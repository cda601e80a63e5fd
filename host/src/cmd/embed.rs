//! `facelock embed`: L2-normalised embeddings of a list of images to a `.npy` file.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use facelock_host::data::{align_image, AlignConfig};
use facelock_host::eval::embedder::embed;
use facelock_host::eval::npy;
use facelock_host::train::checkpoint;
use facelock_host::train::device;

/// Arguments of `facelock embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Checkpoint directory (or a file in it).
    #[arg(long)]
    model: PathBuf,
    /// Text file with one image path per line (relative to --images); row i of the output is
    /// line i.
    #[arg(long)]
    list: PathBuf,
    /// Root the listed paths are relative to.
    #[arg(long, default_value = ".")]
    images: PathBuf,
    /// Output `.npy` file, float32 [images, dim].
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    face: super::EmbedOptions,
}

impl EmbedArgs {
    /// Embeds the listed images and writes the matrix.
    pub fn run(self) -> anyhow::Result<()> {
        // candle allocates per batch as in training (see `train::allocator`).
        facelock_host::train::allocator::tune_for_training();
        let device = device::open(self.face.device)?;
        let (model, config) = checkpoint::load_model(&self.model, &device)?;
        let text = std::fs::read_to_string(&self.list)
            .with_context(|| format!("reading image list {}", self.list.display()))?;
        let paths: Vec<PathBuf> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect();
        anyhow::ensure!(
            !paths.is_empty(),
            "image list {} is empty",
            self.list.display()
        );
        let landmarks = self.face.load_landmarks()?;
        let align = AlignConfig::default();
        let embeddings = embed(
            &model,
            paths.len(),
            self.face.batch,
            self.face.flip,
            true,
            |i| {
                let points = landmarks.as_ref().and_then(|l| l.get(&paths[i]));
                align_image(&self.images.join(&paths[i]), points.as_ref(), &align)
            },
        )?;
        let dim = config.model.embedding_dim;
        npy::write_f32(&self.out, &embeddings, paths.len(), dim)?;
        println!(
            "{} embeddings of dimension {dim} written to {}",
            paths.len(),
            self.out.display()
        );
        Ok(())
    }
}
