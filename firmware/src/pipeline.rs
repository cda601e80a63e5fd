//! Probe and enrollment images to embeddings: decode, align, normalise, run the model.
use std::io::Cursor;

use facelock_shared::align;
use image::{ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};
use crate::model::{FaceModel, ModelMeta};

/// Largest accepted image side in pixels; bigger images are refused before decoding.
pub const MAX_IMAGE_SIDE: u32 = 2048;

/// Five facial landmarks sent with an image: left eye, right eye, nose, left and right
/// mouth corners, (x, y) in pixels of that image.
pub type Landmarks = [[f32; 2]; 5];

/// Decodes JPEG, PNG or PGM/PPM bytes into RGB; anything else is an [`Error::Image`].
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    let format = image::guess_format(bytes)
        .map_err(|_| Error::Image("payload is not a JPEG, PNG or PNM image".into()))?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Pnm
    ) {
        return Err(Error::Image(format!(
            "{format:?} images are not accepted (JPEG, PNG, PNM)"
        )));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(64 << 20);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| Error::Image(format!("{format:?} decode: {e}")))?;
    Ok(image.to_rgb8())
}

/// Fraction of the shorter image side taken as the face square when no landmarks come with an
/// image (the host's training default).
pub const DEFAULT_CROP_FRACTION: f32 = 0.5;

/// Aligns `image` into model input, CHW f32 `[3, 112, 112]` with the model's mean/std: through
/// the 5-point similarity transform when landmarks are given, else the centred square of side
/// `crop_fraction * min(width, height)`.
pub fn align_chw(
    image: &RgbImage,
    landmarks: Option<&Landmarks>,
    crop_fraction: f32,
    meta: &ModelMeta,
) -> Result<Vec<f32>> {
    if (meta.input_height, meta.input_width) != (align::ALIGNED_SIZE, align::ALIGNED_SIZE) {
        return Err(Error::Unsupported("model inputs other than 112x112"));
    }
    let (w, h) = (image.width() as usize, image.height() as usize);
    let bad = |e: align::AlignError| Error::Image(format!("{w}x{h} image: {e}"));
    let view = align::ImageRef::new(image.as_raw(), w, h, 3).map_err(bad)?;
    let transform = match landmarks {
        Some(points) => align::landmark_transform(points).map_err(bad)?,
        None => align::center_crop_transform(w, h, crop_fraction).map_err(bad)?,
    };
    let normalisation = align::Normalisation {
        mean: meta.mean,
        std: meta.std,
    };
    let mut chw = vec![0.0f32; align::ALIGNED_LEN];
    align::warp_normalised(&view, &transform, &normalisation, false, &mut chw).map_err(bad)?;
    Ok(chw)
}

/// Image bytes → raw embedding, `[embedding_dim]` (normalised later by the template code).
pub fn embed_image(
    model: &FaceModel,
    bytes: &[u8],
    landmarks: Option<&Landmarks>,
    crop_fraction: f32,
) -> Result<Vec<f32>> {
    let image = decode_image(bytes)?;
    if let Some(points) = landmarks {
        let (w, h) = image.dimensions();
        let outside = points
            .iter()
            .any(|p| !(0.0..w as f32).contains(&p[0]) || !(0.0..h as f32).contains(&p[1]));
        if outside {
            return Err(Error::Image(format!(
                "a landmark lies outside the {w}x{h} image"
            )));
        }
    }
    let chw = align_chw(&image, landmarks, crop_fraction, model.meta())?;
    let embedding = model.embed(&chw)?;
    if embedding.iter().any(|v| !v.is_finite()) {
        return Err(Error::Inference(
            "the model gave a non-finite embedding".into(),
        ));
    }
    Ok(embedding)
}

/// Landmarks as sent on the wire (`[x0, y0, x1, y1, ...]`) to five points.
pub fn landmarks_from_wire(flat: &[f32; 10]) -> Landmarks {
    std::array::from_fn(|i| [flat[2 * i], flat[2 * i + 1]])
}
