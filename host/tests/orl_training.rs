//! Short training on 30 ORL identities, verification on the 10 held-out ones (needs the data).
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use facelock_host::data::{AlignConfig, BatchLoader, Dataset, LoaderConfig, Pair};
use facelock_host::eval::pair_scores::{score_pairs, PairImages};
use facelock_host::eval::{ScoredPairs, VerificationReport};
use facelock_host::model::{MobileFaceNet, ModelConfig, StageSpec};
use facelock_host::train::head::ClassifierHead;
use facelock_host::train::{train, Decay, HeadConfig, LossKind, Schedule, TrainOptions};

/// ORL faces fill the 92x112 frame: the fallback crop takes the whole shorter side.
fn align() -> AlignConfig {
    AlignConfig {
        crop_fraction: 1.0,
        ..AlignConfig::default()
    }
}

/// A small 112x112 network (three stride-2 stages) that trains in seconds per epoch.
fn small_model() -> ModelConfig {
    let stage = |expansion, channels, stride| StageSpec {
        expansion,
        channels,
        repeats: 1,
        stride,
    };
    ModelConfig {
        input_size: 112,
        input_channels: 3,
        width: 1.0,
        stem_channels: 16,
        stages: vec![stage(2, 24, 2), stage(2, 32, 2), stage(2, 48, 2)],
        head_channels: 96,
        embedding_dim: 64,
    }
}

/// Balanced pairs of the held-out identities: every same-person pair (10 · 45) and as many
/// different-person pairs, spread evenly; folds by index.
fn held_out_pairs() -> Vec<Pair> {
    let image = |person: usize, k: usize| PathBuf::from(format!("s{person}/{k}.pgm"));
    let mut same = Vec::new();
    let mut different = Vec::new();
    for p in 31..=40 {
        for i in 1..=10 {
            for j in i + 1..=10 {
                same.push((image(p, i), image(p, j)));
            }
            for q in p + 1..=40 {
                for j in 1..=10 {
                    different.push((image(p, i), image(q, j)));
                }
            }
        }
    }
    let step = different.len() / same.len();
    let different: Vec<_> = different
        .into_iter()
        .step_by(step)
        .take(same.len())
        .collect();
    let mut pairs = Vec::new();
    for (k, ((a, b), (c, d))) in same.into_iter().zip(different).enumerate() {
        pairs.push(Pair {
            fold: k % 10,
            same: true,
            a,
            b,
        });
        pairs.push(Pair {
            fold: k % 10,
            same: false,
            a: c,
            b: d,
        });
    }
    pairs
}

fn verification(model: &MobileFaceNet, root: &std::path::Path) -> VerificationReport {
    let pairs = held_out_pairs();
    let images = PairImages {
        root,
        landmarks: None,
        align: align(),
        flip: false,
        batch: 50,
        progress: false,
    };
    let scores = score_pairs(model, &pairs, &images).unwrap();
    let same: Vec<bool> = pairs.iter().map(|p| p.same).collect();
    let folds: Vec<usize> = pairs.iter().map(|p| p.fold).collect();
    VerificationReport::compute(
        &ScoredPairs {
            scores: &scores,
            same: &same,
        },
        Some(&folds),
    )
    .unwrap()
}

/// Measured here (2 shared cores, dev profile): 8 epochs in 82 s, train accuracy 99.7 %,
/// held-out 10-fold verification accuracy 84.4 % (70.7 % before training), AUC 0.915.
/// The assertion leaves some room below that.
#[test]
#[ignore = "needs FACELOCK_DATA"]
fn short_orl_training_verifies_held_out_identities() {
    let data = PathBuf::from(std::env::var("FACELOCK_DATA").expect("FACELOCK_DATA"));
    let root = data.join("orl");
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("train-identities.txt");
    let names: Vec<String> = (1..=30).map(|i| format!("s{i}")).collect();
    std::fs::write(&list, names.join("\n")).unwrap();
    let dataset = Dataset::from_folder(&root, Some(&list), 1).unwrap();
    assert_eq!((dataset.identities.len(), dataset.samples.len()), (30, 300));

    let config = LoaderConfig {
        batch_size: 30,
        seed: 3,
        align: align(),
        ..LoaderConfig::default()
    };
    let mut loader = BatchLoader::new(dataset, None, config).unwrap();
    let model = MobileFaceNet::new(&small_model(), 3, &Device::Cpu).unwrap();
    let untrained = verification(&model, &root);
    let head_config = HeadConfig {
        loss: LossKind::AmSoftmax,
        scale: 30.0,
        margin: 0.35,
        classes: 30,
    };
    let head = ClassifierHead::new(head_config, 64, 3, &Device::Cpu).unwrap();
    let epochs = 8;
    let options = TrainOptions {
        schedule: Schedule {
            base_lr: 0.1,
            warmup_epochs: 1.0,
            decay: Decay::Cosine,
            steps_per_epoch: loader.batches_per_epoch(),
            epochs,
            margin: 0.35,
            margin_warmup_epochs: 3.0,
        },
        momentum: 0.9,
        weight_decay: 5e-4,
        seed: 3,
        out_dir: dir.path().join("run"),
        resume: false,
        progress: false,
    };
    let started = Instant::now();
    let summaries = train(&model, &head, &mut loader, &options).unwrap();
    let trained = verification(&model, &root);
    let k_fold = |r: &VerificationReport| r.k_fold.as_ref().unwrap().mean;
    eprintln!(
        "ORL: {epochs} epochs in {:.0} s, train accuracy {:.1}%, held-out 10-fold accuracy {:.1}% \
         (untrained {:.1}%), AUC {:.3}",
        started.elapsed().as_secs_f64(),
        100.0 * summaries.last().unwrap().accuracy,
        100.0 * k_fold(&trained),
        100.0 * k_fold(&untrained),
        trained.auc
    );
    assert!(
        k_fold(&trained) >= 0.78,
        "held-out accuracy {}",
        k_fold(&trained)
    );
    assert!(k_fold(&trained) > k_fold(&untrained) + 0.05);
}
