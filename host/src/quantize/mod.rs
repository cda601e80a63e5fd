//! Post-training static quantization of facelock ONNX models into QDQ int8.
pub mod calibrate;
pub mod images;
pub mod qdq;

use std::path::Path;

use tract_onnx::pb::ModelProto;

pub use calibrate::{calibrate, Method};
pub use qdq::Range;

use crate::onnx::meta::{self, ModelMeta, Quantization, Thresholds};
use crate::{Error, Result};

/// Options of [`quantize_model`].
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// How activation ranges are taken.
    pub method: Method,
    /// Conv/Gemm nodes left in float: `first`, `last`, or node names.
    pub keep_float: Vec<String>,
}

/// The QDQ int8 version of the f32 facelock `model` (read from `path`), calibrated on
/// `images` [count, 3, h, w] (normalised CHW). Its metadata says `int8-qdq`, its model id
/// hashes the new weights, and it carries `thresholds` (those of the int8 model; `None`
/// drops any, since f32 thresholds do not hold after quantization).
pub fn quantize_model(
    model: &ModelProto,
    path: &Path,
    images: &[f32],
    options: &QuantizeOptions,
    thresholds: Option<Thresholds>,
) -> Result<ModelProto> {
    let source = ModelMeta::from_model(model, path)?;
    if source.quantization != Quantization::F32 {
        return Err(Error::InvalidInput(format!(
            "'{}' is already quantized ({})",
            path.display(),
            source.quantization.as_str()
        )));
    }
    let keep = qdq::resolve_keep_float(model, &options.keep_float)?;
    let tensors = qdq::quantized_activations(model, &keep);
    tracing::info!(
        "calibrating {} activations on {} images ({:?})",
        tensors.len(),
        images.len() / (3 * source.input_height * source.input_width).max(1),
        options.method
    );
    let ranges = calibrate(model, path, &tensors, images, options.method)?;
    let mut quantized = qdq::to_qdq(model, &keep, &ranges)?;
    crate::onnx::compact::compact_names(&mut quantized);
    let weights = quantized
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .map(|t| t.raw_data.as_slice());
    let meta = ModelMeta {
        model_id: meta::model_id(weights),
        quantization: Quantization::Int8Qdq,
        producer: meta::producer(),
        thresholds,
        ..source
    };
    meta.write_into(&mut quantized);
    Ok(quantized)
}

#[cfg(test)]
mod tests;

/// Thresholds at FAR 1e-2/1e-3/1e-4 (accept when score > threshold) from pair scores:
/// with n impostor pairs sorted by descending score, the threshold for FAR f is the score of
/// impostor ⌊f·n⌋, so at most that many impostors are accepted. FARs below 1/n are not
/// measurable; they get the strictest threshold and the source says so.
pub fn thresholds_from_scores(scores: &images::PairScores, source: &str) -> Result<Thresholds> {
    let mut impostor: Vec<f64> = scores
        .scores
        .iter()
        .zip(&scores.same)
        .filter(|(_, same)| !**same)
        .map(|(s, _)| *s)
        .collect();
    if impostor.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{source}: no different-person pairs to set thresholds"
        )));
    }
    impostor.sort_by(|a, b| b.total_cmp(a));
    let n = impostor.len();
    let mut unmeasurable = Vec::new();
    let mut at = |far: f64| {
        let allowed = (far * n as f64).floor() as usize;
        if allowed == 0 {
            unmeasurable.push(format!("{far:e}"));
        }
        impostor[allowed.min(n - 1)]
    };
    let (far_1e2, far_1e3, far_1e4) = (at(1e-2), at(1e-3), at(1e-4));
    let mut text = format!("{source} ({} pairs", scores.scores.len());
    if !unmeasurable.is_empty() {
        text.push_str(&format!(
            "; FAR {} not measurable with {n} impostor pairs",
            unmeasurable.join(", ")
        ));
    }
    text.push(')');
    Ok(Thresholds {
        far_1e2,
        far_1e3,
        far_1e4,
        source: text,
    })
}
