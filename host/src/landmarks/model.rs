//! The landmark cascade as weights, as an ONNX graph, and as a tract plan.
//!
//! All stages live in one graph: `updates = patch · W + b`, patch [1, 1024], W [1024, 10·S],
//! b [10·S]. Stage `k` reads its ten columns; the others are computed and ignored (10·S·1024
//! multiply-adds per stage, negligible next to the embedding network).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use facelock_shared::align::ImageRef;
use facelock_shared::landmarks::{self, FaceBox, StageInput, PATCH_LEN, PATCH_SIZE, STAGE_OUTPUTS};
use facelock_shared::model_meta as key;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::data::FivePoints;
use crate::onnx::builder::{self, f32_tensor, node, value_info, GraphBuilder};
use crate::onnx::meta;
use crate::{Error, Result};

/// Name of the graph input, [1, 1024] float: one normalised patch.
pub const INPUT: &str = "patch";
/// Name of the graph output, [1, 10·stages] float: every stage's correction.
pub const OUTPUT: &str = "updates";
/// The detector the box shape belongs to, written into the metadata.
pub const DETECTOR: &str = "rustface-0.1.7 seeta_fd_frontal_v1.0";

/// A trained cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    /// Number of stages.
    pub stages: usize,
    /// Weights, [1024, 10·stages] row-major.
    pub weights: Vec<f32>,
    /// Biases, [10·stages].
    pub bias: Vec<f32>,
    /// The starting shape relative to the detector box ((0, 0) top-left, (1, 1) bottom-right).
    pub box_shape: FivePoints,
    /// What each stage reads (`stages` entries).
    pub inputs: Vec<StageInput>,
    /// Patch-frame pixels per local-patch pixel of the local stages.
    pub local_step: f32,
}

impl Cascade {
    fn width(&self) -> usize {
        self.stages * STAGE_OUTPUTS
    }

    /// Stage `stage`'s correction for `patch`, computed here (the same arithmetic as the graph).
    pub fn regress(&self, stage: usize, patch: &[f32]) -> [f32; STAGE_OUTPUTS] {
        let width = self.width();
        let column = stage * STAGE_OUTPUTS;
        let mut out = [0.0f32; STAGE_OUTPUTS];
        out.copy_from_slice(&self.bias[column..column + STAGE_OUTPUTS]);
        for (row, value) in patch.iter().enumerate() {
            let weights = &self.weights[row * width + column..row * width + column + STAGE_OUTPUTS];
            for (o, w) in out.iter_mut().zip(weights) {
                *o += value * w;
            }
        }
        out
    }

    /// Runs the first `stages` stages from the box shape with `regress` as the model.
    pub fn locate_with(
        &self,
        image: &ImageRef<'_>,
        face: &FaceBox,
        stages: usize,
        regress: impl FnMut(usize, &[f32]) -> Result<[f32; STAGE_OUTPUTS]>,
    ) -> Result<FivePoints> {
        let mut inputs = [StageInput::Face; landmarks::MAX_STAGES];
        for (slot, input) in inputs.iter_mut().zip(&self.inputs) {
            *slot = *input;
        }
        let info = landmarks::CascadeInfo {
            stages: stages.min(self.stages).min(landmarks::MAX_STAGES),
            box_shape: self.box_shape,
            inputs,
            local_step: self.local_step,
        };
        landmarks::run_cascade(image, face, &info, regress).map_err(cascade_error)
    }

