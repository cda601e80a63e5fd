//! Five-point landmarks for images that come without them: a face detector's box, then a
//! cascade of linear regressors on grey patches (trained here, exported to ONNX, run by tract).
pub mod model;
pub mod train;

use facelock_shared::detect::Detection;
use facelock_shared::landmarks::FaceBox;

use crate::data::FivePoints;

pub use model::{Cascade, LandmarkModel};
pub use train::{parse_stage_inputs, train, FaceSample, StageReport, TrainConfig};

/// The detection that belongs to known landmarks: the largest box holding both eyes and the
/// midpoint of the mouth corners. `None` if no box does (a miss, or a box on someone else).
pub fn detection_for(detections: &[Detection], truth: &FivePoints) -> Option<FaceBox> {
    let mouth = [
        (truth[3][0] + truth[4][0]) / 2.0,
        (truth[3][1] + truth[4][1]) / 2.0,
    ];
    detections
        .iter()
        .find(|d| d.face.contains(truth[0]) && d.face.contains(truth[1]) && d.face.contains(mouth))
        .map(|d| d.face)
}

#[cfg(test)]
mod tests;
