//! Fused CPU kernels for training-mode batch norm and PReLU, with their own backward.
//!
//! Written with candle ops, batch norm is about ten passes over the activations forward and
//! more backward; these kernels make two passes each way. Tensors are [batch, channels, ...]
//! and must be f32; the caller makes them contiguous.
use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("fused kernel needs contiguous tensors"),
    }
}

/// (batch, channels, plane) of a [batch, channels, ...] shape.
fn split(dims: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        bail!("expected [batch, channels, ...], got {dims:?}")
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Per-channel sums over batch and plane of `f(index in channel block, value)` pairs.
fn channel_sums(
    dims: &[usize],
    f: impl Fn(usize, usize, usize) -> (f64, f64) + Sync,
) -> candle_core::Result<Vec<(f64, f64)>> {
    let (batch, channels, plane) = split(dims)?;
    Ok((0..channels)
        .into_par_iter()
        .map(|c| {
            let mut acc = (0f64, 0f64);
            for b in 0..batch {
                let start = (b * channels + c) * plane;
                let (p, q) = f(c, start, start + plane);
                acc = (acc.0 + p, acc.1 + q);
            }
            acc
        })
        .collect())
}

/// Training-mode batch norm of `x` with `weight` and `bias` [channels]. Returns the output
/// and the batch mean and biased variance per channel.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<(Tensor, Vec<f32>, Vec<f32>)> {
    let x = x.contiguous()?;
    let values = x.flatten_all()?;
    let stats = values
        .apply_op1_no_bwd(&ChannelStats {
            dims: x.dims().to_vec(),
        })?
        .to_vec1::<f32>()?;
    let channels = x.dim(1)?;
    let (mean, var) = (stats[..channels].to_vec(), stats[channels..].to_vec());
    let inv_std: Vec<f32> = var
        .iter()
        .map(|v| 1.0 / (*v as f64 + eps).sqrt() as f32)
        .collect();
    let op = BatchNormTrain {
        mean: Arc::new(mean.clone()),
        inv_std: Arc::new(inv_std),
    };
    let y = x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    Ok((y, mean, var))
}

/// Mean and biased variance per channel, as [2 · channels] (means first).
struct ChannelStats {
    dims: Vec<usize>,
}

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "channel-stats"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(storage, layout)?;
        let (batch, channels, plane) = split(&self.dims)?;
        let count = (batch * plane) as f64;
        let sums = channel_sums(&self.dims, |_, a, b| {
            let block = &x[a..b];
            (block.iter().map(|&v| v as f64).sum(), 0.0)
        })?;
        let means: Vec<f64> = sums.iter().map(|s| s.0 / count).collect();
        let squares = channel_sums(&self.dims, |c, a, b| {
            let m = means[c];
            (x[a..b].iter().map(|&v| (v as f64 - m).powi(2)).sum(), 0.0)
        })?;
        let mut out: Vec<f32> = means.iter().map(|&m| m as f32).collect();
        out.extend(squares.iter().map(|s| (s.0 / count) as f32));
        Ok((CpuStorage::F32(out), Shape::from(2 * channels)))
    }
}