    /// The cascade as an ONNX model with facelock landmark metadata.
    pub fn to_onnx(&self) -> ModelProto {
        let mut graph = GraphBuilder::default();
        let weights = graph.initializer(f32_tensor(
            "stages.weight",
            &[PATCH_LEN, self.width()],
            &self.weights,
        ));
        let bias = graph.initializer(f32_tensor("stages.bias", &[self.width()], &self.bias));
        graph.push(node(
            "MatMul",
            "stages.matmul",
            &[INPUT, &weights],
            &["stages.product"],
            vec![],
        ));
        graph.push(node(
            "Add",
            "stages.add",
            &["stages.product", &bias],
            &[OUTPUT],
            vec![],
        ));
        let model_id = meta::model_id(graph.weight_bytes());
        let graph = graph.finish(
            "facelock-landmarks",
            value_info(INPUT, &[Some(1), Some(PATCH_LEN)]),
            value_info(OUTPUT, &[Some(1), Some(self.width())]),
        );
        let box_shape = self
            .box_shape
            .iter()
            .flat_map(|p| [p[0].to_string(), p[1].to_string()])
            .collect::<Vec<_>>()
            .join(",");
        let mut props = vec![
            (key::FORMAT_VERSION, "1".to_string()),
            (key::KIND, key::KIND_LANDMARKS.to_string()),
            (key::LANDMARK_STAGES, self.stages.to_string()),
            (key::LANDMARK_PATCH, PATCH_SIZE.to_string()),
            (key::LANDMARK_BOX_SHAPE, box_shape),
            (key::LANDMARK_DETECTOR, DETECTOR.to_string()),
            (key::MODEL_ID, format!("{model_id:016x}")),
            (key::PRODUCER, meta::producer()),
        ];
        if self.inputs.iter().any(|i| *i != StageInput::Face) {
            let names: Vec<&str> = self.inputs.iter().map(|i| i.name()).collect();
            props.push((key::LANDMARK_INPUTS, names.join(",")));
            props.push((key::LANDMARK_LOCAL_STEP, self.local_step.to_string()));
        }
        builder::model(
            graph,
            props.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        )
    }
}

fn cascade_error(error: landmarks::CascadeError<Error>) -> Error {
    match error {
        landmarks::CascadeError::Align(source) => {
            Error::InvalidInput(format!("landmark cascade: {source}"))
        }
        landmarks::CascadeError::Model(error) => error,
    }
}

/// A landmark model file in tract.
pub struct LandmarkModel {
    path: PathBuf,
    info: landmarks::CascadeInfo,
    plan: Arc<TypedRunnableModel>,
}

impl LandmarkModel {
    /// Loads and checks a landmark model written by [`Cascade::to_onnx`].
    pub fn load(path: &Path) -> Result<Self> {
        let proto = crate::onnx::runner::read_model(path)?;
        Self::from_proto(&proto, path)
    }

    /// Checks the metadata of `proto` (named `path` in errors) and plans it in tract.
    pub fn from_proto(proto: &ModelProto, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Onnx {
            path: path.to_path_buf(),
            reason,
        };
        let info = landmarks::CascadeInfo::from_metadata(|name| meta::lookup(proto, name))
            .map_err(|e| bad(e.to_string()))?;

        let tract_err = |e: TractError| bad(format!("{e:#}"));
        let plan = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, PATCH_LEN]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(tract_err)?;
        Ok(LandmarkModel {
            path: path.to_path_buf(),
            info,
            plan,
        })
    }

    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.info.stages
    }

    /// What the model's metadata says: stages, box shape, local-patch stages.
    pub fn info(&self) -> &landmarks::CascadeInfo {
        &self.info
    }

    /// Stage `stage`'s correction for one patch, through tract.
    pub fn regress(&self, stage: usize, patch: &[f32]) -> Result<[f32; STAGE_OUTPUTS]> {
        if stage >= self.stages() || patch.len() != PATCH_LEN {
            return Err(Error::InvalidInput(format!(
                "landmark stage {stage} of {} on a patch of {} values",
                self.stages(),
                patch.len()
            )));
        }
        let input = Tensor::from_shape(&[1, PATCH_LEN], patch).map_err(|e| self.error(e))?;
        let values = crate::onnx::runner::run_f32(&self.plan, input).map_err(|e| self.error(e))?;
        if values.len() < self.stages() * STAGE_OUTPUTS {
            return Err(Error::Onnx {
                path: self.path.clone(),
                reason: format!(
                    "{} outputs, too few for {} stages",
                    values.len(),
                    self.stages()
                ),
            });
        }
        let column = stage * STAGE_OUTPUTS;
        let mut out = [0.0f32; STAGE_OUTPUTS];
        out.copy_from_slice(&values[column..column + STAGE_OUTPUTS]);
        Ok(out)
    }

    /// The starting shape of the cascade in `face` (what stage 1 refines).
    pub fn box_shape_in(&self, face: &FaceBox) -> FivePoints {
        face.from_unit(&self.info.box_shape)
    }

    /// The five points of the face in `face`, after all stages.
    pub fn locate(&self, image: &ImageRef<'_>, face: &FaceBox) -> Result<FivePoints> {
        landmarks::run_cascade(image, face, &self.info, |stage, patch| {
            self.regress(stage, patch)
        })
        .map_err(cascade_error)
    }

    fn error(&self, e: TractError) -> Error {
        Error::Onnx {
            path: self.path.clone(),
            reason: format!("{e:#}"),
        }
    }
}
