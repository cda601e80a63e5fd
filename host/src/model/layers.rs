//! Building blocks of the backbone: conv (dense, depthwise, pointwise) + BN + optional PReLU.
use candle_core::{Tensor, Var};

use super::depthwise::depthwise_conv2d;
use super::params::ParamStore;
use crate::Result;

/// Batch normalisation over the channel axis (dim 1) of [batch, channels, ...] tensors.
/// Training mode normalises with batch statistics and updates the running ones.
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

/// Momentum of the running statistics (PyTorch convention: new = (1-m)·old + m·batch).
const BN_MOMENTUM: f64 = 0.1;
/// Added to the variance before the square root.
const BN_EPS: f64 = 1e-5;

impl BatchNorm {
    /// Parameters `{prefix}.weight`, `.bias` (trainable), `.running_mean`, `.running_var`.
    pub fn new(store: &mut ParamStore, prefix: &str, channels: usize) -> Result<Self> {
        let weight = store.constant(&format!("{prefix}.weight"), &[channels], 1.0, true)?;
        let bias = store.constant(&format!("{prefix}.bias"), &[channels], 0.0, true)?;
        let running_mean = store.buffer(&format!("{prefix}.running_mean"), &[channels], 0.0)?;
        let running_var = store.buffer(&format!("{prefix}.running_var"), &[channels], 1.0)?;
        Ok(Self {
            weight,
            bias,
            running_mean,
            running_var,
        })
    }

    /// Normalises `x` [batch, channels] or [batch, channels, h, w].
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train && x.device().is_cpu() {
            let (y, mean, var) =
                super::fused::batch_norm_train(x, &self.weight, &self.bias, BN_EPS)?;
            let device = x.device();
            let (mean, var) = (Tensor::new(mean, device)?, Tensor::new(var, device)?);
            self.update_running(&mean, &var, x.elem_count() / x.dim(1)?)?;
            return Ok(y);
        }
        self.forward_reference(x, train)
    }

    /// The same computation with plain candle ops (any device; the reference in tests).
    pub fn forward_reference(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let channels = x.dim(1)?;
        let view: Vec<usize> = (0..x.rank())
            .map(|d| if d == 1 { channels } else { 1 })
            .collect();
        let reduce: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
        let (mean, var) = if train {
            let mean = x.mean_keepdim(reduce.as_slice())?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(reduce.as_slice())?;
            self.update_running(&mean, &var, x.elem_count() / channels)?;
            (mean, var)
        } else {
            let view = view.as_slice();
            (
                self.running_mean.reshape(view)?,
                self.running_var.reshape(view)?,
            )
        };
        let view = view.as_slice();
        let scale = (var + BN_EPS)?
            .sqrt()?
            .recip()?
            .broadcast_mul(&self.weight.reshape(view)?)?;
        let shift = self
            .bias
            .reshape(view)?
            .broadcast_sub(&mean.broadcast_mul(&scale)?)?;
        Ok(x.broadcast_mul(&scale)?.broadcast_add(&shift)?)
    }

    fn update_running(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let unbiased = count as f64 / (count.max(2) - 1) as f64;
        let mean = mean.detach().flatten_all()?;
        let var = (var.detach().flatten_all()? * unbiased)?;
        let new_mean =
            ((self.running_mean.as_tensor() * (1.0 - BN_MOMENTUM))? + (mean * BN_MOMENTUM)?)?;
        let new_var =
            ((self.running_var.as_tensor() * (1.0 - BN_MOMENTUM))? + (var * BN_MOMENTUM)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        Ok(())
    }
}

/// Per-channel parametric ReLU: `max(x, 0) + slope · min(x, 0)`, `slope` [channels].
pub fn prelu(x: &Tensor, slope: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        return Ok(super::fused::prelu(x, slope)?);
    }
    prelu_reference(x, slope)
}

/// PReLU with plain candle ops (any device; the reference in tests).
pub fn prelu_reference(x: &Tensor, slope: &Tensor) -> Result<Tensor> {
    let channels = slope.dim(0)?;
    let view: Vec<usize> = (0..x.rank())
        .map(|d| if d == 1 { channels } else { 1 })
        .collect();
    let negative = x
        .minimum(0f32)?
        .broadcast_mul(&slope.reshape(view.as_slice())?)?;
    Ok((x.relu()? + negative)?)
}

