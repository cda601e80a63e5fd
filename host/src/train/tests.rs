//! Training tests on generated identities: one step, convergence, resume, NaN guard.
use std::cell::Cell;

use candle_core::{Device, Tensor, D};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::checkpoint::{self, HeadConfig, LossKind};
use super::head::ClassifierHead;
use super::schedule::{Decay, Schedule};
use super::synthetic::SyntheticIdentities;
use super::trainer::{train, Objective, TrainOptions};
use super::Sgd;
use crate::model::testing::max_diff;
use crate::model::{MobileFaceNet, ModelConfig, ParamStore};
use crate::{Error, Result};

/// The shipped head, optionally poisoned to return NaN after `poison_after` calls.
struct TestHead {
    head: ClassifierHead,
    poison_after: Option<usize>,
    calls: Cell<usize>,
}

impl TestHead {
    fn new(classes: usize, dim: usize, seed: u64) -> Self {
        let config = HeadConfig {
            loss: LossKind::AmSoftmax,
            scale: 16.0,
            margin: 0.2,
            classes,
        };
        let head = ClassifierHead::new(config, dim, seed, &Device::Cpu).unwrap();
        Self {
            head,
            poison_after: None,
            calls: Cell::new(0),
        }
    }

    /// Nearest class weight by cosine for each row of `embeddings`.
    fn identify(&self, embeddings: &Tensor) -> Vec<u32> {
        let weight = self.head.weight();
        let normalise = |t: &Tensor| {
            t.broadcast_div(&t.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap())
                .unwrap()
        };
        let cos = normalise(embeddings)
            .matmul(&normalise(weight).t().unwrap())
            .unwrap();
        cos.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap()
    }
}

impl Objective for TestHead {
    fn loss(&self, embeddings: &Tensor, labels: &Tensor, margin: f32) -> Result<(Tensor, usize)> {
        let (mut loss, correct) = self.head.loss(embeddings, labels, margin)?;
        self.calls.set(self.calls.get() + 1);
        if self.poison_after.is_some_and(|n| self.calls.get() > n) {
            loss = (loss * f64::NAN)?;
        }
        Ok((loss, correct))
    }

    fn params(&self) -> &ParamStore {
        self.head.params()
    }

    fn config(&self) -> HeadConfig {
        self.head.config()
    }
}

fn data(identities: usize, samples: usize, seed: u64) -> SyntheticIdentities {
    SyntheticIdentities {
        identities,
        samples_per_identity: samples,
        size: 32,
        batch_size: 32,
        seed,
    }
}

fn options(
    out: &std::path::Path,
    epochs: usize,
    steps_per_epoch: usize,
    resume: bool,
) -> TrainOptions {
    TrainOptions {
        schedule: Schedule {
            base_lr: 0.1,
            warmup_epochs: 0.5,
            decay: Decay::Cosine,
            steps_per_epoch,
            epochs,
            margin: 0.2,
            margin_warmup_epochs: 1.0,
        },
        momentum: 0.9,
        weight_decay: 5e-4,
        seed: 7,
        out_dir: out.to_path_buf(),
        resume,
        progress: false,
    }
}

