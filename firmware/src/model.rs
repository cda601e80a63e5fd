//! The face embedding model: an ONNX file with facelock metadata, optimised once by tract.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use facelock_shared::model_meta as keys;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// What the exporter wrote into the model's `metadata_props`, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeta {
    /// Model id (hash of the weights); galleries are bound to it.
    pub model_id: u64,
    /// Input height in pixels.
    pub input_height: usize,
    /// Input width in pixels.
    pub input_width: usize,
    /// Per-channel mean subtracted from pixels scaled to [0, 1], RGB order.
    pub mean: [f32; 3],
    /// Per-channel divisor applied after the mean, RGB order.
    pub std: [f32; 3],
    /// Embedding dimension (length of the model's output).
    pub embedding_dim: usize,
    /// Producer string, e.g. "facelock 0.1.0" (empty if absent).
    pub producer: String,
    /// Weight format, "f32" or "int8-qdq" (empty if absent).
    pub quantization: String,
    /// Cosine threshold at FAR 1e-2, if measured.
    pub threshold_far_1e2: Option<f32>,
    /// Cosine threshold at FAR 1e-3, if measured.
    pub threshold_far_1e3: Option<f32>,
    /// Cosine threshold at FAR 1e-4, if measured.
    pub threshold_far_1e4: Option<f32>,
}

impl ModelMeta {
    /// Parses the metadata map of an ONNX model; `path` only names the file in errors.
    pub fn from_props(path: &Path, props: &HashMap<String, String>) -> Result<Self> {
        let bad = |message: String| Error::ModelMetadata {
            path: path.to_owned(),
            message,
        };
        let get = |key: &str| -> Result<&str> {
            props
                .get(key)
                .map(String::as_str)
                .ok_or_else(|| bad(format!("metadata key '{key}' is missing")))
        };
        let number = |key: &str| -> Result<usize> {
            let text = get(key)?;
            text.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    bad(format!(
                        "metadata '{key}' = '{text}' is not a positive integer"
                    ))
                })
        };
        let triple = |key: &str| -> Result<[f32; 3]> {
            let text = get(key)?;
            let values: Vec<f32> = text
                .split(',')
                .filter_map(|part| part.trim().parse::<f32>().ok())
                .collect();
            match values[..] {
                [a, b, c] if values.iter().all(|v| v.is_finite()) => Ok([a, b, c]),
                _ => Err(bad(format!(
                    "metadata '{key}' = '{text}' is not three numbers"
                ))),
            }
        };
        let threshold = |key: &str| -> Result<Option<f32>> {
            match props.get(key) {
                None => Ok(None),
                Some(text) => match text.trim().parse::<f32>() {
                    Ok(v) if (-1.0..=1.0).contains(&v) => Ok(Some(v)),
                    _ => Err(bad(format!(
                        "metadata '{key}' = '{text}' is not a cosine in [-1, 1]"
                    ))),
                },
            }
        };

        let version = get(keys::FORMAT_VERSION)?;
        if version.trim() != "1" {
            return Err(bad(format!(
                "metadata format version '{version}' is not supported (want 1)"
            )));
        }
        let layout = get(keys::LAYOUT)?;
        if layout != "NCHW" {
            return Err(bad(format!(
                "input layout '{layout}' is not supported (want NCHW)"
            )));
        }
        let color = get(keys::COLOR)?;
        if color != "RGB" {
            return Err(bad(format!(
                "input colour order '{color}' is not supported (want RGB)"
            )));
        }
        let id_text = get(keys::MODEL_ID)?;
        let model_id = keys::parse_model_id(id_text)
            .ok_or_else(|| bad(format!("model id '{id_text}' is not 16 hex digits")))?;
        let std = triple(keys::STD)?;
        if std.contains(&0.0) {
            return Err(bad(format!(
                "metadata '{}' contains a zero divisor",
                keys::STD
            )));
        }

        Ok(ModelMeta {
            model_id,
            input_height: number(keys::INPUT_HEIGHT)?,
            input_width: number(keys::INPUT_WIDTH)?,
            mean: triple(keys::MEAN)?,
            std,
            embedding_dim: number(keys::EMBEDDING_DIM)?,
            producer: props.get(keys::PRODUCER).cloned().unwrap_or_default(),
            quantization: props.get(keys::QUANTIZATION).cloned().unwrap_or_default(),
            threshold_far_1e2: threshold(keys::THRESHOLD_FAR_1E2)?,
            threshold_far_1e3: threshold(keys::THRESHOLD_FAR_1E3)?,
            threshold_far_1e4: threshold(keys::THRESHOLD_FAR_1E4)?,
        })
    }

    /// Values in one input image, `3 * height * width`.
    pub fn input_len(&self) -> usize {
        3 * self.input_height * self.input_width
    }
}

/// Decodes ONNX `bytes` (from `path`, named in errors) and collects its `metadata_props`.
pub fn read_proto(
    path: &Path,
    bytes: &[u8],
) -> Result<(tract_onnx::pb::ModelProto, HashMap<String, String>)> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| Error::Model {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })?;
    let props = proto
        .metadata_props
        .iter()
        .map(|entry| (entry.key.clone(), entry.value.clone()))
        .collect();
    Ok((proto, props))
}

/// A loaded, optimised embedding model.
pub struct FaceModel {
    meta: ModelMeta,
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
}

impl FaceModel {
    /// Loads `path`, checks its facelock metadata and optimises it for a [1, 3, H, W] f32 input.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading model", path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// Like [`FaceModel::load`], from the file's bytes; `path` only names the model in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let tract_error = |e: TractError| Error::Model {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let onnx = tract_onnx::onnx();
        let (proto, props) = read_proto(path, bytes)?;
        let meta = ModelMeta::from_props(path, &props)?;

        let input_shape = tvec![1, 3, meta.input_height, meta.input_width];
        let plan = onnx
            .model_for_proto_model(&proto)
            .and_then(|model| {
                model.with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), input_shape))
            })
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(tract_error)?;
        let model = FaceModel {
            meta,
            path: path.to_owned(),
            plan,
        };

        // One run now, so that a model whose output does not match its metadata fails at start.
        model.embed(&vec![0.0; model.meta.input_len()])?;
        tracing::info!(
            model = %path.display(),
            model_id = format_args!("{:016x}", model.meta.model_id),
            dim = model.meta.embedding_dim,
            "model loaded"
        );
        Ok(model)
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// Runs the model on one image, CHW f32 `[3, H, W]` already normalised with mean/std;
    /// returns the raw (not yet L2-normalised) embedding, `[embedding_dim]`.
    pub fn embed(&self, chw: &[f32]) -> Result<Vec<f32>> {
        let expected = self.meta.input_len();
        if chw.len() != expected {
            return Err(Error::Shape {
                what: "model input",
                got: chw.len(),
                expected,
            });
        }
        let (h, w) = (self.meta.input_height, self.meta.input_width);
        let input = Tensor::from_shape(&[1, 3, h, w], chw)
            .map_err(|e| Error::Inference(format!("{e:#}")))?;
        let outputs = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| Error::Inference(format!("{}: {e:#}", self.path.display())))?;
        let output = outputs
            .first()
            .ok_or_else(|| Error::Inference("the model produced no output".into()))?;
        let view = output
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(format!("output is not f32: {e:#}")))?;
        let values: Vec<f32> = view.iter().copied().collect();
        if values.len() != self.meta.embedding_dim {
            return Err(Error::Shape {
                what: "model output",
                got: values.len(),
                expected: self.meta.embedding_dim,
            });
        }
        Ok(values)
    }
}
