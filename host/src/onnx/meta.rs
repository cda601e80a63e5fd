//! facelock's ONNX `metadata_props`: what the exporter writes and every loader checks.
use std::path::Path;

use facelock_shared::model_meta as key;
use sha2::{Digest, Sha256};
use tract_onnx::pb::ModelProto;

use crate::{Error, Result};

/// Numeric format of the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantization {
    /// Float weights and activations.
    F32,
    /// int8 weights (per-channel) and activations in QuantizeLinear/DequantizeLinear pairs.
    Int8Qdq,
}

impl Quantization {
    /// The metadata value (`"f32"` or `"int8-qdq"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::Int8Qdq => "int8-qdq",
        }
    }
}

/// Cosine thresholds measured by `facelock eval` at fixed false accept rates.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Threshold at FAR 1e-2.
    pub far_1e2: f64,
    /// Threshold at FAR 1e-3.
    pub far_1e3: f64,
    /// Threshold at FAR 1e-4.
    pub far_1e4: f64,
    /// The pairs file they were measured on, e.g. `lfw pairsDevTest.txt (1000 pairs)`.
    pub source: String,
}

/// Everything facelock records about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelMeta {
    /// Input height in pixels.
    pub input_height: usize,
    /// Input width in pixels.
    pub input_width: usize,
    /// Per-channel mean subtracted from pixels in [0, 1] (RGB).
    pub mean: [f32; 3],
    /// Per-channel divisor applied after the mean (RGB).
    pub std: [f32; 3],
    /// Embedding dimension.
    pub embedding_dim: usize,
    /// Hash of the weights, see [`model_id`].
    pub model_id: u64,
    /// Producer and version, e.g. `facelock 0.1.0`.
    pub producer: String,
    /// Numeric format.
    pub quantization: Quantization,
    /// Verification thresholds, when the model has been evaluated.
    pub thresholds: Option<Thresholds>,
}

/// The value stored under `key` in `model`'s `metadata_props`, if any.
pub fn lookup<'a>(model: &'a ModelProto, key: &str) -> Option<&'a str> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// The model id: the first 8 bytes of SHA-256 over the weight bytes, big-endian.
pub fn model_id<'a>(weights: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hasher = Sha256::new();
    for bytes in weights {
        hasher.update(bytes);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// This build's producer string.
pub fn producer() -> String {
    format!("facelock {}", env!("CARGO_PKG_VERSION"))
}

fn list(values: &[f32; 3]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl ModelMeta {
    /// Key/value pairs for `metadata_props`, keys from `facelock_shared::model_meta`.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let mut props = vec![
            (key::FORMAT_VERSION, "1".to_string()),
            (key::INPUT_HEIGHT, self.input_height.to_string()),
            (key::INPUT_WIDTH, self.input_width.to_string()),
            (key::LAYOUT, "NCHW".into()),
            (key::COLOR, "RGB".into()),
            (key::MEAN, list(&self.mean)),
            (key::STD, list(&self.std)),
            (key::EMBEDDING_DIM, self.embedding_dim.to_string()),
            (key::MODEL_ID, format!("{:016x}", self.model_id)),
            (key::PRODUCER, self.producer.clone()),
            (key::QUANTIZATION, self.quantization.as_str().into()),
        ];
        if let Some(t) = &self.thresholds {
            props.push((key::THRESHOLD_FAR_1E2, t.far_1e2.to_string()));
            props.push((key::THRESHOLD_FAR_1E3, t.far_1e3.to_string()));
            props.push((key::THRESHOLD_FAR_1E4, t.far_1e4.to_string()));
            props.push((key::THRESHOLD_SOURCE, t.source.clone()));
        }
        props.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Reads and checks the metadata of `model` (loaded from `path`, named in errors).
    pub fn from_model(model: &ModelProto, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Onnx {
            path: path.to_path_buf(),
            reason,
        };
        let get = |name: &str| lookup(model, name);
        let require = |name: &str| {
            get(name).ok_or_else(|| {
                bad(format!(
                    "not a facelock model: metadata key '{name}' is missing"
                ))
            })
        };
        let number = |name: &str| -> Result<usize> {
            let text = require(name)?;
            text.parse()
                .map_err(|_| bad(format!("metadata '{name}' = '{text}' is not a count")))
        };
        let triple = |name: &str| -> Result<[f32; 3]> {
            let text = require(name)?;
            let values: Vec<f32> = text
                .split(',')
                .filter_map(|v| v.trim().parse().ok())
                .collect();
            values
                .try_into()
                .map_err(|_| bad(format!("metadata '{name}' = '{text}' is not 3 numbers")))
        };
        let version = require(key::FORMAT_VERSION)?;
        if version != "1" {
            return Err(Error::Unsupported(format!(
                "'{}': facelock metadata format version {version} (this build reads 1)",
                path.display()
            )));
        }
        for (name, expected) in [(key::LAYOUT, "NCHW"), (key::COLOR, "RGB")] {
            let value = require(name)?;
            if value != expected {
                return Err(Error::Unsupported(format!(
                    "'{}': metadata '{name}' is '{value}', only '{expected}' is supported",
                    path.display()
                )));
            }
        }
        let id_text = require(key::MODEL_ID)?;
        let model_id = facelock_shared::model_meta::parse_model_id(id_text).ok_or_else(|| {
            bad(format!(
                "metadata model id '{id_text}' is not 16 hex digits"
            ))
        })?;
        let quantization = match require(key::QUANTIZATION)? {
            "f32" => Quantization::F32,
            "int8-qdq" => Quantization::Int8Qdq,
            other => return Err(bad(format!("unknown quantization '{other}'"))),
        };
        let thresholds = match get(key::THRESHOLD_FAR_1E2) {
            None => None,
            Some(_) => {
                let value = |name: &str| -> Result<f64> {
                    let text = require(name)?;
                    text.parse()
                        .map_err(|_| bad(format!("metadata '{name}' = '{text}' is not a number")))
                };
                Some(Thresholds {
                    far_1e2: value(key::THRESHOLD_FAR_1E2)?,
                    far_1e3: value(key::THRESHOLD_FAR_1E3)?,
                    far_1e4: value(key::THRESHOLD_FAR_1E4)?,
                    source: require(key::THRESHOLD_SOURCE)?.to_string(),
                })
            }
        };
        Ok(Self {
            input_height: number(key::INPUT_HEIGHT)?,
            input_width: number(key::INPUT_WIDTH)?,
            mean: triple(key::MEAN)?,
            std: triple(key::STD)?,
            embedding_dim: number(key::EMBEDDING_DIM)?,
            model_id,
            producer: require(key::PRODUCER)?.to_string(),
            quantization,
            thresholds,
        })
    }

    /// Replaces the `metadata_props` of `model` with these.
    pub fn write_into(&self, model: &mut ModelProto) {
        model.metadata_props = self
            .to_props()
            .into_iter()
            .map(|(key, value)| tract_onnx::pb::StringStringEntryProto { key, value })
            .collect();
    }
}
