//! `facelock train`: train the backbone with AM-Softmax (or a softmax baseline) on an identity
//! folder tree, with checkpoints, metrics and curves in the output directory.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use facelock_host::data::{BatchLoader, Dataset, Landmarks, LoaderConfig};
use facelock_host::model::{MobileFaceNet, ModelConfig};
use facelock_host::train::device::{self, DeviceKind};
use facelock_host::train::head::ClassifierHead;
use facelock_host::train::{train, Decay, HeadConfig, LossKind, Schedule, TrainOptions};

/// Arguments of `facelock train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Folder with one sub-folder of images per identity (e.g. `$FACELOCK_DATA/lfw`).
    #[arg(long)]
    images: PathBuf,
    /// Identities to train on (LFW `peopleDevTrain.txt` format or one name per line).
    #[arg(long)]
    identities: Option<PathBuf>,
    /// 5-point landmarks TSV (paths relative to --images); without it, centred crops.
    #[arg(long)]
    landmarks: Option<PathBuf>,
    /// Drop identities with fewer images than this.
    #[arg(long, default_value_t = 1)]
    min_images: usize,
    /// Output directory: checkpoints/, metrics.jsonl, loss.png, accuracy.png.
    #[arg(long)]
    out: PathBuf,
    /// Classification loss.
    #[arg(long, value_enum, default_value_t = LossKind::AmSoftmax)]
    loss: LossKind,
    /// Logit scale s of the cosine heads.
    #[arg(long, default_value_t = 30.0)]
    scale: f32,
    /// Additive cosine margin m of AM-Softmax.
    #[arg(long, default_value_t = 0.35)]
    margin: f32,
    /// Epochs over which the margin rises linearly from 0 to --margin (0: from the start).
    #[arg(long, default_value_t = 0.0)]
    margin_warmup: f64,
    /// Training epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Epochs of linear learning-rate warm-up.
    #[arg(long, default_value_t = 1.0)]
    warmup_epochs: f64,
    /// Decay after warm-up: cosine to 0, or ×--gamma at each of --milestones.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Cosine)]
    schedule: ScheduleKind,
    /// Epochs at which the step schedule multiplies the rate by --gamma.
    #[arg(long, value_delimiter = ',', default_value = "10,15")]
    milestones: Vec<usize>,
    /// Step schedule factor.
    #[arg(long, default_value_t = 0.1)]
    gamma: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Weight decay on conv and linear weights.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Seed of initialisation, shuffling and flips.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Width multiplier of the MobileFaceNet layout.
    #[arg(long, default_value_t = 0.7)]
    width: f32,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Loader threads decoding and aligning images.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Cache of aligned crops (speeds up every epoch after the first).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Gaussian noise on each landmark coordinate before alignment, as a fraction of the eye
    /// distance (0.05 ≈ the error of `facelock landmarks`); makes the embedding tolerate
    /// predicted landmarks. Jittered images bypass the crop cache.
    #[arg(long, default_value_t = 0.0)]
    landmark_jitter: f32,
}

/// Learning-rate decay after warm-up.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ScheduleKind {
    Cosine,
    Step,
}

impl TrainArgs {
    /// Runs the training.
    pub fn run(self) -> anyhow::Result<()> {
        facelock_host::train::allocator::tune_for_training();
        let device = device::open(self.device)?;
        let dataset =
            Dataset::from_folder(&self.images, self.identities.as_deref(), self.min_images)?;
        anyhow::ensure!(
            !dataset.samples.is_empty(),
            "no training images under {}",
            self.images.display()
        );
        let classes = dataset.identities.len();
        let landmarks = self.landmarks.as_deref().map(Landmarks::load).transpose()?;
        tracing::info!("{} images of {classes} identities", dataset.samples.len());

        let loader_config = LoaderConfig {
            batch_size: self.batch,
            workers: self.workers,
            seed: self.seed,
            cache_dir: self.cache_dir.clone(),
            landmark_jitter: self.landmark_jitter,
            ..LoaderConfig::default()
        };
        let mut loader = BatchLoader::new(dataset, landmarks, loader_config)?;
        let steps_per_epoch = loader.batches_per_epoch();
        anyhow::ensure!(
            steps_per_epoch > 0,
            "fewer images than one batch of {}",
            self.batch
        );

        let config = ModelConfig::mobilefacenet(self.width);
        super::model::print_summary(&config);
        let model = MobileFaceNet::new(&config, self.seed, &device)?;
        let head_config = HeadConfig {
            loss: self.loss,
            scale: self.scale,
            margin: self.margin,
            classes,
        };
        let head = ClassifierHead::new(head_config, config.embedding_dim, self.seed, &device)?;
        let decay = match self.schedule {
            ScheduleKind::Cosine => Decay::Cosine,
            ScheduleKind::Step => Decay::Step {
                milestones: self.milestones.clone(),
                gamma: self.gamma,
            },
        };
        let margin = if self.loss == LossKind::AmSoftmax {
            self.margin
        } else {
            0.0
        };
        let options = TrainOptions {
            schedule: Schedule {
                base_lr: self.lr,
                warmup_epochs: self.warmup_epochs,
                decay,
                steps_per_epoch,
                epochs: self.epochs,
                margin,
                margin_warmup_epochs: self.margin_warmup,
            },
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            seed: self.seed,
            out_dir: self.out.clone(),
            resume: self.resume,
            progress: true,
        };
        let started = std::time::Instant::now();
        let summaries = train(&model, &head, &mut loader, &options)
            .with_context(|| format!("training into {}", self.out.display()))?;
        if let Some(last) = summaries.last() {
            println!(
                "trained {} epochs in {:.0} s: loss {:.4}, train accuracy {:.2}%; checkpoints in {}",
                summaries.len(),
                started.elapsed().as_secs_f64(),
                last.loss,
                100.0 * last.accuracy,
                self.out.join("checkpoints").display()
            );
        }
        Ok(())
    }
}
