//! Activation ranges for static quantization: runs the f32 model in tract with every tensor
//! to be quantized exposed as an extra output, over calibration images.
use std::collections::HashMap;
use std::path::Path;

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use super::qdq::Range;
use crate::onnx::runner::plan;
use crate::onnx::ModelMeta;
use crate::{Error, Result};

/// How a tensor's range is taken from the values seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Smallest and largest value over all images.
    Minmax,
    /// Per image, the 0.01 % and 99.99 % quantiles; averaged over images (clips outliers).
    Percentile,
}

/// Lower quantile used by [`Method::Percentile`].
pub const LOW_QUANTILE: f64 = 0.0001;
/// Upper quantile used by [`Method::Percentile`].
pub const HIGH_QUANTILE: f64 = 0.9999;

/// Ranges of `tensors` of `model` over `images` [count, 3, h, w] (normalised CHW).
pub fn calibrate(
    model: &ModelProto,
    path: &Path,
    tensors: &[String],
    images: &[f32],
    method: Method,
) -> Result<HashMap<String, Range>> {
    let meta = ModelMeta::from_model(model, path)?;
    let per_image = 3 * meta.input_height * meta.input_width;
    if images.is_empty() || !images.len().is_multiple_of(per_image) {
        return Err(Error::InvalidInput(format!(
            "calibration needs at least one {}x{} image, got {} floats",
            meta.input_height,
            meta.input_width,
            images.len()
        )));
    }
    let shape = [1, 3, meta.input_height, meta.input_width];
    let plan = plan(model, path, shape, tensors)?;
    let tract_err = |e: TractError| Error::Onnx {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };

    let count = images.len() / per_image;
    let mut sums = vec![(0f64, 0f64); tensors.len()];
    let mut extremes = vec![(f32::INFINITY, f32::NEG_INFINITY); tensors.len()];
    let progress = crate::progress::bar(count as u64, "calibrating");
    for image in images.chunks(per_image) {
        let input = Tensor::from_shape(&shape, image).map_err(tract_err)?;
        let outputs = plan.run(tvec!(input.into_tvalue())).map_err(tract_err)?;
        // outputs[0] is the embedding; the calibrated tensors follow in order.
        for (t, output) in outputs.iter().skip(1).enumerate() {
            let view = output.to_plain_array_view::<f32>().map_err(tract_err)?;
            let mut values: Vec<f32> = view.iter().copied().collect();
            let (lo, hi) = values
                .iter()
                .fold(extremes[t], |(a, b), &v| (a.min(v), b.max(v)));
            extremes[t] = (lo, hi);
            if method == Method::Percentile {
                let (lo, hi) = quantiles(&mut values);
                sums[t].0 += lo as f64;
                sums[t].1 += hi as f64;
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();

    let ranges = tensors
        .iter()
        .enumerate()
        .map(|(t, name)| {
            let range = match method {
                Method::Minmax => Range {
                    min: extremes[t].0,
                    max: extremes[t].1,
                },
                Method::Percentile => Range {
                    min: (sums[t].0 / count as f64) as f32,
                    max: (sums[t].1 / count as f64) as f32,
                },
            };
            tracing::debug!("range of '{name}': [{}, {}]", range.min, range.max);
            (name.clone(), range)
        })
        .collect();
    Ok(ranges)
}

/// The [`LOW_QUANTILE`] and [`HIGH_QUANTILE`] values of `values` (reordered in place).
fn quantiles(values: &mut [f32]) -> (f32, f32) {
    let last = values.len() - 1;
    let index = |q: f64| ((q * last as f64).round() as usize).min(last);
    let (lo, hi) = (index(LOW_QUANTILE), index(HIGH_QUANTILE));
    let low = *values.select_nth_unstable_by(lo, f32::total_cmp).1;
    let high = *values.select_nth_unstable_by(hi, f32::total_cmp).1;
    (low, high)
}
