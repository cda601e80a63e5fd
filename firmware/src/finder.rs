//! Faces in camera frames: the shared face detector, then the landmark cascade (an ONNX model
//! from `facelock landmarks train`, run by tract), giving the five points alignment needs.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use facelock_shared::align::ImageRef;
use facelock_shared::detect::{DetectorConfig, FaceDetector};
use facelock_shared::landmarks::{self, CascadeError, CascadeInfo, PATCH_LEN, STAGE_OUTPUTS};
use facelock_shared::protocol::ErrorCode;
use image::RgbImage;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::pipeline::Landmarks;

/// Why a frame gave no usable face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The detector found no face.
    NoFace,
    /// More than one face at least the minimum size.
    SeveralFaces,
    /// The face is smaller than the minimum side.
    TooSmall,
}

impl Refusal {
    /// The error code the board answers with.
    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::NoFace => ErrorCode::NoFace,
            Refusal::SeveralFaces => ErrorCode::SeveralFaces,
            Refusal::TooSmall => ErrorCode::FaceTooSmall,
        }
    }
}

/// The landmark cascade in tract.
pub struct LandmarkModel {
    path: PathBuf,
    info: CascadeInfo,
    plan: Arc<TypedRunnableModel>,
}

impl LandmarkModel {
    /// Loads a landmark model and checks its metadata.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io("reading landmark model", path, e))?;
        let tract_error = |e: TractError| Error::Model {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let onnx = tract_onnx::onnx();
        let (proto, props) = crate::model::read_proto(path, &bytes)?;
        let info =
            CascadeInfo::from_metadata(|key| props.get(key).map(String::as_str)).map_err(|e| {
                Error::ModelMetadata {
                    path: path.to_owned(),
                    message: e.to_string(),
                }
            })?;
        let plan = onnx
            .model_for_proto_model(&proto)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, PATCH_LEN]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(tract_error)?;
        let model = LandmarkModel {
            path: path.to_owned(),
            info,
            plan,
        };
        // One run now, so an output that does not match the stage count fails at start.
        model.regress(info.stages - 1, &[0.0; PATCH_LEN])?;
        Ok(model)
    }

    fn regress(&self, stage: usize, patch: &[f32]) -> Result<[f32; STAGE_OUTPUTS]> {
        let failed = |e: TractError| Error::Inference(format!("{}: {e:#}", self.path.display()));
        let input = Tensor::from_shape(&[1, PATCH_LEN], patch).map_err(failed)?;
        let outputs = self.plan.run(tvec!(input.into())).map_err(failed)?;
        let view = outputs[0].to_plain_array_view::<f32>().map_err(failed)?;
        let values: Vec<f32> = view.iter().copied().collect();
        let column = stage * STAGE_OUTPUTS;
        let columns = values.get(column..column + STAGE_OUTPUTS).ok_or_else(|| {
            Error::Inference(format!(
                "{}: {} outputs, too few for {} stages",
                self.path.display(),
                values.len(),
                self.info.stages
            ))
        })?;
        let mut out = [0.0; STAGE_OUTPUTS];
        out.copy_from_slice(columns);
        Ok(out)
    }
}

/// Detector + landmarks with the board's face size rules.
pub struct FaceFinder {
    detector: FaceDetector,
    landmarks: LandmarkModel,
    min_face: f32,
}

impl FaceFinder {
    /// A finder with the embedded detector and `landmarks`; faces narrower than `min_face`
    /// pixels are refused as too small.
    pub fn new(landmarks: LandmarkModel, min_face: u32) -> Result<Self> {
        let config = DetectorConfig {
            min_face: (min_face / 2).max(facelock_shared::detect::MIN_FACE),
            ..DetectorConfig::default()
        };
        let detector = FaceDetector::embedded(&config)
            .map_err(|e| Error::Image(format!("face detector: {e}")))?;
        Ok(FaceFinder {
            detector,
            landmarks,
            min_face: min_face as f32,
        })
    }

    /// The five points of the one face in `frame`, or why there is none.
    pub fn find(&mut self, frame: &RgbImage) -> Result<std::result::Result<Landmarks, Refusal>> {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let view = ImageRef::new(frame.as_raw(), w, h, 3)
            .map_err(|e| Error::Image(format!("{w}x{h} frame: {e}")))?;
        let detections = self.detector.detect(&view);
        let Some(largest) = detections.first() else {
            return Ok(Err(Refusal::NoFace));
        };
        let big_enough = detections
            .iter()
            .filter(|d| d.face.width >= self.min_face)
            .count();
        if big_enough > 1 {
            return Ok(Err(Refusal::SeveralFaces));
        }
        if largest.face.width < self.min_face {
            return Ok(Err(Refusal::TooSmall));
        }
        let points = landmarks::run_cascade(&view, &largest.face, &self.landmarks.info, |s, p| {
            self.landmarks.regress(s, p)
        })
        .map_err(|e| match e {
            CascadeError::Align(e) => Error::Image(format!("landmark cascade: {e}")),
            CascadeError::Model(e) => e,
        })?;
        Ok(Ok(points))
    }
}
