//! Quantization checks: integer kernels in tract, closeness to f32, options, bad input.
use std::path::Path;

use super::*;
use crate::export::network_to_onnx;
use crate::export::tests::{normalisation, random_images, tiny};
use crate::onnx::runner::op_summary;
use crate::onnx::{Embedder, ModelMeta};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn quantized(keep_float: &[&str], method: Method) -> tract_onnx::pb::ModelProto {
    let model = network_to_onnx(&tiny(), &normalisation(), None).unwrap();
    let options = QuantizeOptions {
        method,
        keep_float: keep_float.iter().map(|s| s.to_string()).collect(),
    };
    let images = random_images(10, 16, 32);
    quantize_model(&model, Path::new("tiny.onnx"), &images, &options, None).unwrap()
}

/// Matrix products of the optimised plan: (node, micro-kernel description, integer?).
/// Integer means i32 output computed by an i32-accumulating kernel.
fn matmul_ops(model: &tract_onnx::pb::ModelProto) -> Vec<(String, String, bool)> {
    let embedder = Embedder::from_model(model, Path::new("q.onnx"), 1).unwrap();
    op_summary(embedder.plan())
        .into_iter()
        .filter(|op| op.op == "OptMatMul")
        .map(|op| {
            let kernel = op
                .info
                .iter()
                .find(|l| l.starts_with("Mult:"))
                .cloned()
                .unwrap_or_default();
            let integer = op.output == "I32" && kernel.contains("_i32_");
            (op.node, kernel, integer)
        })
        .collect()
}

#[test]
fn tract_runs_the_quantized_convolutions_on_integer_kernels() {
    let model = quantized(&["last"], Method::Minmax);
    let ops = matmul_ops(&model);
    // The int8 file names its tensors tersely (see `onnx::compact`), so the layers are told
    // apart by kind: all 13 convs (stem, stem_dw, 3 × (expand, depthwise, project),
    // final_conv, gdc) on integer kernels, and one float product, the kept-float linear layer
    // (16 outputs from 32 inputs).
    let float: Vec<_> = ops.iter().filter(|op| !op.2).collect();
    assert_eq!(ops.iter().filter(|op| op.2).count(), 13, "{ops:?}");
    assert_eq!(float.len(), 1, "float kernels in the int8 model: {float:?}");
    assert!(float[0].1.contains("m:16 k:32"), "{float:?}");

    // The f32 model, as a control, has no integer kernels.
    let f32_model = network_to_onnx(&tiny(), &normalisation(), None).unwrap();
    assert!(matmul_ops(&f32_model).iter().all(|op| !op.2));
}

#[test]
fn int8_embeddings_stay_close_to_f32() {
    let f32_model = network_to_onnx(&tiny(), &normalisation(), None).unwrap();
    let reference = Embedder::from_model(&f32_model, Path::new("f32.onnx"), 4).unwrap();
    let images = random_images(11, 8, 32);
    let expected = reference.embed(&images).unwrap();
    for method in [Method::Minmax, Method::Percentile] {
        let int8 = Embedder::from_model(&quantized(&["first", "last"], method), Path::new("q"), 4)
            .unwrap();
        let got = int8.embed(&images).unwrap();
        for (a, b) in got.chunks(16).zip(expected.chunks(16)) {
            let c = cosine(a, b);
            assert!(c > 0.97, "{method:?}: cosine {c}");
        }
    }
}

#[test]
fn the_int8_model_has_its_own_metadata_and_smaller_weights() {
    let f32_model = network_to_onnx(&tiny(), &normalisation(), None).unwrap();
    let model = quantized(&[], Method::Percentile);
    let meta = ModelMeta::from_model(&model, Path::new("q")).unwrap();
    let before = ModelMeta::from_model(&f32_model, Path::new("f")).unwrap();
    assert_eq!(meta.quantization, crate::onnx::Quantization::Int8Qdq);
    assert_ne!(meta.model_id, before.model_id);
    let weights = |m: &tract_onnx::pb::ModelProto| -> usize {
        m.graph
            .iter()
            .flat_map(|g| &g.initializer)
            .map(|t| t.raw_data.len())
            .sum()
    };
    assert!(
        weights(&model) < weights(&f32_model) / 2,
        "{} vs {}",
        weights(&model),
        weights(&f32_model)
    );
}

