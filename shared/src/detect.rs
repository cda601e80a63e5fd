//! Face detection on the board and the host: rustface's SeetaFace frontal cascade, wrapped so
//! that bad input is an error instead of a panic.
//!
//! The model (1.2 MB) is the file that ships inside rustface's crates.io package; `build.rs`
//! finds it and [`FaceDetector::embedded`] carries it in the binary. [`FaceDetector::from_model`]
//! reads another copy instead.

use core::fmt;
use std::boxed::Box;
use std::vec::Vec;

use crate::align::ImageRef;
use crate::landmarks::FaceBox;

/// Smallest face side the detector looks for, in pixels (rustface's window is 20 px).
pub const MIN_FACE: u32 = 20;

/// Why a detector could not be made or run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DetectError {
    /// This build found no model file in rustface's package (see `shared/build.rs`).
    NoEmbeddedModel,
    /// The model bytes are not a SeetaFace detection model.
    BadModel,
    /// A setting is out of the range the detector accepts.
    BadSetting(&'static str),
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectError::NoEmbeddedModel => f.write_str(
                "this build carries no face detector model (rustface's package was not found \
                 at build time; set FACELOCK_DETECTOR_MODEL and rebuild)",
            ),
            DetectError::BadModel => f.write_str("not a SeetaFace face detection model"),
            DetectError::BadSetting(what) => write!(f, "detector setting out of range: {what}"),
        }
    }
}

impl std::error::Error for DetectError {}

/// One detected face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// The face box in image pixels.
    pub face: FaceBox,
    /// The cascade's confidence (higher is surer; rustface's scale, typically 2 to 30).
    pub score: f32,
}

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Smallest face side searched, pixels (at least [`MIN_FACE`]).
    pub min_face: u32,
    /// Ratio between pyramid levels, in (0.1, 0.99): larger is slower and finds more.
    pub pyramid_scale: f32,
    /// Sliding-window step, pixels.
    pub step: u32,
    /// Score threshold; weaker detections are dropped.
    pub score_threshold: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_face: 40,
            pyramid_scale: 0.8,
            step: 4,
            score_threshold: 2.0,
        }
    }
}

/// A face detector with fixed settings. `Send` but not `Sync`: one per thread.
pub struct FaceDetector {
    inner: Box<dyn rustface::Detector>,
    grey: Vec<u8>,
}

// SAFETY: rustface's detector (`FuStDetector`) owns plain data only: model tables, feature maps
// and image buffers in Vecs, no Rc/Cell or thread-bound handles (its raw pointers live only
// inside function calls). Moving it to another thread is sound; it is used through `&mut self`.
unsafe impl Send for FaceDetector {}

impl FaceDetector {
    /// The detector with the model embedded at build time.
    pub fn embedded(config: &DetectorConfig) -> Result<Self, DetectError> {
        #[cfg(facelock_embedded_detector)]
        {
            static MODEL: &[u8] = include_bytes!(env!("FACELOCK_DETECTOR_MODEL_PATH"));
            Self::from_model(MODEL, config)
        }
        #[cfg(not(facelock_embedded_detector))]
        {
            let _ = config;
            Err(DetectError::NoEmbeddedModel)
        }
    }

    /// A detector reading the SeetaFace model in `bytes`.
    pub fn from_model(bytes: &[u8], config: &DetectorConfig) -> Result<Self, DetectError> {
        if config.min_face < MIN_FACE {
            return Err(DetectError::BadSetting("min_face below 20 px"));
        }
        if !(config.pyramid_scale > 0.1 && config.pyramid_scale < 0.99) {
            return Err(DetectError::BadSetting("pyramid_scale outside (0.1, 0.99)"));
        }
        if config.step == 0 {
            return Err(DetectError::BadSetting("step of 0 px"));
        }
        if config.score_threshold.is_nan() || config.score_threshold <= 0.0 {
            return Err(DetectError::BadSetting("score_threshold not positive"));
        }
        // rustface indexes the model's tables without checks; catch a malformed file here.
        let model = std::panic::catch_unwind(|| rustface::read_model(bytes))
            .map_err(|_| DetectError::BadModel)?
            .map_err(|_| DetectError::BadModel)?;
        let mut inner = rustface::create_detector_with_model(model);
        inner.set_min_face_size(config.min_face);
        inner.set_pyramid_scale_factor(config.pyramid_scale);
        inner.set_slide_window_step(config.step, config.step);
        inner.set_score_thresh(config.score_threshold);
        Ok(FaceDetector {
            inner,
            grey: Vec::new(),
        })
    }

    /// Faces in `image` (grey or RGB), largest first. An image smaller than [`MIN_FACE`] on a
    /// side has no faces.
    pub fn detect(&mut self, image: &ImageRef<'_>) -> Vec<Detection> {
        let (width, height) = (image.width(), image.height());
        if width < MIN_FACE as usize || height < MIN_FACE as usize {
            return Vec::new();
        }
        image.grey_into(&mut self.grey);
        let data = rustface::ImageData::new(&self.grey, width as u32, height as u32);
        let mut found: Vec<Detection> = self
            .inner
            .detect(&data)
            .iter()
            .map(|info| {
                let bbox = info.bbox();
                Detection {
                    face: FaceBox {
                        x: bbox.x() as f32,
                        y: bbox.y() as f32,
                        width: bbox.width() as f32,
                        height: bbox.height() as f32,
                    },
                    score: info.score() as f32,
                }
            })
            .collect();
        found.sort_by(|a, b| b.face.area().total_cmp(&a.face.area()));
        found
    }

    /// The largest face, if any.
    pub fn largest(&mut self, image: &ImageRef<'_>) -> Option<Detection> {
        self.detect(image).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_errors() {
        let bad = DetectorConfig {
            min_face: 10,
            ..DetectorConfig::default()
        };
        assert!(matches!(
            FaceDetector::from_model(&[], &bad),
            Err(DetectError::BadSetting(_))
        ));
        let bad = DetectorConfig {
            pyramid_scale: 1.5,
            ..DetectorConfig::default()
        };
        assert!(matches!(
            FaceDetector::from_model(&[], &bad),
            Err(DetectError::BadSetting(_))
        ));
    }

    #[test]
    fn a_file_that_is_not_a_model_is_refused() {
        let config = DetectorConfig::default();
        assert_eq!(
            FaceDetector::from_model(&[], &config).err(),
            Some(DetectError::BadModel)
        );
        assert_eq!(
            FaceDetector::from_model(&[7u8; 100], &config).err(),
            Some(DetectError::BadModel)
        );
    }

    #[test]
    fn the_embedded_model_loads_and_tiny_or_flat_images_have_no_faces() {
        let mut detector = FaceDetector::embedded(&DetectorConfig::default()).unwrap();
        let tiny = [0u8; 10 * 10];
        assert!(detector
            .detect(&ImageRef::new(&tiny, 10, 10, 1).unwrap())
            .is_empty());
        let flat = [128u8; 160 * 120 * 3];
        assert!(detector
            .detect(&ImageRef::new(&flat, 160, 120, 3).unwrap())
            .is_empty());
    }
}
