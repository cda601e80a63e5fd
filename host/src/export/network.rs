//! The exporter's view of a backbone: an ordered list of layers with their weights.
//!
//! The candle network describes itself as a [`Network`]; the exporter folds batch
//! normalisation into the preceding conv or linear layer and writes the result as ONNX.
use crate::{Error, Result};

/// A 2-D convolution, NCHW, square kernel, symmetric zero padding.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Name used for the ONNX node and its initializers (e.g. `blocks.3.expand`).
    pub name: String,
    /// Weights, [out, in / groups, kernel, kernel], row-major.
    pub weight: Vec<f32>,
    /// Output channels.
    pub out_channels: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride on both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Channel groups: 1 for dense, `in_channels` for depthwise.
    pub groups: usize,
    /// Per-output-channel bias, [out], if any.
    pub bias: Option<Vec<f32>>,
}

/// Batch normalisation in inference mode: `(x - mean) / sqrt(var + eps) * gamma + beta`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Scale, [channels].
    pub gamma: Vec<f32>,
    /// Shift, [channels].
    pub beta: Vec<f32>,
    /// Running mean, [channels].
    pub mean: Vec<f32>,
    /// Running variance, [channels].
    pub var: Vec<f32>,
    /// Added to the variance.
    pub eps: f32,
}

/// A fully connected layer `y = x Wᵀ + b`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Name used for the ONNX node and its initializers.
    pub name: String,
    /// Weights, [out, in], row-major.
    pub weight: Vec<f32>,
    /// Output features.
    pub out_features: usize,
    /// Input features.
    pub in_features: usize,
    /// Bias, [out], if any.
    pub bias: Option<Vec<f32>>,
}

/// One step of the network.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// Convolution.
    Conv(Conv),
    /// Batch normalisation of the previous layer's output channels.
    BatchNorm(BatchNorm),
    /// Per-channel PReLU with these slopes, [channels].
    Prelu(Vec<f32>),
    /// `x + f(x)` where `f` is the inner sequence.
    Residual(Vec<Layer>),
    /// [batch, c, h, w] to [batch, c·h·w].
    Flatten,
    /// Fully connected layer on [batch, features].
    Linear(Linear),
}

/// A whole backbone as the exporter sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Input channels (3, RGB).
    pub input_channels: usize,
    /// Input side in pixels (square).
    pub input_size: usize,
    /// Output features per image.
    pub embedding_dim: usize,
    /// Layers in order.
    pub layers: Vec<Layer>,
}

impl Network {
    /// The same network with every [`Layer::BatchNorm`] folded into the conv or linear layer
    /// right before it (`w' = w·γ/σ`, `b' = (b − μ)·γ/σ + β`). A BN anywhere else is an error.
    pub fn fold_batch_norm(&self) -> Result<Network> {
        Ok(Network {
            layers: fold_sequence(&self.layers)?,
            ..self.clone()
        })
    }

    /// Every learned value in order (weights, then bias, then PReLU slopes), for hashing.
    pub fn weight_count(&self) -> usize {
        fn count(layers: &[Layer]) -> usize {
            layers
                .iter()
                .map(|layer| match layer {
                    Layer::Conv(c) => c.weight.len() + c.bias.as_ref().map_or(0, Vec::len),
                    Layer::Linear(l) => l.weight.len() + l.bias.as_ref().map_or(0, Vec::len),
                    Layer::BatchNorm(bn) => 4 * bn.gamma.len(),
                    Layer::Prelu(slope) => slope.len(),
                    Layer::Residual(inner) => count(inner),
                    Layer::Flatten => 0,
                })
                .sum()
        }
        count(&self.layers)
    }
}

fn fold_sequence(layers: &[Layer]) -> Result<Vec<Layer>> {
    let mut folded: Vec<Layer> = Vec::with_capacity(layers.len());
    for layer in layers {
        match layer {
            Layer::BatchNorm(bn) => match folded.last_mut() {
                Some(Layer::Conv(conv)) => fold_into(
                    &conv.name.clone(),
                    &mut conv.weight,
                    &mut conv.bias,
                    conv.out_channels,
                    bn,
                )?,
                Some(Layer::Linear(linear)) => fold_into(
                    &linear.name.clone(),
                    &mut linear.weight,
                    &mut linear.bias,
                    linear.out_features,
                    bn,
                )?,
                _ => {
                    return Err(Error::Unsupported(
                        "batch norm that does not follow a conv or linear layer".into(),
                    ))
                }
            },
            Layer::Residual(inner) => folded.push(Layer::Residual(fold_sequence(inner)?)),
            other => folded.push(other.clone()),
        }
    }
    Ok(folded)
}

/// Folds `bn` into weights laid out [out, ...] and their bias.
fn fold_into(
    name: &str,
    weight: &mut [f32],
    bias: &mut Option<Vec<f32>>,
    out: usize,
    bn: &BatchNorm,
) -> Result<()> {
    if [bn.gamma.len(), bn.beta.len(), bn.mean.len(), bn.var.len()] != [out; 4] {
        return Err(Error::InvalidInput(format!(
            "batch norm after '{name}' has {} channels, the layer has {out}",
            bn.gamma.len()
        )));
    }
    let per_channel = weight.len() / out;
    let mut new_bias = bias.take().unwrap_or_else(|| vec![0.0; out]);
    for c in 0..out {
        // In f64 so that the folded weights are as close to the unfolded model as f32 allows.
        let scale = bn.gamma[c] as f64 / (bn.var[c] as f64 + bn.eps as f64).sqrt();
        for w in &mut weight[c * per_channel..(c + 1) * per_channel] {
            *w = (*w as f64 * scale) as f32;
        }
        new_bias[c] = ((new_bias[c] as f64 - bn.mean[c] as f64) * scale + bn.beta[c] as f64) as f32;
    }
    *bias = Some(new_bias);
    Ok(())
}
