//! Aligned face images for calibration and for comparing models on verification pairs.
use std::path::{Path, PathBuf};

use facelock_shared::align::{Normalisation, ALIGNED_SIZE};

use crate::data::{align_many, AlignConfig, Landmarks, Pairs};
use crate::onnx::{Embedder, ModelMeta};
use crate::{Error, Result};

/// The alignment that produces input for a model with this metadata.
pub fn align_config(meta: &ModelMeta) -> Result<AlignConfig> {
    if meta.input_height != ALIGNED_SIZE || meta.input_width != ALIGNED_SIZE {
        return Err(Error::Unsupported(format!(
            "model input {}x{}: face alignment produces {ALIGNED_SIZE}x{ALIGNED_SIZE} crops",
            meta.input_height, meta.input_width
        )));
    }
    let normalisation = Normalisation {
        mean: meta.mean,
        std: meta.std,
    };
    Ok(AlignConfig {
        normalisation,
        ..AlignConfig::default()
    })
}

/// `count` images spread evenly over the landmark file (sorted by path), aligned and
/// normalised for `meta`: [count, 3, 112, 112]. Unreadable images fail with their path.
pub fn calibration_images(
    root: &Path,
    landmarks: &Path,
    count: usize,
    meta: &ModelMeta,
) -> Result<Vec<f32>> {
    let config = align_config(meta)?;
    let landmarks = Landmarks::load(landmarks)?;
    let mut paths: Vec<PathBuf> = landmarks.iter().map(|(p, _)| p.to_path_buf()).collect();
    paths.sort();
    if count == 0 || paths.is_empty() {
        return Err(Error::InvalidInput(format!(
            "calibration needs at least one image ({} requested, {} with landmarks)",
            count,
            paths.len()
        )));
    }
    let step = (paths.len() / count).max(1);
    let chosen: Vec<PathBuf> = paths.into_iter().step_by(step).take(count).collect();
    align_many(root, &chosen, Some(&landmarks), &config)
}

/// Embeddings of the images of `pairs` under `root`, and each pair's cosine score.
pub struct PairScores {
    /// Distinct images in first-use order.
    pub images: Vec<PathBuf>,
    /// Their embeddings, L2-normalised, [images, dim].
    pub embeddings: Vec<f32>,
    /// Cosine score of each usable pair.
    pub scores: Vec<f64>,
    /// Whether each usable pair shows one person.
    pub same: Vec<bool>,
    /// Pairs skipped because an image is missing.
    pub skipped: usize,
}

/// Scores every pair of `pairs` (file at `pairs_path`) with `embedder`.
pub fn score_pairs(
    embedder: &Embedder,
    root: &Path,
    landmarks: &Landmarks,
    pairs: &Pairs,
) -> Result<PairScores> {
    let resolved = pairs.resolve(root);
    let mut images: Vec<PathBuf> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for pair in &resolved.pairs {
        for image in [&pair.a, &pair.b] {
            if !index.contains_key(image) {
                index.insert(image.clone(), images.len());
                images.push(image.clone());
            }
        }
    }
    let config = align_config(embedder.meta())?;
    let dim = embedder.meta().embedding_dim;
    let mut embeddings = Vec::with_capacity(images.len() * dim);
    let progress = crate::progress::bar(images.len() as u64, "embedding");
    for chunk in images.chunks(64) {
        let aligned = align_many(root, chunk, Some(landmarks), &config)?;
        embeddings.extend(embedder.embed(&aligned)?);
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    for row in embeddings.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    let scores = resolved
        .pairs
        .iter()
        .map(|p| {
            row(index[&p.a])
                .iter()
                .zip(row(index[&p.b]))
                .map(|(a, b)| (a * b) as f64)
                .sum()
        })
        .collect();
    let same = resolved.pairs.iter().map(|p| p.same).collect();
    Ok(PairScores {
        images,
        embeddings,
        scores,
        same,
        skipped: resolved.skipped.len(),
    })
}