#[test]
fn one_step_lowers_the_loss_on_a_fixed_batch() {
    let model = MobileFaceNet::new(&ModelConfig::tiny(), 1, &Device::Cpu).unwrap();
    let head = TestHead::new(8, 32, 2);
    let source = data(8, 4, 3);
    let labels: Vec<u32> = (0..32).map(|i| i % 8).collect();
    let batch = source.batch(&labels, &mut StdRng::seed_from_u64(4));
    let images = Tensor::from_vec(batch.images, (32, 3, 32, 32), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(batch.labels, 32, &Device::Cpu).unwrap();
    let mut vars: Vec<_> = model
        .params()
        .trainable()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    vars.extend(
        head.params()
            .trainable()
            .map(|(n, v)| (format!("head.{n}"), v.clone())),
    );
    let mut sgd = Sgd::new(vars, 0.9, 0.0).unwrap();

    let loss = |margin| {
        head.loss(&model.forward(&images, true).unwrap(), &labels, margin)
            .unwrap()
            .0
    };
    let before = loss(0.2);
    sgd.step(&before.backward().unwrap(), 0.05).unwrap();
    let after = loss(0.2).to_scalar::<f32>().unwrap();
    let before = before.to_scalar::<f32>().unwrap();
    assert!(after < before, "loss went from {before} to {after}");
}

#[test]
fn tiny_model_learns_generated_identities() {
    let dir = tempfile::tempdir().unwrap();
    let model = MobileFaceNet::new(&ModelConfig::tiny(), 1, &Device::Cpu).unwrap();
    let head = TestHead::new(12, 32, 2);
    let mut source = data(12, 16, 3);
    let steps = super::BatchSource::batches_per_epoch(&source);
    let summaries = train(
        &model,
        &head,
        &mut source,
        &options(dir.path(), 6, steps, false),
    )
    .unwrap();
    assert_eq!(summaries.len(), 6);

    // Identification of fresh samples (eval-mode BN) by the nearest class weight.
    let labels: Vec<u32> = (0..240).map(|i| i % 12).collect();
    let batch = source.batch(&labels, &mut StdRng::seed_from_u64(99));
    let images = Tensor::from_vec(batch.images, (240, 3, 32, 32), &Device::Cpu).unwrap();
    let embeddings = model.forward(&images, false).unwrap();
    let predicted = head.identify(&embeddings);
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count();
    let accuracy = correct as f64 / labels.len() as f64;
    assert!(accuracy >= 0.95, "identification accuracy {accuracy}");
    assert!(dir.path().join("loss.png").exists() && dir.path().join("accuracy.png").exists());
}

#[test]
fn resumed_run_continues_from_the_saved_step() {
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = |dir: &std::path::Path, epochs, resume| {
        let model = MobileFaceNet::new(&ModelConfig::tiny(), 1, &Device::Cpu).unwrap();
        let head = TestHead::new(4, 32, 2);
        let mut source = data(4, 16, 3);
        train(&model, &head, &mut source, &options(dir, epochs, 2, resume)).unwrap();
        model
    };
    let reference = run(straight.path(), 2, false);
    run(split.path(), 1, false);
    let resumed = run(split.path(), 2, true);

    let (_, config) = checkpoint::read_config(&checkpoint::epoch_dir(split.path(), 2)).unwrap();
    assert_eq!((config.epoch, config.step), (2, 4));
    for (name, tensor) in reference.params().tensors() {
        let other = &resumed.params().tensors()[&name];
        let diff = max_diff(&tensor, other);
        assert!(diff < 1e-4, "{name} differs by {diff}");
    }
    let lines = std::fs::read_to_string(split.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.contains("\"kind\":\"step\""))
            .count(),
        4
    );
}

#[test]
fn nan_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = MobileFaceNet::new(&ModelConfig::tiny(), 1, &Device::Cpu).unwrap();
    let mut head = TestHead::new(4, 32, 2);
    head.poison_after = Some(3);
    let mut source = data(4, 16, 3);
    let error = train(
        &model,
        &head,
        &mut source,
        &options(dir.path(), 3, 2, false),
    )
    .unwrap_err();
    let Error::NonFiniteLoss {
        epoch,
        step,
        last_checkpoint,
        ..
    } = &error
    else {
        panic!("unexpected error {error}")
    };
    assert_eq!((*epoch, *step), (1, 3));
    let good = checkpoint::epoch_dir(dir.path(), 1);
    assert_eq!(last_checkpoint.as_deref(), Some(good.as_path()));
    assert!(error.to_string().contains("epoch-0001"));
    checkpoint::load_model(&good, &Device::Cpu).unwrap();
    assert!(!checkpoint::epoch_dir(dir.path(), 2).exists());
}
