//! Scores verification pairs with a model: each distinct image aligned and embedded once.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::embedder::{cosine, embed};
use crate::data::{align_image, AlignConfig, Landmarks, Pair};
use crate::model::MobileFaceNet;
use crate::Result;

/// Where pair images come from and how they are embedded.
pub struct PairImages<'a> {
    /// Root the pair paths are relative to.
    pub root: &'a Path,
    /// Landmarks by relative path; images without them use the centred-crop fallback.
    pub landmarks: Option<&'a Landmarks>,
    /// Crop geometry and normalisation.
    pub align: AlignConfig,
    /// Flip test-time augmentation.
    pub flip: bool,
    /// Images per forward pass.
    pub batch: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// Cosine similarity of each pair's embeddings, in pair order; each distinct image is aligned
/// and embedded once.
pub fn score_pairs(model: &MobileFaceNet, pairs: &[Pair], images: &PairImages) -> Result<Vec<f64>> {
    let mut index: BTreeMap<&Path, usize> = BTreeMap::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    for pair in pairs {
        for path in [&pair.a, &pair.b] {
            index.entry(path.as_path()).or_insert_with(|| {
                paths.push(path.clone());
                paths.len() - 1
            });
        }
    }
    let count = paths.len();
    let embeddings = embed(
        model,
        count,
        images.batch,
        images.flip,
        images.progress,
        |i| {
            let points = images.landmarks.and_then(|l| l.get(&paths[i]));
            align_image(&images.root.join(&paths[i]), points.as_ref(), &images.align)
        },
    )?;
    let dim = model.config().embedding_dim;
    Ok(pairs
        .iter()
        .map(|p| cosine(&embeddings, dim, index[p.a.as_path()], index[p.b.as_path()]))
        .collect())
}

/// [`score_pairs`] for an ONNX model run by tract (its metadata's normalisation is used).
pub fn score_pairs_onnx(
    model: &crate::onnx::Embedder,
    pairs: &[Pair],
    images: &PairImages,
) -> Result<Vec<f64>> {
    let mut index: BTreeMap<&Path, usize> = BTreeMap::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    for pair in pairs {
        for path in [&pair.a, &pair.b] {
            index.entry(path.as_path()).or_insert_with(|| {
                paths.push(path.clone());
                paths.len() - 1
            });
        }
    }
    let align = crate::quantize::images::align_config(model.meta())?;
    let embeddings = model.embed_all(paths.len(), images.flip, |i| {
        let points = images.landmarks.and_then(|l| l.get(&paths[i]));
        align_image(&images.root.join(&paths[i]), points.as_ref(), &align)
    })?;
    let dim = model.meta().embedding_dim;
    Ok(pairs
        .iter()
        .map(|p| cosine(&embeddings, dim, index[p.a.as_path()], index[p.b.as_path()]))
        .collect())
}