/// y = (x − mean) · inv_std · weight + bias, with mean and inv_std fixed by the struct.
struct BatchNormTrain {
    mean: Arc<Vec<f32>>,
    inv_std: Arc<Vec<f32>>,
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, weight, bias) = (
            contiguous(s1, l1)?,
            contiguous(s2, l2)?,
            contiguous(s3, l3)?,
        );
        let (_, channels, plane) = split(l1.dims())?;
        if weight.len() != channels || bias.len() != channels || self.mean.len() != channels {
            bail!(
                "batch norm: {channels} channels but {} weights",
                weight.len()
            )
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(plane.max(1))
            .enumerate()
            .for_each(|(index, y)| {
                let c = index % channels;
                let scale = self.inv_std[c] * weight[c];
                let shift = bias[c] - self.mean[c] * scale;
                let x = &x[index * plane..][..plane];
                y.iter_mut()
                    .zip(x)
                    .for_each(|(y, &x)| *y = x * scale + shift);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let sums_op = BatchNormGradSums {
            mean: self.mean.clone(),
            inv_std: self.inv_std.clone(),
        };
        let sums = x.apply_op2_no_bwd(&grad, &sums_op)?;
        let channels = x.dim(1)?;
        let grad_bias = sums.narrow(0, 0, channels)?;
        let grad_weight = sums.narrow(0, channels, channels)?;
        let input_op = BatchNormGradInput {
            mean: self.mean.clone(),
            inv_std: self.inv_std.clone(),
            weight: Arc::new(weight.to_vec1::<f32>()?),
            sums: Arc::new(sums.to_vec1::<f32>()?),
        };
        let grad_input = x.apply_op2_no_bwd(&grad, &input_op)?;
        Ok((Some(grad_input), Some(grad_weight), Some(grad_bias)))
    }
}

/// Σ dy and Σ dy · x̂ per channel, as [2 · channels]; arguments (x, grad).
struct BatchNormGradSums {
    mean: Arc<Vec<f32>>,
    inv_std: Arc<Vec<f32>>,
}

impl CustomOp2 for BatchNormGradSums {
    fn name(&self) -> &'static str {
        "batch-norm-grad-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, grad) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        if l1.dims() != l2.dims() {
            bail!(
                "batch norm backward: x {:?} and grad {:?} differ",
                l1.dims(),
                l2.dims()
            )
        }
        let sums = channel_sums(l1.dims(), |c, a, b| {
            let (m, s) = (self.mean[c], self.inv_std[c]);
            x[a..b]
                .iter()
                .zip(&grad[a..b])
                .fold((0f64, 0f64), |(p, q), (&x, &g)| {
                    (p + g as f64, q + (g * (x - m) * s) as f64)
                })
        })?;
        let mut out: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        out.extend(sums.iter().map(|s| s.1 as f32));
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// dx = weight · inv_std · (dy − Σdy/N − x̂ · Σ(dy·x̂)/N); arguments (x, grad).
struct BatchNormGradInput {
    mean: Arc<Vec<f32>>,
    inv_std: Arc<Vec<f32>>,
    weight: Arc<Vec<f32>>,
    sums: Arc<Vec<f32>>,
}

impl CustomOp2 for BatchNormGradInput {
    fn name(&self) -> &'static str {
        "batch-norm-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, grad) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (batch, channels, plane) = split(l1.dims())?;
        let count = (batch * plane) as f32;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(plane.max(1))
            .enumerate()
            .for_each(|(index, dx)| {
                let c = index % channels;
                let (m, s) = (self.mean[c], self.inv_std[c]);
                let mean_dy = self.sums[c] / count;
                let mean_dy_xhat = self.sums[channels + c] / count;
                let k = self.weight[c] * s;
                let range = index * plane..(index + 1) * plane;
                for ((dx, &x), &g) in dx.iter_mut().zip(&x[range.clone()]).zip(&grad[range]) {
                    *dx = k * (g - mean_dy - (x - m) * s * mean_dy_xhat);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// PReLU `max(x, 0) + slope[c] · min(x, 0)` of `x` [batch, channels, ...] as one pass.
pub fn prelu(x: &Tensor, slope: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&slope.contiguous()?, Prelu)
}

struct Prelu;

impl CustomOp2 for Prelu {
    fn name(&self) -> &'static str {
        "prelu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, slope) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (_, channels, plane) = split(l1.dims())?;
        if slope.len() != channels {
            bail!("prelu: {channels} channels but {} slopes", slope.len())
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(plane.max(1))
            .enumerate()
            .for_each(|(index, y)| {
                let a = slope[index % channels];
                let x = &x[index * plane..][..plane];
                y.iter_mut()
                    .zip(x)
                    .for_each(|(y, &x)| *y = if x > 0.0 { x } else { a * x });
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        slope: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_input = x.apply_op2_no_bwd(
            &grad,
            &PreluGradInput {
                slope: Arc::new(slope.to_vec1::<f32>()?),
            },
        )?;
        let grad_slope = x.apply_op2_no_bwd(&grad, &PreluGradSlope)?;
        Ok((Some(grad_input), Some(grad_slope)))
    }
}

/// dx = dy where x > 0, slope · dy elsewhere; arguments (x, grad).
struct PreluGradInput {
    slope: Arc<Vec<f32>>,
}

impl CustomOp2 for PreluGradInput {
    fn name(&self) -> &'static str {
        "prelu-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, grad) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (_, channels, plane) = split(l1.dims())?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(plane.max(1))
            .enumerate()
            .for_each(|(index, dx)| {
                let a = self.slope[index % channels];
                let range = index * plane..(index + 1) * plane;
                for ((dx, &x), &g) in dx.iter_mut().zip(&x[range.clone()]).zip(&grad[range]) {
                    *dx = if x > 0.0 { g } else { a * g };
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// d slope[c] = Σ dy · min(x, 0) over the channel; arguments (x, grad).
struct PreluGradSlope;

impl CustomOp2 for PreluGradSlope {
    fn name(&self) -> &'static str {
        "prelu-grad-slope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, grad) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let sums = channel_sums(l1.dims(), |_, a, b| {
            let sum = x[a..b]
                .iter()
                .zip(&grad[a..b])
                .map(|(&x, &g)| (x.min(0.0) * g) as f64)
                .sum();
            (sum, 0.0)
        })?;
        let out: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}
