//! Checkpoints: one directory per epoch with safetensors weights and a JSON config.
//!
//! Layout of `<out>/checkpoints/epoch-NNNN/`:
//! - `config.json`: [`CheckpointConfig`] (model layout, input normalisation, head, progress),
//! - `model.safetensors`: backbone parameters and BN buffers (names in [`MobileFaceNet`]),
//! - `head.safetensors`: classifier `head.weight` [classes, dim] (+ `head.bias` [classes]),
//! - `optimizer.safetensors`: `momentum.{name}` for every trainable tensor.
//!
//! A directory is written as `epoch-NNNN.tmp` and renamed when complete, so an interrupted
//! or failed run never leaves a half-written checkpoint under the final name.
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::model::{MobileFaceNet, ModelConfig};
use crate::{Error, Result};

/// Which classification loss a head trains with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Additive-margin softmax on cosine logits: s·(cos θ − m) at the target.
    AmSoftmax,
    /// Cosine logits scaled by s, no margin.
    NormSoftmax,
    /// Plain linear layer with bias and softmax cross-entropy.
    Softmax,
}

/// The classifier head a checkpoint was trained with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// The loss.
    pub loss: LossKind,
    /// Logit scale s (cosine heads).
    pub scale: f32,
    /// Final additive margin m (AM-Softmax).
    pub margin: f32,
    /// Number of training identities.
    pub classes: usize,
}

/// How images must be prepared for the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Tensor layout: always "NCHW".
    pub layout: String,
    /// Channel order: always "RGB".
    pub channels: String,
    /// Subtracted from pixel values in [0, 1].
    pub mean: f32,
    /// Divides the centred values.
    pub std: f32,
}

impl Default for InputSpec {
    fn default() -> Self {
        Self {
            layout: "NCHW".into(),
            channels: "RGB".into(),
            mean: 0.5,
            std: 0.5,
        }
    }
}

/// Contents of `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// Always "facelock-checkpoint".
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// The backbone layout.
    pub model: ModelConfig,
    /// Input preparation.
    pub input: InputSpec,
    /// Trainable backbone parameters (computed).
    pub parameter_count: usize,
    /// Multiply-adds of one forward pass (computed).
    pub multiply_adds: usize,
    /// The training head.
    pub head: HeadConfig,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: usize,
    /// Seed of the run.
    pub seed: u64,
}

/// Format name written to `config.json`.
pub const FORMAT: &str = "facelock-checkpoint";

/// Directory of the checkpoint after `epoch` epochs.
pub fn epoch_dir(out: &Path, epoch: usize) -> PathBuf {
    out.join("checkpoints").join(format!("epoch-{epoch:04}"))
}

/// The newest complete checkpoint directory under `out`, if any.
pub fn latest(out: &Path) -> Result<Option<PathBuf>> {
    let root = out.join("checkpoints");
    if !root.exists() {
        return Ok(None);
    }
    let entries = fs::read_dir(&root).map_err(|e| Error::io(&root, e))?;
    let mut best: Option<(usize, PathBuf)> = None;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(&root, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(epoch) = name
            .strip_prefix("epoch-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| epoch > *b) {
            best = Some((epoch, path));
        }
    }
    Ok(best.map(|(_, path)| path))
}

/// Writes a checkpoint directory atomically (temp dir + rename).
pub fn save(
    dir: &Path,
    config: &CheckpointConfig,
    model: &MobileFaceNet,
    head: &crate::model::ParamStore,
    optimizer: &std::collections::HashMap<String, candle_core::Tensor>,
) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let json =
        serde_json::to_string_pretty(config).map_err(|e| Error::InvalidInput(e.to_string()))?;
    fs::write(tmp.join("config.json"), json).map_err(|e| Error::io(tmp.join("config.json"), e))?;
    model.params().save(&tmp.join("model.safetensors"))?;
    head.save(&tmp.join("head.safetensors"))?;
    let path = tmp.join("optimizer.safetensors");
    candle_core::safetensors::save(optimizer, &path)
        .map_err(|e| Error::InvalidInput(format!("cannot write '{}': {e}", path.display())))?;
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
}

/// Reads `config.json` from a checkpoint directory (or the directory of a given file).
pub fn read_config(path: &Path) -> Result<(PathBuf, CheckpointConfig)> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let file = dir.join("config.json");
    let text = fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let config: CheckpointConfig = serde_json::from_str(&text).map_err(|e| Error::Parse {
        path: file.clone(),
        line: e.line(),
        reason: e.to_string(),
    })?;
    if config.format != FORMAT || config.version != 1 {
        return Err(Error::Unsupported(format!(
            "'{}' is format '{}' version {}, expected '{FORMAT}' version 1",
            file.display(),
            config.format,
            config.version
        )));
    }
    Ok((dir, config))
}

/// Loads the backbone of a checkpoint (directory, or any file inside it) onto `device`.
/// An `.onnx` model is not read here yet: it returns [`Error::Unsupported`].
pub fn load_model(path: &Path, device: &Device) -> Result<(MobileFaceNet, CheckpointConfig)> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        return Err(Error::Unsupported(format!(
            "'{}': evaluating ONNX models is not implemented yet; pass a checkpoint directory",
            path.display()
        )));
    }
    let (dir, config) = read_config(path)?;
    let model = MobileFaceNet::new(&config.model, 0, device)?;
    model.params().load(&dir.join("model.safetensors"))?;
    Ok((model, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_models_are_a_named_gap() {
        let error = load_model(Path::new("model.onnx"), &Device::Cpu)
            .err()
            .unwrap();
        assert!(matches!(error, Error::Unsupported(_)), "{error}");
    }

    #[test]
    fn missing_checkpoint_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = load_model(dir.path(), &Device::Cpu).err().unwrap();
        assert!(error.to_string().contains("config.json"), "{error}");
    }
}
