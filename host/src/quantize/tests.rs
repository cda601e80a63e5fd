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
    // Every conv except the kept-float ones must run on integers.
    let float: Vec<_> = ops
        .iter()
        .filter(|(node, _, integer)| !integer && !node.starts_with("embedding"))
        .collect();
    assert!(
        float.is_empty(),
        "float conv kernels in the int8 model: {float:?}"
    );
    // stem, stem_dw, 3 × (expand, depthwise, project), final_conv, gdc.
    assert_eq!(ops.iter().filter(|op| op.2).count(), 13, "{ops:?}");
    // The kept-float linear layer really is float.
    assert!(ops
        .iter()
        .any(|(node, _, integer)| node.starts_with("embedding") && !integer));

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

#[test]
#[ignore = "scratch timing"]
fn scratch_timing() {
    let network = crate::export::random_network(1, 112, 48, 10, 128);
    let model = network_to_onnx(&network, &normalisation(), None).unwrap();
    crate::onnx::write_model(&model, Path::new("/tmp/scratch-f32.onnx")).unwrap();
    let images = random_images(3, 16, 112);
    for keep in [vec!["depthwise".to_string(), "first".into(), "last".into()]] {
        let options = QuantizeOptions {
            method: Method::Percentile,
            keep_float: keep,
        };
        let q = quantize_model(&model, Path::new("f"), &images, &options, None).unwrap();
        crate::onnx::write_model(&q, Path::new("/tmp/scratch-int8.onnx")).unwrap();
    }
    for path in ["/tmp/scratch-f32.onnx", "/tmp/scratch-int8.onnx"] {
        let e = Embedder::load(Path::new(path), 1).unwrap();
        let img = &images[..e.image_len()];
        for _ in 0..3 {
            e.embed(img).unwrap();
        }
        let mut t = vec![];
        for _ in 0..20 {
            let s = std::time::Instant::now();
            e.embed(img).unwrap();
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        eprintln!("{path}: {:.2} ms", t[10]);
        let mut by_op: std::collections::BTreeMap<String, usize> = Default::default();
        for s in op_summary(e.plan()) {
            *by_op.entry(s.op).or_default() += 1;
        }
        eprintln!("{by_op:?}");
    }
}

#[test]
#[ignore = "scratch profile"]
fn scratch_profile() {
    use tract_onnx::prelude::*;
    let e = Embedder::load(Path::new(&std::env::var("SCRATCH_MODEL").unwrap()), 1).unwrap();
    let images = random_images(3, 1, e.meta().input_height);
    let mut times: std::collections::BTreeMap<String, f64> = Default::default();
    for _ in 0..10 {
        let mut state = e.plan().spawn().unwrap();
        let input = Tensor::from_shape(
            &[1, 3, e.meta().input_height, e.meta().input_width],
            &images,
        )
        .unwrap();
        state
            .run_plan_with_eval(tvec!(input.into_tvalue()), |ctx, st, node, inputs| {
                let s = std::time::Instant::now();
                let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
                *times.entry(node.op().name().to_string()).or_default() +=
                    s.elapsed().as_secs_f64() * 100.0;
                r
            })
            .unwrap();
    }
    let mut v: Vec<_> = times.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!("{v:?}");
}
