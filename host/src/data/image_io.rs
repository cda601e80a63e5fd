//! Image decoding (jpg, png, pgm, gif) into interleaved u8 grey or RGB buffers.
use std::path::Path;

use facelock_shared::align::{AlignError, ImageRef};
use image::{ColorType, DynamicImage};

use crate::{Error, Result};

/// A decoded image: [height, width, channels] u8, channels 1 (grey) or 3 (RGB).
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// Interleaved pixels, rows top to bottom.
    pub pixels: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 for grey sources, 3 otherwise (alpha dropped).
    pub channels: usize,
}

impl DecodedImage {
    /// A borrowed view for the shared alignment code.
    pub fn view(&self) -> Result<ImageRef<'_>, AlignError> {
        ImageRef::new(&self.pixels, self.width, self.height, self.channels)
    }
}

/// Reads and decodes the image at `path`; the format is detected from its bytes.
pub fn decode_file(path: &Path) -> Result<DecodedImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(&bytes, path)
}

/// Decodes an encoded image held in memory; `name` is used in errors. GIFs give their first frame.
pub fn decode_bytes(bytes: &[u8], name: &Path) -> Result<DecodedImage> {
    let image = image::load_from_memory(bytes).map_err(|e| Error::Image {
        path: name.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    if width == 0 || height == 0 {
        return Err(Error::Image {
            path: name.to_path_buf(),
            reason: "image is empty".into(),
        });
    }
    let grey = matches!(
        image.color(),
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
    );
    let (pixels, channels) = match image {
        DynamicImage::ImageLuma8(buffer) => (buffer.into_raw(), 1),
        DynamicImage::ImageRgb8(buffer) => (buffer.into_raw(), 3),
        other if grey => (other.to_luma8().into_raw(), 1),
        other => (other.to_rgb8().into_raw(), 3),
    };
    Ok(DecodedImage {
        pixels,
        width,
        height,
        channels,
    })
}