/// Symmetric weights and int32 biases need no zero point (and biases no stored scale): their
/// DequantizeLinear nodes have two inputs and the file holds no zero-point tensors for them, yet
/// tract still lowers the convolutions to QLinearConv (it needs the zero points) and runs them.
#[test]
fn weights_and_biases_are_stored_without_zero_points() {
    let model = quantized(&[], Method::Minmax);
    let graph = model.graph.as_ref().unwrap();
    let constant: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut weights = 0;
    for n in graph
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
    {
        if constant.contains(n.input[0].as_str()) {
            weights += 1;
            assert_eq!(n.input.len(), 2, "{} has a zero-point input", n.name);
        } else {
            assert_eq!(
                n.input.len(),
                3,
                "activation {} lost its zero point",
                n.name
            );
        }
    }
    // tiny(): 13 convs + the linear layer, each with weights and a bias.
    assert_eq!(weights, 28);
    // Nor are bias scales stored: each is x_scale × w_scale, a Mul of two stored scales.
    let scale_products = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Mul" && n.input.iter().all(|i| constant.contains(i.as_str())))
        .count();
    assert_eq!(scale_products, 14);
    let integer = matmul_ops(&model).iter().filter(|op| op.2).count();
    assert_eq!(integer, 13);
}

#[test]
fn bad_quantization_requests_are_refused() {
    let model = network_to_onnx(&tiny(), &normalisation(), None).unwrap();
    let options = QuantizeOptions {
        method: Method::Minmax,
        keep_float: vec!["nonexistent".into()],
    };
    let images = random_images(1, 2, 32);
    let error = quantize_model(&model, Path::new("m"), &images, &options, None).unwrap_err();
    assert!(error.to_string().contains("nonexistent"), "{error}");

    let options = QuantizeOptions {
        method: Method::Minmax,
        keep_float: vec![],
    };
    let error = quantize_model(&model, Path::new("m"), &[], &options, None).unwrap_err();
    assert!(error.to_string().contains("calibration"), "{error}");

    let twice = quantized(&[], Method::Minmax);
    let error = quantize_model(&twice, Path::new("q"), &images, &options, None).unwrap_err();
    assert!(error.to_string().contains("already quantized"), "{error}");
}

fn meta_112() -> ModelMeta {
    let network = crate::export::random_network(3, 112, 8, 2, 16);
    let model = network_to_onnx(&network, &normalisation(), None).unwrap();
    ModelMeta::from_model(&model, Path::new("m")).unwrap()
}

#[test]
fn unreadable_calibration_images_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("A")).unwrap();
    std::fs::write(dir.path().join("A/broken.jpg"), b"not a jpeg at all").unwrap();
    let tsv = dir.path().join("landmarks.tsv");
    let points = "38.3\t51.7\t73.5\t51.5\t56.0\t71.7\t41.5\t92.4\t70.7\t92.2";
    std::fs::write(&tsv, format!("A/broken.jpg\t{points}\n")).unwrap();
    let error = images::calibration_images(dir.path(), &tsv, 1, &meta_112()).unwrap_err();
    assert!(error.to_string().contains("broken.jpg"), "{error}");

    let missing =
        images::calibration_images(dir.path(), &dir.path().join("none.tsv"), 1, &meta_112());
    assert!(missing.unwrap_err().to_string().contains("none.tsv"));
}

#[test]
#[ignore = "needs FACELOCK_DATA"]
fn tract_matches_candle_and_int8_stays_close_on_aligned_lfw_faces() {
    let data = std::path::PathBuf::from(std::env::var("FACELOCK_DATA").expect("FACELOCK_DATA"));
    let network = crate::export::random_network(5, 112, 16, 3, 32);
    let model = network_to_onnx(&network, &normalisation(), None).unwrap();
    let meta = ModelMeta::from_model(&model, Path::new("m")).unwrap();
    let faces = images::calibration_images(
        &data.join("lfw"),
        &data.join("lfw-landmarks.tsv"),
        24,
        &meta,
    )
    .unwrap();

    // f32: tract against candle on 8 real aligned faces.
    let embedder = Embedder::from_model(&model, Path::new("f32.onnx"), 8).unwrap();
    let probe = &faces[..8 * embedder.image_len()];
    let tract = embedder.embed(probe).unwrap();
    let input = candle_core::Tensor::from_slice(probe, (8, 3, 112, 112), &candle_core::Device::Cpu)
        .unwrap();
    let candle: Vec<f32> = network
        .forward_candle(&input)
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
    assert!(diff < 1e-4, "tract vs candle on real faces: {diff}");

    // int8 calibrated on the other 16 faces.
    let options = QuantizeOptions {
        method: Method::Percentile,
        keep_float: vec!["first".into(), "last".into()],
    };
    let calibration = &faces[8 * embedder.image_len()..];
    let int8 = quantize_model(&model, Path::new("f32.onnx"), calibration, &options, None).unwrap();
    let got = Embedder::from_model(&int8, Path::new("int8.onnx"), 8)
        .unwrap()
        .embed(probe)
        .unwrap();
    for (a, b) in got.chunks(32).zip(tract.chunks(32)) {
        assert!(cosine(a, b) > 0.98, "int8 vs f32 cosine {}", cosine(a, b));
    }
}
