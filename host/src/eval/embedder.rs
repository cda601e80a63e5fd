//! Batched embedding of images with a trained backbone, optionally with flip test-time
//! augmentation; outputs are L2-normalised.
use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::model::MobileFaceNet;
use crate::{Error, Result};

/// Mirrors CHW images left-right in place; `images` holds whole images of `size`x`size`.
pub fn flip_horizontal(images: &mut [f32], size: usize) {
    for row in images.chunks_mut(size) {
        row.reverse();
    }
}

/// Scales each row of `embeddings` [rows, dim] to unit length (zero rows stay zero).
pub fn l2_normalise(embeddings: &mut [f32], dim: usize) {
    for row in embeddings.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

/// Embeds `count` images; `load(i)` returns image `i` aligned and normalised, [3, size, size]
/// CHW. With `flip`, each embedding is the sum of the image's and its mirror's before
/// normalisation. Returns [count, dim] row-major, L2-normalised.
pub fn embed(
    model: &MobileFaceNet,
    count: usize,
    batch_size: usize,
    flip: bool,
    progress: bool,
    load: impl Fn(usize) -> Result<Vec<f32>> + Sync,
) -> Result<Vec<f32>> {
    let config = model.config();
    let (size, channels, dim) = (
        config.input_size,
        config.input_channels,
        config.embedding_dim,
    );
    let per_image = channels * size * size;
    let device = model.params().device().clone();
    let bar = if progress {
        ProgressBar::new(count as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("embedding [{bar:30}] {pos}/{len} eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut out = Vec::with_capacity(count * dim);
    for start in (0..count).step_by(batch_size.max(1)) {
        let indices: Vec<usize> = (start..(start + batch_size.max(1)).min(count)).collect();
        let images: Vec<Vec<f32>> = indices
            .par_iter()
            .map(|&i| load(i))
            .collect::<Result<_>>()?;
        let mut pixels = Vec::with_capacity(indices.len() * per_image);
        for (image, &index) in images.iter().zip(&indices) {
            if image.len() != per_image {
                return Err(Error::InvalidInput(format!(
                    "image {index} has {} values, the model takes {channels}x{size}x{size}",
                    image.len()
                )));
            }
            pixels.extend_from_slice(image);
        }
        let mut embeddings = forward(model, &pixels, indices.len(), &device)?;
        if flip {
            flip_horizontal(&mut pixels, size);
            let mirrored = forward(model, &pixels, indices.len(), &device)?;
            embeddings
                .iter_mut()
                .zip(mirrored)
                .for_each(|(a, b)| *a += b);
        }
        l2_normalise(&mut embeddings, dim);
        out.extend(embeddings);
        bar.inc(indices.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

fn forward(
    model: &MobileFaceNet,
    pixels: &[f32],
    count: usize,
    device: &candle_core::Device,
) -> Result<Vec<f32>> {
    let size = model.config().input_size;
    let channels = model.config().input_channels;
    let images = Tensor::from_slice(pixels, (count, channels, size, size), device)?;
    Ok(model
        .forward(&images, false)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Cosine similarity of rows `a` and `b` of L2-normalised `embeddings` [rows, dim].
pub fn cosine(embeddings: &[f32], dim: usize, a: usize, b: usize) -> f64 {
    let (x, y) = (&embeddings[a * dim..][..dim], &embeddings[b * dim..][..dim]);
    x.iter().zip(y).map(|(p, q)| (p * q) as f64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_mirrors_each_row() {
        let mut image: Vec<f32> = (0..8).map(|v| v as f32).collect();
        flip_horizontal(&mut image, 2);
        assert_eq!(image, [1.0, 0.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0]);
    }

    #[test]
    fn embeddings_are_unit_length_and_flip_invariant_for_symmetric_images() {
        let model = MobileFaceNet::new(
            &crate::model::ModelConfig::tiny(),
            3,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let symmetric = |_| -> Result<Vec<f32>> {
            let mut image = vec![0f32; 3 * 32 * 32];
            for (i, v) in image.iter_mut().enumerate() {
                let x = i % 32;
                *v = ((x.min(31 - x) as f32) / 16.0 - 0.5) * ((i / 1024) as f32 + 1.0);
            }
            Ok(image)
        };
        let plain = embed(&model, 3, 2, false, false, symmetric).unwrap();
        let flipped = embed(&model, 3, 2, true, false, symmetric).unwrap();
        assert_eq!(plain.len(), 3 * 32);
        assert!((cosine(&plain, 32, 0, 2) - 1.0).abs() < 1e-5);
        assert!((cosine(&plain, 32, 0, 0) - cosine(&flipped, 32, 0, 0)).abs() < 1e-5);
        for (a, b) in plain.iter().zip(&flipped) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}
