//! The trainer's MobileFaceNet (and its checkpoints) as the exporter's [`Network`].
use std::path::Path;

use candle_core::Device;

use super::network::{BatchNorm, Conv, Layer, Linear, Network};
use super::to_onnx::Normalisation;
use crate::model::{MobileFaceNet, ModelConfig};
use crate::train::checkpoint::{self, CheckpointConfig};
use crate::{Error, Result};

/// BN epsilon of the trainer's batch norm (`model::layers`).
pub const BN_EPS: f32 = 1e-5;

struct Reader<'a> {
    model: &'a MobileFaceNet,
}

impl Reader<'_> {
    fn values(&self, name: &str) -> Result<Vec<f32>> {
        let var = self.model.params().var(name).ok_or_else(|| {
            Error::InvalidInput(format!("the backbone has no parameter '{name}'"))
        })?;
        Ok(var
            .as_tensor()
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?)
    }

    fn batch_norm(&self, prefix: &str) -> Result<Layer> {
        Ok(Layer::BatchNorm(BatchNorm {
            gamma: self.values(&format!("{prefix}.weight"))?,
            beta: self.values(&format!("{prefix}.bias"))?,
            mean: self.values(&format!("{prefix}.running_mean"))?,
            var: self.values(&format!("{prefix}.running_var"))?,
            eps: BN_EPS,
        }))
    }

    /// `{prefix}.conv` + `{prefix}.bn` (+ `{prefix}.prelu`).
    #[allow(clippy::too_many_arguments)]
    fn unit(
        &self,
        prefix: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        depthwise: bool,
        prelu: bool,
    ) -> Result<Vec<Layer>> {
        let weight = self.values(&format!("{prefix}.conv.weight"))?;
        let groups = if depthwise { cin } else { 1 };
        let expected = cout * (cin / groups) * kernel * kernel;
        if weight.len() != expected {
            return Err(Error::InvalidInput(format!(
                "'{prefix}.conv.weight' has {} values, the layout needs {expected}",
                weight.len()
            )));
        }
        let conv = Conv {
            name: prefix.to_string(),
            weight,
            out_channels: cout,
            in_channels: cin,
            kernel,
            stride,
            padding,
            groups,
            bias: None,
        };
        let mut layers = vec![Layer::Conv(conv), self.batch_norm(&format!("{prefix}.bn"))?];
        if prelu {
            layers.push(Layer::Prelu(
                self.values(&format!("{prefix}.prelu.weight"))?,
            ));
        }
        Ok(layers)
    }
}

/// The layers of `model` in order, with their current weights (BN not yet folded).
/// Mirrors the construction in `MobileFaceNet::new`.
pub fn network_from_model(model: &MobileFaceNet) -> Result<Network> {
    let c: &ModelConfig = model.config();
    let r = Reader { model };
    let mut layers = Vec::new();
    let stem = c.scaled(c.stem_channels);
    layers.extend(r.unit("stem", c.input_channels, stem, 3, 2, 1, false, true)?);
    layers.extend(r.unit("stem_dw", stem, stem, 3, 1, 1, true, true)?);
    let mut channels = stem;
    let mut index = 0;
    for stage in &c.stages {
        let out = c.scaled(stage.channels);
        for repeat in 0..stage.repeats {
            let stride = if repeat == 0 { stage.stride } else { 1 };
            let hidden = channels * stage.expansion;
            let prefix = format!("blocks.{index}");
            let mut body = r.unit(
                &format!("{prefix}.expand"),
                channels,
                hidden,
                1,
                1,
                0,
                false,
                true,
            )?;
            body.extend(r.unit(
                &format!("{prefix}.depthwise"),
                hidden,
                hidden,
                3,
                stride,
                1,
                true,
                true,
            )?);
            body.extend(r.unit(
                &format!("{prefix}.project"),
                hidden,
                out,
                1,
                1,
                0,
                false,
                false,
            )?);
            if stride == 1 && channels == out {
                layers.push(Layer::Residual(body));
            } else {
                layers.extend(body);
            }
            channels = out;
            index += 1;
        }
    }
    let head = c.scaled(c.head_channels);
    layers.extend(r.unit("final_conv", channels, head, 1, 1, 0, false, true)?);
    let side = c.final_map_size();
    layers.extend(r.unit("gdc", head, head, side, 1, 0, true, false)?);
    layers.push(Layer::Flatten);
    layers.push(Layer::Linear(Linear {
        name: "embedding.linear".into(),
        weight: r.values("embedding.linear.weight")?,
        out_features: c.embedding_dim,
        in_features: head,
        bias: None,
    }));
    layers.push(r.batch_norm("embedding.bn")?);
    Ok(Network {
        input_channels: c.input_channels,
        input_size: c.input_size,
        embedding_dim: c.embedding_dim,
        layers,
    })
}

/// A checkpoint directory (or a file in it) as a [`Network`] plus its input normalisation.
/// Tensors that do not fit the recorded layout (another architecture) are refused with the
/// tensor named.
pub fn load_checkpoint(path: &Path) -> Result<(Network, Normalisation, CheckpointConfig)> {
    let (model, config) = checkpoint::load_model(path, &Device::Cpu)?;
    if config.input.layout != "NCHW" || config.input.channels != "RGB" {
        return Err(Error::Unsupported(format!(
            "checkpoint '{}' takes {} {} input; the exporter writes NCHW RGB",
            path.display(),
            config.input.layout,
            config.input.channels
        )));
    }
    let normalisation = Normalisation {
        mean: [config.input.mean; 3],
        std: [config.input.std; 3],
    };
    Ok((network_from_model(&model)?, normalisation, config))
}
