//! The training loop: batches in, SGD steps, metrics, checkpoints, NaN guard, resume.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointConfig, HeadConfig, InputSpec};
use super::optimizer::Sgd;
use super::schedule::Schedule;
use crate::model::{MobileFaceNet, ParamStore};
use crate::{Error, Result};

/// One batch of aligned training images.
pub struct TrainBatch {
    /// Images [batch, 3, size, size], CHW, normalised with mean = std = 0.5.
    pub images: Vec<f32>,
    /// Identity labels [batch], in `0..classes`.
    pub labels: Vec<u32>,
}

/// Where batches come from. Each epoch's order must depend only on the seed and the epoch,
/// so that a resumed run sees the same batches as an uninterrupted one.
pub trait BatchSource {
    /// Batches in one epoch.
    fn batches_per_epoch(&self) -> usize;
    /// The batches of 0-based `epoch`.
    fn epoch(&mut self, epoch: usize) -> Result<Box<dyn Iterator<Item = Result<TrainBatch>> + '_>>;
}

/// The classification objective on top of the embeddings.
pub trait Objective {
    /// Mean loss (scalar tensor, differentiable) and the number of correctly classified
    /// samples, for embeddings [batch, dim] and labels [batch] (u32) at `margin`.
    fn loss(&self, embeddings: &Tensor, labels: &Tensor, margin: f32) -> Result<(Tensor, usize)>;
    /// The head's parameters (saved as `head.safetensors`, optimised with the backbone).
    fn params(&self) -> &ParamStore;
    /// The head's description for `config.json`.
    fn config(&self) -> HeadConfig;
}

/// Everything about a run except the model, head and data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Learning rate and margin over time.
    pub schedule: Schedule,
    /// Heavy-ball momentum.
    pub momentum: f64,
    /// L2 weight decay on conv and linear weights.
    pub weight_decay: f64,
    /// Seed of the model initialisation and data order.
    pub seed: u64,
    /// Output directory: checkpoints, `metrics.jsonl`, `loss.png`, `accuracy.png`.
    pub out_dir: PathBuf,
    /// Continue from the newest checkpoint in `out_dir`.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// One epoch's summary, also written to `metrics.jsonl` with `"kind": "epoch"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochSummary {
    /// 0-based epoch.
    pub epoch: usize,
    /// Global steps completed at its end.
    pub step: usize,
    /// Mean loss over its batches.
    pub loss: f64,
    /// Fraction of training samples classified correctly (with the margin applied).
    pub accuracy: f64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// One step's record in `metrics.jsonl` (`"kind": "step"`).
#[derive(Serialize, Deserialize)]
struct StepRecord {
    kind: String,
    epoch: usize,
    step: usize,
    loss: f64,
    accuracy: f64,
    lr: f64,
    margin: f32,
}

