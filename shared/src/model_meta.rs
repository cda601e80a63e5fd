//! Names of the ONNX `metadata_props` keys that the exporter writes and the board reads.
//!
//! Values are UTF-8 text. Lists are comma-separated; numbers are plain decimal.

/// Metadata format version, currently `"1"`.
pub const FORMAT_VERSION: &str = "facelock.format_version";
/// Model input height in pixels, e.g. `"112"`.
pub const INPUT_HEIGHT: &str = "facelock.input_height";
/// Model input width in pixels, e.g. `"112"`.
pub const INPUT_WIDTH: &str = "facelock.input_width";
/// Tensor layout of the input, `"NCHW"`.
pub const LAYOUT: &str = "facelock.layout";
/// Channel order of the input, `"RGB"`.
pub const COLOR: &str = "facelock.color";
/// Per-channel mean subtracted from pixels scaled to [0, 1], e.g. `"0.5,0.5,0.5"`.
pub const MEAN: &str = "facelock.mean";
/// Per-channel divisor applied after the mean, e.g. `"0.5,0.5,0.5"`.
pub const STD: &str = "facelock.std";
/// Embedding dimension, e.g. `"128"`.
pub const EMBEDDING_DIM: &str = "facelock.embedding_dim";
/// Model id: 16 lowercase hex digits (a u64) derived from a hash of the weights.
pub const MODEL_ID: &str = "facelock.model_id";
/// Producer and version, e.g. `"facelock 0.1.0"`.
pub const PRODUCER: &str = "facelock.producer";
/// Numeric format of the weights: `"f32"` or `"int8-qdq"`.
pub const QUANTIZATION: &str = "facelock.quantization";
/// Cosine threshold giving a false accept rate of 1e-2 on the evaluation set.
pub const THRESHOLD_FAR_1E2: &str = "facelock.threshold.far_1e-2";
/// Cosine threshold giving a false accept rate of 1e-3 on the evaluation set.
pub const THRESHOLD_FAR_1E3: &str = "facelock.threshold.far_1e-3";
/// Cosine threshold giving a false accept rate of 1e-4 on the evaluation set.
pub const THRESHOLD_FAR_1E4: &str = "facelock.threshold.far_1e-4";
/// The pairs file the thresholds were measured on, e.g. `"lfw pairsDevTest.txt (1000 pairs)"`.
pub const THRESHOLD_SOURCE: &str = "facelock.threshold.source";

/// Parses a model id written as 16 hex digits.
pub fn parse_model_id(text: &str) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// What the model computes: absent for face embeddings, [`KIND_LANDMARKS`] for the landmark
/// cascade of [`crate::landmarks`].
pub const KIND: &str = "facelock.kind";
/// [`KIND`] value of a landmark cascade model.
pub const KIND_LANDMARKS: &str = "landmarks";
/// Number of cascade stages of a landmark model, e.g. `"3"`.
pub const LANDMARK_STAGES: &str = "facelock.landmarks.stages";
/// Side of the grey patch a landmark stage reads, e.g. `"32"`.
pub const LANDMARK_PATCH: &str = "facelock.landmarks.patch";
/// The starting shape in the detector's face box: 10 numbers, x y per point, box-relative.
pub const LANDMARK_BOX_SHAPE: &str = "facelock.landmarks.box_shape";
/// What each cascade stage reads, comma-separated, one per stage: `face` (the whole-face
/// patch), `pixels` or `gradients` (five local patches); absent: every stage reads the face.
pub const LANDMARK_INPUTS: &str = "facelock.landmarks.inputs";
/// Patch-frame pixels per local-patch pixel, e.g. `"0.7"`; needed when a stage is local.
pub const LANDMARK_LOCAL_STEP: &str = "facelock.landmarks.local_step";
/// The face detector whose boxes the starting shape was measured on.
pub const LANDMARK_DETECTOR: &str = "facelock.landmarks.detector";
