//! Scores verification pairs with a model: each distinct image aligned and embedded once.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::embedder::{cosine, embed};
use crate::data::{align_image, AlignConfig, Landmarks, Pair};
use crate::model::MobileFaceNet;
use crate::Result;

/// Cosine similarity of each pair's embeddings, in pair order. Images are read from `root`
/// (paths in the pairs are relative to it), aligned with their landmarks when `landmarks`
/// has them, else with the centred-crop fallback of `align`.
pub fn score_pairs(
    model: &MobileFaceNet,
    pairs: &[Pair],
    root: &Path,
    landmarks: Option<&Landmarks>,
    align: &AlignConfig,
    flip: bool,
    batch: usize,
    progress: bool,
) -> Result<Vec<f64>> {
    let mut index: BTreeMap<&Path, usize> = BTreeMap::new();
    let mut images: Vec<PathBuf> = Vec::new();
    for pair in pairs {
        for path in [&pair.a, &pair.b] {
            index.entry(path.as_path()).or_insert_with(|| {
                images.push(path.clone());
                images.len() - 1
            });
        }
    }
    let embeddings = embed(model, images.len(), batch, flip, progress, |i| {
        let points = landmarks.and_then(|l| l.get(&images[i]));
        align_image(&root.join(&images[i]), points.as_ref(), align)
    })?;
    let dim = model.config().embedding_dim;
    Ok(pairs.iter().map(|p| cosine(&embeddings, dim, index[p.a.as_path()], index[p.b.as_path()])).collect())
}