/// Trains `model` and `objective` on `source`; returns the summaries of the epochs run now.
pub fn train(
    model: &MobileFaceNet,
    objective: &dyn Objective,
    source: &mut dyn BatchSource,
    options: &TrainOptions,
) -> Result<Vec<EpochSummary>> {
    let device = model.params().device().clone();
    let mut vars: Vec<(String, candle_core::Var)> = Vec::new();
    for (name, var) in model.params().trainable() {
        vars.push((format!("model.{name}"), var.clone()));
    }
    for (name, var) in objective.params().trainable() {
        vars.push((format!("head.{name}"), var.clone()));
    }
    let mut sgd = Sgd::new(vars, options.momentum, options.weight_decay)?;
    fs::create_dir_all(&options.out_dir).map_err(|e| Error::io(&options.out_dir, e))?;

    let (mut epoch, mut step) = (0, 0);
    let mut last_checkpoint = None;
    if options.resume {
        if let Some(dir) = checkpoint::latest(&options.out_dir)? {
            (epoch, step) = restore(&dir, model, objective, &mut sgd, &device)?;
            tracing::info!(
                "resuming from {} (epoch {epoch}, step {step})",
                dir.display()
            );
            last_checkpoint = Some(dir);
        } else {
            tracing::warn!(
                "--resume: no checkpoint in {}, starting fresh",
                options.out_dir.display()
            );
        }
    }

    let metrics_path = options.out_dir.join("metrics.jsonl");
    let mut metrics = OpenOptions::new()
        .create(true)
        .append(options.resume)
        .write(true)
        .truncate(!options.resume)
        .open(&metrics_path)
        .map_err(|e| Error::io(&metrics_path, e))?;
    let schedule = &options.schedule;
    let mut summaries = Vec::new();
    while epoch < schedule.epochs {
        let bar = progress_bar(
            options.progress,
            source.batches_per_epoch(),
            epoch,
            schedule.epochs,
        );
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut batches) = (0f64, 0usize, 0usize, 0usize);
        for batch in source.epoch(epoch)? {
            let batch = batch?;
            let size = model.config().input_size;
            let count = batch.labels.len();
            let channels = model.config().input_channels;
            if batch.images.len() != count * channels * size * size {
                return Err(Error::InvalidInput(format!(
                    "batch of {count} labels has {} pixel values, expected {}",
                    batch.images.len(),
                    count * channels * size * size
                )));
            }
            let images = Tensor::from_vec(batch.images, (count, channels, size, size), &device)?;
            let labels = Tensor::from_vec(batch.labels, count, &device)?;
            let (lr, margin) = (schedule.lr(step), schedule.margin(step));

            let embeddings = model.forward(&images, true)?;
            let (loss, batch_correct) = objective.loss(&embeddings, &labels, margin)?;
            let value = loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
            if !value.is_finite() {
                bar.abandon();
                return Err(Error::NonFiniteLoss {
                    value,
                    epoch,
                    step,
                    last_checkpoint,
                });
            }
            let grads = loss.backward()?;
            sgd.step(&grads, lr)?;

            step += 1;
            batches += 1;
            loss_sum += value as f64;
            correct += batch_correct;
            seen += count;
            let record = StepRecord {
                kind: "step".into(),
                epoch,
                step,
                loss: value as f64,
                accuracy: batch_correct as f64 / count.max(1) as f64,
                lr,
                margin,
            };
            write_json(&mut metrics, &metrics_path, &record)?;
            let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.3} acc {:.1}% {rate:.1} img/s",
                loss_sum / batches as f64,
                100.0 * correct as f64 / seen as f64
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        if batches == 0 {
            return Err(Error::InvalidInput(
                "the training data gave no batches".into(),
            ));
        }

        let seconds = started.elapsed().as_secs_f64();
        let summary = EpochSummary {
            epoch,
            step,
            loss: loss_sum / batches as f64,
            accuracy: correct as f64 / seen as f64,
            seconds,
            images_per_second: seen as f64 / seconds.max(1e-9),
        };
        let mut line =
            serde_json::to_value(&summary).map_err(|e| Error::InvalidInput(e.to_string()))?;
        line["kind"] = "epoch".into();
        write_json(&mut metrics, &metrics_path, &line)?;
        tracing::info!(
            "epoch {}/{}: loss {:.4}, train accuracy {:.2}%, {:.1} img/s, {:.0} s",
            epoch + 1,
            schedule.epochs,
            summary.loss,
            100.0 * summary.accuracy,
            summary.images_per_second,
            seconds
        );
        epoch += 1;

        let dir = checkpoint::epoch_dir(&options.out_dir, epoch);
        let config = CheckpointConfig {
            format: checkpoint::FORMAT.into(),
            version: 1,
            model: model.config().clone(),
            input: InputSpec::default(),
            parameter_count: model.config().parameter_count(),
            multiply_adds: model.config().multiply_adds(),
            head: objective.config(),
            epoch,
            step,
            seed: options.seed,
        };
        checkpoint::save(&dir, &config, model, objective.params(), &sgd.state())?;
        last_checkpoint = Some(dir);
        summaries.push(summary);
        super::curves::write(&metrics_path, &options.out_dir)?;
    }
    Ok(summaries)
}

fn restore(
    dir: &Path,
    model: &MobileFaceNet,
    objective: &dyn Objective,
    sgd: &mut Sgd,
    device: &Device,
) -> Result<(usize, usize)> {
    let (_, config) = checkpoint::read_config(dir)?;
    if &config.model != model.config() {
        return Err(Error::InvalidInput(format!(
            "checkpoint '{}' has a different model configuration than this run",
            dir.display()
        )));
    }
    if config.head != objective.config() {
        return Err(Error::InvalidInput(format!(
            "checkpoint '{}' was trained with head {:?}, this run uses {:?}",
            dir.display(),
            config.head,
            objective.config()
        )));
    }
    model.params().load(&dir.join("model.safetensors"))?;
    objective.params().load(&dir.join("head.safetensors"))?;
    let path = dir.join("optimizer.safetensors");
    let state = candle_core::safetensors::load(&path, device)
        .map_err(|e| Error::InvalidInput(format!("cannot read '{}': {e}", path.display())))?;
    sgd.load_state(&state, &path.display().to_string())?;
    Ok((config.epoch, config.step))
}

fn write_json(file: &mut File, path: &Path, value: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| Error::InvalidInput(e.to_string()))?;
    writeln!(file, "{line}").map_err(|e| Error::io(path, e))
}

fn progress_bar(enabled: bool, len: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
    bar
}
