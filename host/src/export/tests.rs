//! Export checks: BN folding, tract against candle, metadata, bad input.
use std::path::Path;

use candle_core::{Device, Tensor};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::onnx::{Embedder, ModelMeta, Quantization, Thresholds};
use crate::Error;

/// A small network on 32x32 inputs: fast enough to export and run in every test.
pub(crate) fn tiny() -> Network {
    random_network(7, 32, 8, 3, 16)
}

pub(crate) fn normalisation() -> Normalisation {
    Normalisation {
        mean: [0.5; 3],
        std: [0.5; 3],
    }
}

pub(crate) fn random_images(seed: u64, count: usize, size: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count * 3 * size * size)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn candle(network: &Network, images: &[f32]) -> Vec<f32> {
    let count = images.len() / (3 * network.input_size * network.input_size);
    let shape = (count, 3, network.input_size, network.input_size);
    let input = Tensor::from_slice(images, shape, &Device::Cpu).unwrap();
    network
        .forward_candle(&input)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn folding_batch_norm_keeps_the_outputs() {
    let network = tiny();
    let folded = network.fold_batch_norm().unwrap();
    let images = random_images(1, 3, 32);
    let diff = max_abs_diff(&candle(&network, &images), &candle(&folded, &images));
    assert!(diff < 1e-4, "folded differs by {diff}");
    let count = |n: &Network| format!("{:?}", n.layers).matches("BatchNorm").count();
    assert!(count(&network) > 0);
    assert_eq!(count(&folded), 0);
}

#[test]
fn tract_matches_candle_on_a_random_network() {
    let network = tiny();
    let model = network_to_onnx(&network, &normalisation(), None).unwrap();
    let embedder = Embedder::from_model(&model, Path::new("tiny.onnx"), 2).unwrap();
    // 5 images: two full batches and a padded one.
    let images = random_images(2, 5, 32);
    let tract = embedder.embed(&images).unwrap();
    let reference = candle(&network, &images);
    let diff = max_abs_diff(&tract, &reference);
    assert!(diff < 1e-4, "tract differs from candle by {diff}");
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.1,
        "outputs too small to make the comparison meaningful: {scale}"
    );
}

#[test]
fn metadata_round_trips_and_the_id_follows_the_weights() {
    let network = tiny();
    let thresholds = Thresholds {
        far_1e2: 0.31,
        far_1e3: 0.42,
        far_1e4: 0.5,
        source: "lfw pairsDevTest.txt (1000 pairs)".into(),
    };
    let model = network_to_onnx(&network, &normalisation(), Some(thresholds.clone())).unwrap();
    let bytes = model.encode_to_vec();
    let decoded = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    assert!(decoded.opset_import.iter().all(|o| o.version >= 13));
    let meta = ModelMeta::from_model(&decoded, Path::new("m.onnx")).unwrap();
    assert_eq!(meta.input_height, 32);
    assert_eq!(meta.embedding_dim, 16);
    assert_eq!(meta.quantization, Quantization::F32);
    assert_eq!(meta.thresholds, Some(thresholds));
    assert_eq!(meta.mean, [0.5; 3]);
    let props: Vec<&str> = decoded
        .metadata_props
        .iter()
        .map(|p| p.key.as_str())
        .collect();
    assert!(props.contains(&facelock_shared::model_meta::MODEL_ID));

    // Same weights, same id; one weight changed, another id.
    let again = network_to_onnx(&network, &normalisation(), None).unwrap();
    assert_eq!(
        ModelMeta::from_model(&again, Path::new("m"))
            .unwrap()
            .model_id,
        meta.model_id
    );
    let mut changed = network.clone();
    if let Layer::Conv(conv) = &mut changed.layers[0] {
        conv.weight[0] += 0.01;
    }
    let other = network_to_onnx(&changed, &normalisation(), None).unwrap();
    assert_ne!(
        ModelMeta::from_model(&other, Path::new("m"))
            .unwrap()
            .model_id,
        meta.model_id
    );
}

#[test]
fn an_onnx_file_without_facelock_metadata_is_rejected() {
    let mut model = network_to_onnx(&tiny(), &normalisation(), None).unwrap();
    model.metadata_props.clear();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.onnx");
    crate::onnx::write_model(&model, &path).unwrap();
    let error = Embedder::load(&path, 1)
        .err()
        .expect("foreign model accepted");
    let text = error.to_string();
    assert!(matches!(error, Error::Onnx { .. }), "{text}");
    assert!(
        text.contains("foreign.onnx") && text.contains("not a facelock model"),
        "{text}"
    );

    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff\xff not protobuf").unwrap();
    let text = Embedder::load(&garbage, 1)
        .err()
        .expect("garbage accepted")
        .to_string();
    assert!(text.contains("garbage.onnx"), "{text}");
}

#[test]
fn a_batch_norm_without_a_layer_before_it_is_refused() {
    let mut network = tiny();
    let bn = network.layers[1].clone();
    network.layers.insert(0, bn);
    let error = network.fold_batch_norm().expect_err("stray BN accepted");
    assert!(matches!(error, Error::Unsupported(_)), "{error}");
}

#[test]
fn thresholds_are_read_from_an_eval_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let report = serde_json::json!({
        "pairs": 1000, "genuine_pairs": 500, "impostor_pairs": 500,
        "pairs_file": "lfw pairsDevTest.txt",
        "tar_at_far": [
            {"far": 0.1, "tar": 0.9, "threshold": 0.2, "achieved_far": 0.1, "impostor_pairs": 500, "measurable": true},
            {"far": 0.01, "tar": 0.8, "threshold": 0.35, "achieved_far": 0.01, "impostor_pairs": 500, "measurable": true},
            {"far": 0.001, "tar": 0.6, "threshold": 0.45, "achieved_far": 0.0, "impostor_pairs": 500, "measurable": false},
            {"far": 0.0001, "tar": 0.6, "threshold": 0.45, "achieved_far": 0.0, "impostor_pairs": 500, "measurable": false}
        ]
    });
    std::fs::write(&path, report.to_string()).unwrap();
    let t = thresholds_from_report(&path).unwrap();
    assert_eq!((t.far_1e2, t.far_1e3, t.far_1e4), (0.35, 0.45, 0.45));
    assert!(
        t.source.starts_with("lfw pairsDevTest.txt (1000 pairs"),
        "{}",
        t.source
    );
    assert!(t.source.contains("not measurable"), "{}", t.source);

    std::fs::write(&path, "{\"pairs\": 3}").unwrap();
    let error = thresholds_from_report(&path).expect_err("report without thresholds accepted");
    assert!(error.to_string().contains("tar_at_far"), "{error}");
}

#[test]
fn embed_all_normalises_and_matches_embed() {
    let model = network_to_onnx(&tiny(), &normalisation(), None).unwrap();
    let embedder = Embedder::from_model(&model, Path::new("tiny.onnx"), 2).unwrap();
    let images = random_images(9, 3, 32);
    let per = embedder.image_len();
    let all = embedder
        .embed_all(3, false, |i| Ok(images[i * per..(i + 1) * per].to_vec()))
        .unwrap();
    let raw = embedder.embed(&images).unwrap();
    for (a, b) in all.chunks(16).zip(raw.chunks(16)) {
        let norm = b.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((a.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(a.iter().zip(b).all(|(x, y)| (x - y / norm).abs() < 1e-5));
    }
    let flipped = embedder
        .embed_all(3, true, |i| Ok(images[i * per..(i + 1) * per].to_vec()))
        .unwrap();
    assert_ne!(flipped, all);
}
