//! Probe and enrollment images to embeddings: decode, align, normalise, run the model.
use std::io::Cursor;

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
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Pnm) {
        return Err(Error::Image(format!("{format:?} images are not accepted (JPEG, PNG, PNM)")));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(64 << 20);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| Error::Image(format!("{format:?} decode: {e}")))?;
    Ok(image.to_rgb8())
}

/// Crops the centred square of `image` and resizes it to the model input, CHW f32 with the
/// model's mean/std, `[3, H, W]`.
///
/// TODO: landmark alignment (similarity transform to the 5-point template) belongs to
/// `facelock_shared::align`; until that lands here, landmarks sent with an image are
/// ignored and every image takes this centred-crop path.
pub fn centre_crop_chw(image: &RgbImage, meta: &ModelMeta) -> Result<Vec<f32>> {
    let (w, h) = image.dimensions();
    let side = w.min(h);
    if side < 16 {
        return Err(Error::Image(format!("image is {w}x{h}, too small for a face")));
    }
    let crop = image::imageops::crop_imm(image, (w - side) / 2, (h - side) / 2, side, side);
    let resized = image::imageops::resize(
        &crop.to_image(),
        meta.input_width as u32,
        meta.input_height as u32,
        image::imageops::FilterType::Triangle,
    );
    let plane = meta.input_width * meta.input_height;
    let mut chw = vec![0.0f32; 3 * plane];
    for (i, pixel) in resized.pixels().enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = (pixel[c] as f32 / 255.0 - meta.mean[c]) / meta.std[c];
        }
    }
    Ok(chw)
}

/// Image bytes → L2-normalised embedding, `[embedding_dim]`.
pub fn embed_image(model: &FaceModel, bytes: &[u8], landmarks: Option<&Landmarks>) -> Result<Vec<f32>> {
    let image = decode_image(bytes)?;
    if let Some(points) = landmarks {
        let (w, h) = image.dimensions();
        let outside = points
            .iter()
            .any(|p| !(0.0..w as f32).contains(&p[0]) || !(0.0..h as f32).contains(&p[1]));
        if outside {
            return Err(Error::Image(format!("a landmark lies outside the {w}x{h} image")));
        }
    }
    let chw = centre_crop_chw(&image, model.meta())?;
    let mut embedding = model.embed(&chw)?;
    let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
    if !norm.is_finite() || norm < 1e-12 {
        return Err(Error::Inference("the model gave a zero or non-finite embedding".into()));
    }
    embedding.iter_mut().for_each(|v| *v /= norm);
    Ok(embedding)
}

/// Landmarks as sent on the wire (`[x0, y0, x1, y1, ...]`) to five points.
pub fn landmarks_from_wire(flat: &[f32; 10]) -> Landmarks {
    std::array::from_fn(|i| [flat[2 * i], flat[2 * i + 1]])
}
