//! The trained backbone through the exporter: tract against `MobileFaceNet::forward`, and
//! checkpoints that do not match their recorded architecture.
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::checkpoint::{load_checkpoint, network_from_model};
use super::network_to_onnx;
use super::tests::{normalisation, random_images};
use crate::model::{MobileFaceNet, ModelConfig};
use crate::onnx::Embedder;
use crate::train::checkpoint::{CheckpointConfig, HeadConfig, InputSpec, LossKind, FORMAT};

/// A tiny backbone with random BN statistics and PReLU slopes (so folding matters).
fn trained_looking(seed: u64) -> MobileFaceNet {
    let model = MobileFaceNet::new(&ModelConfig::tiny(), seed, &Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, tensor) in model.params().tensors() {
        let n = tensor.elem_count();
        let values: Vec<f32> = if name.ends_with("running_var") {
            (0..n).map(|_| rng.random_range(0.5..2.0)).collect()
        } else if name.ends_with("running_mean") || name.ends_with("bn.bias") {
            (0..n).map(|_| rng.random_range(-0.3..0.3)).collect()
        } else if name.ends_with("bn.weight") {
            (0..n).map(|_| rng.random_range(0.5..1.5)).collect()
        } else if name.ends_with("prelu.weight") {
            (0..n).map(|_| rng.random_range(0.05..0.4)).collect()
        } else {
            continue;
        };
        let value = Tensor::from_vec(values, tensor.dims(), &Device::Cpu).unwrap();
        model.params().var(&name).unwrap().set(&value).unwrap();
    }
    model
}

fn config_for(model: ModelConfig) -> CheckpointConfig {
    CheckpointConfig {
        format: FORMAT.into(),
        version: 1,
        parameter_count: model.parameter_count(),
        multiply_adds: model.multiply_adds(),
        model,
        input: InputSpec::default(),
        head: HeadConfig {
            loss: LossKind::AmSoftmax,
            scale: 30.0,
            margin: 0.35,
            classes: 10,
        },
        epoch: 1,
        step: 1,
        seed: 0,
    }
}

#[test]
fn tract_matches_the_candle_backbone() {
    let model = trained_looking(3);
    let network = network_from_model(&model).unwrap();
    let onnx = network_to_onnx(&network, &normalisation(), None).unwrap();
    let embedder = Embedder::from_model(&onnx, Path::new("tiny.onnx"), 3).unwrap();
    let images = random_images(4, 3, 32);
    let tract = embedder.embed(&images).unwrap();
    let input = Tensor::from_slice(&images, (3, 3, 32, 32), &Device::Cpu).unwrap();
    let candle: Vec<f32> = model
        .forward(&input, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let diff = tract
        .iter()
        .zip(&candle)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "tract vs MobileFaceNet::forward: {diff}");
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_looking(1);
    model
        .params()
        .save(&dir.path().join("model.safetensors"))
        .unwrap();
    // The weights are the tiny layout; the config claims the default one.
    let json = serde_json::to_string(&config_for(ModelConfig::default())).unwrap();
    std::fs::write(dir.path().join("config.json"), json).unwrap();
    let error = load_checkpoint(dir.path()).expect_err("mismatched checkpoint accepted");
    let text = error.to_string();
    assert!(text.contains("model.safetensors"), "{text}");

    // The matching config loads.
    let json = serde_json::to_string(&config_for(ModelConfig::tiny())).unwrap();
    std::fs::write(dir.path().join("config.json"), json).unwrap();
    let (network, _, _) = load_checkpoint(dir.path()).unwrap();
    assert_eq!(network.embedding_dim, ModelConfig::tiny().embedding_dim);
}
