//! Aligning image files into model input with `facelock_shared::align`, one or many at a time.
use std::path::{Path, PathBuf};

use facelock_shared::align::{
    self, Normalisation, Similarity, ALIGNED_LEN, ALIGNED_RGB_LEN, TEMPLATE_112,
};
use rayon::prelude::*;

use crate::data::image_io::{decode_file, DecodedImage};
use crate::data::landmarks::{FivePoints, Landmarks};
use crate::{Error, Result};

/// How images become model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignConfig {
    /// Per-channel mean/std applied to pixels scaled to [0, 1]; stored with the model.
    pub normalisation: Normalisation,
    /// Fallback for images without landmarks: side of the centred square crop as a fraction of
    /// the shorter image side, in (0, 1]. 0.5 frames a face in LFW-style 150x150 images
    /// about as the template does.
    pub crop_fraction: f32,
}

impl Default for AlignConfig {
    fn default() -> Self {
        AlignConfig {
            normalisation: Normalisation::HALF,
            crop_fraction: 0.5,
        }
    }
}

impl AlignConfig {
    /// Bytes that identify the geometry of the crop (template, size, fallback fraction), for cache
    /// keys. Normalisation is not part of it: caches hold u8 crops.
    pub fn geometry_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(48);
        key.extend_from_slice(&(align::ALIGNED_SIZE as u32).to_le_bytes());
        for point in TEMPLATE_112 {
            key.extend_from_slice(&point[0].to_le_bytes());
            key.extend_from_slice(&point[1].to_le_bytes());
        }
        key.extend_from_slice(&self.crop_fraction.to_le_bytes());
        key
    }
}

/// The transform for an image: from its landmarks, or the centred-square-crop fallback.
pub fn transform_for(
    image: &DecodedImage,
    landmarks: Option<&FivePoints>,
    config: &AlignConfig,
    name: &Path,
) -> Result<Similarity> {
    let transform = match landmarks {
        Some(points) => align::landmark_transform(points),
        None => {
            tracing::trace!(
                "{}: no landmarks, centred square crop fallback",
                name.display()
            );
            align::center_crop_transform(image.width, image.height, config.crop_fraction)
        }
    };
    transform.map_err(|source| Error::Align {
        path: name.to_path_buf(),
        source,
    })
}

/// Aligns a decoded image into an RGB u8 crop, [112, 112, 3]; `name` is used in errors.
pub fn align_decoded_rgb(
    image: &DecodedImage,
    landmarks: Option<&FivePoints>,
    config: &AlignConfig,
    name: &Path,
) -> Result<Vec<u8>> {
    let transform = transform_for(image, landmarks, config, name)?;
    let mut crop = vec![0u8; ALIGNED_RGB_LEN];
    let view = image.view().map_err(|source| Error::Align {
        path: name.into(),
        source,
    })?;
    align::warp_rgb_u8(&view, &transform, &mut crop).map_err(|source| Error::Align {
        path: name.into(),
        source,
    })?;
    Ok(crop)
}

/// Decodes and aligns the image file at `path` into an RGB u8 crop, [112, 112, 3].
pub fn align_image_rgb(
    path: &Path,
    landmarks: Option<&FivePoints>,
    config: &AlignConfig,
) -> Result<Vec<u8>> {
    let image = decode_file(path)?;
    align_decoded_rgb(&image, landmarks, config, path)
}

/// Decodes and aligns the image file at `path` into model input, [3, 112, 112] RGB, normalised
/// with `config.normalisation`.
pub fn align_image(
    path: &Path,
    landmarks: Option<&FivePoints>,
    config: &AlignConfig,
) -> Result<Vec<f32>> {
    let image = decode_file(path)?;
    let transform = transform_for(&image, landmarks, config, path)?;
    let mut out = vec![0.0f32; ALIGNED_LEN];
    let view = image.view().map_err(|source| Error::Align {
        path: path.into(),
        source,
    })?;
    align::warp_normalised(&view, &transform, &config.normalisation, false, &mut out).map_err(
        |source| Error::Align {
            path: path.into(),
            source,
        },
    )?;
    Ok(out)
}

/// Aligns many images in parallel (rayon's pool) into model input, [N, 3, 112, 112], in the order
/// of `relative` (paths relative to `root`). Images missing from `landmarks` use the fallback
/// crop; the count is logged. The first unreadable image fails the whole call.
pub fn align_many(
    root: &Path,
    relative: &[PathBuf],
    landmarks: Option<&Landmarks>,
    config: &AlignConfig,
) -> Result<Vec<f32>> {
    let without = relative
        .iter()
        .filter(|p| landmarks.and_then(|l| l.get(p)).is_none())
        .count();
    if without > 0 {
        tracing::info!(
            "{without} of {} images have no landmarks: centred square crop fallback ({})",
            relative.len(),
            config.crop_fraction
        );
    }

    let mut out = vec![0.0f32; relative.len() * ALIGNED_LEN];
    out.par_chunks_mut(ALIGNED_LEN)
        .zip(relative.par_iter())
        .try_for_each(|(slot, rel)| {
            let points = landmarks.and_then(|l| l.get(rel));
            let aligned = align_image(&root.join(rel), points.as_ref(), config)?;
            slot.copy_from_slice(&aligned);
            Ok::<(), Error>(())
        })?;
    Ok(out)
}
