//! `facelock embed`: L2-normalised embeddings of a list of images to a `.npy` file.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use facelock_host::data::{align_image, AlignConfig, Landmarks};
use facelock_host::eval::embedder::embed;
use facelock_host::eval::npy;
use facelock_host::train::checkpoint;
use facelock_host::train::device::{self, DeviceKind};

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
    /// 5-point landmarks TSV (paths relative to --images); without it, centred crops.
    #[arg(long)]
    landmarks: Option<PathBuf>,
    /// Output `.npy` file, float32 [images, dim].
    #[arg(long)]
    out: PathBuf,
    /// Flip test-time augmentation: sum the embeddings of each image and its mirror.
    #[arg(long)]
    flip: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

impl EmbedArgs {
    /// Embeds the listed images and writes the matrix.
    pub fn run(self) -> anyhow::Result<()> {
        let device = device::open(self.device)?;
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
        let landmarks = self.landmarks.as_deref().map(Landmarks::load).transpose()?;
        let align = AlignConfig::default();
        let embeddings = embed(&model, paths.len(), self.batch, self.flip, true, |i| {
            let points = landmarks.as_ref().and_then(|l| l.get(&paths[i]));
            align_image(&self.images.join(&paths[i]), points.as_ref(), &align)
        })?;
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
