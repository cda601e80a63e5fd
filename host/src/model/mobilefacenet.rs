//! The MobileFaceNet-style backbone: image batch in, 128-d (configurable) embedding out.
use candle_core::{Device, Tensor};

use super::config::ModelConfig;
use super::layers::{BatchNorm, ConvKind, ConvUnit};
use super::params::ParamStore;
use crate::{Error, Result};

/// Inverted residual: 1x1 expand + PReLU, 3x3 depthwise + PReLU, 1x1 linear projection,
/// with a skip connection when shapes allow.
struct Bottleneck {
    expand: ConvUnit,
    depthwise: ConvUnit,
    project: ConvUnit,
    residual: bool,
}

impl Bottleneck {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.expand.forward(x, train)?;
        let y = self.depthwise.forward(&y, train)?;
        let y = self.project.forward(&y, train)?;
        if self.residual {
            Ok((y + x)?)
        } else {
            Ok(y)
        }
    }
}

/// The backbone with its parameters. Tensor names (in `model.safetensors`):
/// `stem`, `stem_dw`, `blocks.{i}.{expand,depthwise,project}`, `final_conv`, `gdc`, each with
/// `.conv.weight` [out, in/groups, k, k] and `.bn.{weight,bias,running_mean,running_var}`
/// [out] (+ `.prelu.weight` [out] where activated), then `embedding.linear.weight`
/// [dim, channels] and `embedding.bn.*` [dim].
pub struct MobileFaceNet {
    config: ModelConfig,
    store: ParamStore,
    stem: ConvUnit,
    stem_dw: ConvUnit,
    blocks: Vec<Bottleneck>,
    final_conv: ConvUnit,
    gdc: ConvUnit,
    linear: Tensor,
    embedding_bn: BatchNorm,
}

impl MobileFaceNet {
    /// Builds the network with seeded random weights on `device`.
    pub fn new(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut store = ParamStore::new(seed, device);
        let s = &mut store;
        let stem_channels = config.scaled(config.stem_channels);
        let dense = ConvKind::Dense {
            stride: 2,
            padding: 1,
        };
        let stem = ConvUnit::new(
            s,
            "stem",
            dense,
            config.input_channels,
            stem_channels,
            3,
            true,
        )?;
        let depthwise = |stride| ConvKind::Depthwise { stride, padding: 1 };
        let stem_dw = ConvUnit::new(
            s,
            "stem_dw",
            depthwise(1),
            stem_channels,
            stem_channels,
            3,
            true,
        )?;

        let mut blocks = Vec::new();
        let mut channels = stem_channels;
        for stage in &config.stages {
            let out = config.scaled(stage.channels);
            for repeat in 0..stage.repeats {
                let stride = if repeat == 0 { stage.stride } else { 1 };
                let hidden = channels * stage.expansion;
                let prefix = format!("blocks.{}", blocks.len());
                let pw = ConvKind::Pointwise;
                blocks.push(Bottleneck {
                    expand: ConvUnit::new(
                        s,
                        &format!("{prefix}.expand"),
                        pw,
                        channels,
                        hidden,
                        1,
                        true,
                    )?,
                    depthwise: ConvUnit::new(
                        s,
                        &format!("{prefix}.depthwise"),
                        depthwise(stride),
                        hidden,
                        hidden,
                        3,
                        true,
                    )?,
                    project: ConvUnit::new(
                        s,
                        &format!("{prefix}.project"),
                        pw,
                        hidden,
                        out,
                        1,
                        false,
                    )?,
                    residual: stride == 1 && channels == out,
                });
                channels = out;
            }
        }

        let head = config.scaled(config.head_channels);
        let final_conv = ConvUnit::new(
            s,
            "final_conv",
            ConvKind::Pointwise,
            channels,
            head,
            1,
            true,
        )?;
        let side = config.final_map_size();
        let global = ConvKind::Depthwise {
            stride: 1,
            padding: 0,
        };
        let gdc = ConvUnit::new(s, "gdc", global, head, head, side, false)?;
        let bound = (6.0 / head as f32).sqrt();
        let linear = s.uniform(
            "embedding.linear.weight",
            &[config.embedding_dim, head],
            bound,
        )?;
        let embedding_bn = BatchNorm::new(s, "embedding.bn", config.embedding_dim)?;
        Ok(Self {
            config: config.clone(),
            store,
            stem,
            stem_dw,
            blocks,
            final_conv,
            gdc,
            linear,
            embedding_bn,
        })
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Parameters and BN buffers.
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// Embeddings [batch, dim], not normalised, for images [batch, 3, size, size]
    /// (CHW, mean = std = 0.5). `train` uses batch statistics in BN and updates the running ones.
    pub fn forward(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let c = &self.config;
        let expected = [c.input_channels, c.input_size, c.input_size];
        if images.rank() != 4 || images.dims()[1..] != expected {
            return Err(Error::InvalidInput(format!(
                "model input is {:?}, expected [batch, {}, {}, {}]",
                images.dims(),
                expected[0],
                expected[1],
                expected[2]
            )));
        }
        let mut x = self.stem.forward(images, train)?;
        x = self.stem_dw.forward(&x, train)?;
        for block in &self.blocks {
            x = block.forward(&x, train)?;
        }
        x = self.final_conv.forward(&x, train)?;
        x = self.gdc.forward(&x, train)?.flatten_from(1)?;
        let x = x.matmul(&self.linear.t()?)?;
        self.embedding_bn.forward(&x, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainable_count_matches_the_computed_count() {
        for config in [ModelConfig::tiny(), ModelConfig::default()] {
            let model = MobileFaceNet::new(&config, 0, &Device::Cpu).unwrap();
            assert_eq!(model.params().trainable_count(), config.parameter_count());
        }
    }

    #[test]
    fn forward_gives_one_embedding_per_image() {
        let config = ModelConfig::tiny();
        let model = MobileFaceNet::new(&config, 0, &Device::Cpu).unwrap();
        let images = Tensor::zeros((3, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        let embeddings = model.forward(&images, true).unwrap();
        assert_eq!(embeddings.dims(), [3, config.embedding_dim]);
        let wrong = Tensor::zeros((3, 3, 30, 30), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(model.forward(&wrong, false).is_err());
    }
}