/// How a [`ConvUnit`] convolves.
#[derive(Clone, Copy, Debug)]
pub enum ConvKind {
    /// Dense k x k convolution (im2col + matrix product).
    Dense {
        /// Stride on both axes.
        stride: usize,
        /// Zero padding on both axes.
        padding: usize,
    },
    /// One k x k filter per channel (our depthwise op).
    Depthwise {
        /// Stride on both axes.
        stride: usize,
        /// Zero padding on both axes.
        padding: usize,
    },
    /// 1x1 convolution (one GEMM per image).
    Pointwise,
}

/// A convolution followed by BN and, optionally, PReLU. Weights `{prefix}.conv.weight`
/// [out, in/groups, k, k], `{prefix}.bn.*`, `{prefix}.prelu.weight` [out].
pub struct ConvUnit {
    kind: ConvKind,
    weight: Tensor,
    bn: BatchNorm,
    slope: Option<Tensor>,
}

impl ConvUnit {
    /// Creates the unit with Kaiming-uniform weights.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        kind: ConvKind,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        prelu: bool,
    ) -> Result<Self> {
        let per_filter = match kind {
            ConvKind::Depthwise { .. } => 1,
            _ => in_channels,
        };
        let fan_in = per_filter * kernel * kernel;
        let bound = (6.0 / fan_in as f32).sqrt();
        let shape = [out_channels, per_filter, kernel, kernel];
        let weight = store.uniform(&format!("{prefix}.conv.weight"), &shape, bound)?;
        let bn = BatchNorm::new(store, &format!("{prefix}.bn"), out_channels)?;
        let slope = if prelu {
            Some(store.constant(
                &format!("{prefix}.prelu.weight"),
                &[out_channels],
                0.25,
                true,
            )?)
        } else {
            None
        };
        Ok(Self {
            kind,
            weight,
            bn,
            slope,
        })
    }

    /// `x` [batch, in, h, w] to [batch, out, h', w'].
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = match self.kind {
            ConvKind::Dense { stride, padding } => {
                super::im2col::conv2d(x, &self.weight, stride, padding)?
            }
            ConvKind::Depthwise { stride, padding } => {
                depthwise_conv2d(x, &self.weight, stride, padding)?
            }
            ConvKind::Pointwise => super::pointwise::pointwise_conv(x, &self.weight)?,
        };
        let y = self.bn.forward(&y, train)?;
        match &self.slope {
            Some(slope) => prelu(&y, slope),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::max_diff;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut store = ParamStore::new(seed, &Device::Cpu);
        store.uniform("t", shape, 1.5).unwrap()
    }

    /// The fused kernels against candle autograd through plain ops, values and gradients.
    #[test]
    fn fused_batch_norm_and_prelu_match_candle_ops() {
        for shape in [[4usize, 3, 5, 6].as_slice(), [7, 5].as_slice()] {
            let channels = shape[1];
            let mut store = ParamStore::new(1, &Device::Cpu);
            let bn = BatchNorm::new(&mut store, "bn", channels).unwrap();
            let slope = store.uniform("slope", &[channels], 0.5).unwrap();
            let x = Var::from_tensor(&random(shape, 2)).unwrap();
            let probe = random(shape, 3);
            let run = |fused: bool| {
                let y = if fused {
                    bn.forward(&x, true).unwrap()
                } else {
                    bn.forward_reference(&x, true).unwrap()
                };
                let y = if fused {
                    prelu(&y, &slope).unwrap()
                } else {
                    prelu_reference(&y, &slope).unwrap()
                };
                let grads = (&y * &probe)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let get = |t: &Tensor| grads.get(t).unwrap().clone();
                (
                    y,
                    get(x.as_tensor()),
                    get(&bn.weight),
                    get(&bn.bias),
                    get(&slope),
                )
            };
            let (a, b) = (run(true), run(false));
            assert!(max_diff(&a.0, &b.0) < 1e-5);
            assert!(max_diff(&a.1, &b.1) < 1e-4, "dx {}", max_diff(&a.1, &b.1));
            assert!(max_diff(&a.2, &b.2) < 1e-4);
            assert!(max_diff(&a.3, &b.3) < 1e-4);
            assert!(max_diff(&a.4, &b.4) < 1e-4);
            // Both calls updated the running statistics identically.
            let mean = store.var("bn.running_mean").unwrap().as_tensor().clone();
            assert!(mean.to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()));
        }
    }
}
