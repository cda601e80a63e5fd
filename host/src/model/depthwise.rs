//! Depthwise 2-D convolution as a candle custom op with its own backward (CPU, f32).
//!
//! candle lowers a grouped convolution to one convolution per group, which for a depthwise
//! layer (groups = channels) means hundreds of tiny convolutions per call. These kernels
//! instead run one plane per (image, channel) pair in parallel with rayon.
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Depthwise convolution of `input` [batch, channels, height, width] with `weight`
/// [channels, 1, k, k]: square kernel, same stride and zero padding on both axes.
pub fn depthwise_conv2d(
    input: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    if input.device().is_cpu() {
        let op = DepthwiseConv { stride, padding };
        input.contiguous()?.apply_op2(&weight.contiguous()?, op)
    } else {
        let channels = input.dim(1)?;
        input.conv2d(weight, padding, stride, 1, channels)
    }
}

/// Geometry shared by the three kernels.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    planes: usize,
    channels: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn new(
        input: &[usize],
        weight: &[usize],
        stride: usize,
        padding: usize,
    ) -> candle_core::Result<Self> {
        let (&[batch, channels, in_h, in_w], &[w_channels, 1, kernel, kernel_w]) = (input, weight)
        else {
            bail!("depthwise conv: input {input:?} must be [b, c, h, w], weight {weight:?} [c, 1, k, k]")
        };
        if w_channels != channels || kernel != kernel_w || stride == 0 {
            bail!("depthwise conv: input {input:?} and weight {weight:?} do not fit (stride {stride})")
        }
        if in_h + 2 * padding < kernel || in_w + 2 * padding < kernel {
            bail!("depthwise conv: input {input:?} smaller than the kernel {kernel}")
        }
        Ok(Self {
            planes: batch * channels,
            channels,
            in_h,
            in_w,
            out_h: (in_h + 2 * padding - kernel) / stride + 1,
            out_w: (in_w + 2 * padding - kernel) / stride + 1,
            kernel,
            stride,
            padding,
        })
    }

    /// Output columns `ox` for which input column `ox * stride + kx - padding` is inside.
    fn columns(&self, kx: usize) -> (usize, usize) {
        let lo = (self.padding.saturating_sub(kx)).div_ceil(self.stride);
        let hi_excl = (self.in_w + self.padding)
            .saturating_sub(kx)
            .div_ceil(self.stride);
        (lo, hi_excl.min(self.out_w))
    }

    /// Input row for output row `oy` and kernel row `ky`, if inside the image.
    fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        let y = (oy * self.stride + ky).checked_sub(self.padding)?;
        (y < self.in_h).then_some(y)
    }
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("depthwise conv needs contiguous tensors"),
    }
}

/// Forward op: arguments (input, weight).
struct DepthwiseConv {
    stride: usize,
    padding: usize,
}

impl CustomOp2 for DepthwiseConv {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.dims(), l2.dims(), self.stride, self.padding)?;
        let (input, weight) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (in_plane, out_plane, k) = (g.in_h * g.in_w, g.out_h * g.out_w, g.kernel);
        let mut out = vec![0f32; g.planes * out_plane];
        out.par_chunks_mut(out_plane)
            .enumerate()
            .for_each(|(plane, out)| {
                let x = &input[plane * in_plane..][..in_plane];
                let w = &weight[(plane % g.channels) * k * k..][..k * k];
                for oy in 0..g.out_h {
                    let row = &mut out[oy * g.out_w..][..g.out_w];
                    for ky in 0..k {
                        let Some(iy) = g.row(oy, ky) else { continue };
                        let x_row = &x[iy * g.in_w..][..g.in_w];
                        for kx in 0..k {
                            let tap = w[ky * k + kx];
                            let (lo, hi) = g.columns(kx);
                            if lo >= hi {
                                continue;
                            }
                            let src = &x_row[lo * g.stride + kx - g.padding..];
                            if g.stride == 1 {
                                row[lo..hi]
                                    .iter_mut()
                                    .zip(src)
                                    .for_each(|(o, &v)| *o += tap * v);
                            } else {
                                let src = src.iter().step_by(g.stride);
                                row[lo..hi]
                                    .iter_mut()
                                    .zip(src)
                                    .for_each(|(o, &v)| *o += tap * v);
                            }
                        }
                    }
                }
            });
        let shape = Shape::from((l1.dims()[0], g.channels, g.out_h, g.out_w));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        input: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (h, w) = (input.dim(2)?, input.dim(3)?);
        let grad_input = grad.apply_op2_no_bwd(
            weight,
            &DepthwiseGradInput {
                stride: self.stride,
                padding: self.padding,
                in_h: h,
                in_w: w,
            },
        )?;
        let grad_weight = input.apply_op2_no_bwd(
            &grad,
            &DepthwiseGradWeight {
                stride: self.stride,
                padding: self.padding,
                kernel: weight.dim(2)?,
            },
        )?;
        Ok((Some(grad_input), Some(grad_weight)))
    }
}

/// Gradient with respect to the input: arguments (grad_output, weight).
struct DepthwiseGradInput {
    stride: usize,
    padding: usize,
    in_h: usize,
    in_w: usize,
}

impl CustomOp2 for DepthwiseGradInput {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[batch, channels, out_h, out_w] = l1.dims() else {
            bail!("grad must be 4-d")
        };
        let input_dims = [batch, channels, self.in_h, self.in_w];
        let g = Geometry::new(&input_dims, l2.dims(), self.stride, self.padding)?;
        if (g.out_h, g.out_w) != (out_h, out_w) {
            bail!(
                "depthwise conv backward: grad {:?} does not fit input {input_dims:?}",
                l1.dims()
            )
        }
        let (grad, weight) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (in_plane, out_plane, k) = (g.in_h * g.in_w, g.out_h * g.out_w, g.kernel);
        let mut out = vec![0f32; g.planes * in_plane];
        out.par_chunks_mut(in_plane)
            .enumerate()
            .for_each(|(plane, gx)| {
                let gy = &grad[plane * out_plane..][..out_plane];
                let w = &weight[(plane % g.channels) * k * k..][..k * k];
                for oy in 0..g.out_h {
                    let g_row = &gy[oy * g.out_w..][..g.out_w];
                    for ky in 0..k {
                        let Some(iy) = g.row(oy, ky) else { continue };
                        let x_row = &mut gx[iy * g.in_w..][..g.in_w];
                        for kx in 0..k {
                            let tap = w[ky * k + kx];
                            let (lo, hi) = g.columns(kx);
                            if lo >= hi {
                                continue;
                            }
                            let dst = &mut x_row[lo * g.stride + kx - g.padding..];
                            if g.stride == 1 {
                                dst.iter_mut()
                                    .zip(&g_row[lo..hi])
                                    .for_each(|(d, &v)| *d += tap * v);
                            } else {
                                let dst = dst.iter_mut().step_by(g.stride);
                                dst.zip(&g_row[lo..hi]).for_each(|(d, &v)| *d += tap * v);
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(input_dims.to_vec())))
    }
}

/// Gradient with respect to the weight: arguments (input, grad_output).
struct DepthwiseGradWeight {
    stride: usize,
    padding: usize,
    kernel: usize,
}

impl CustomOp2 for DepthwiseGradWeight {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let k = self.kernel;
        let channels = l1.dims().get(1).copied().unwrap_or(0);
        let g = Geometry::new(l1.dims(), &[channels, 1, k, k], self.stride, self.padding)?;
        if l2.dims() != [l1.dims()[0], channels, g.out_h, g.out_w] {
            bail!(
                "depthwise conv backward: grad {:?} does not fit input {:?}",
                l2.dims(),
                l1.dims()
            )
        }
        let (input, grad) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (in_plane, out_plane, batch) = (g.in_h * g.in_w, g.out_h * g.out_w, l1.dims()[0]);
        let mut out = vec![0f32; channels * k * k];
        out.par_chunks_mut(k * k).enumerate().for_each(|(c, gw)| {
            for b in 0..batch {
                let plane = b * channels + c;
                let x = &input[plane * in_plane..][..in_plane];
                let gy = &grad[plane * out_plane..][..out_plane];
                for oy in 0..g.out_h {
                    let g_row = &gy[oy * g.out_w..][..g.out_w];
                    for ky in 0..k {
                        let Some(iy) = g.row(oy, ky) else { continue };
                        let x_row = &x[iy * g.in_w..][..g.in_w];
                        for kx in 0..k {
                            let (lo, hi) = g.columns(kx);
                            if lo >= hi {
                                continue;
                            }
                            let src = &x_row[lo * g.stride + kx - g.padding..];
                            let sum: f32 = if g.stride == 1 {
                                g_row[lo..hi].iter().zip(src).map(|(a, b)| a * b).sum()
                            } else {
                                g_row[lo..hi]
                                    .iter()
                                    .zip(src.iter().step_by(g.stride))
                                    .map(|(a, b)| a * b)
                                    .sum()
                            };
                            gw[ky * k + kx] += sum;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((channels, 1, k, k))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let count: usize = shape.iter().product();
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let values: Vec<f32> = (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// candle's own grouped convolution is the independent reference for the forward pass.
    #[test]
    fn forward_matches_candle_grouped_conv() {
        for (size, kernel, stride, padding) in [
            (9, 3, 1, 1),
            (9, 3, 2, 1),
            (8, 3, 2, 1),
            (7, 7, 1, 0),
            (6, 2, 2, 0),
        ] {
            let x = random(&[2, 5, size, size + 1], 1);
            let w = random(&[5, 1, kernel, kernel], 2);
            let ours = depthwise_conv2d(&x, &w, stride, padding).unwrap();
            let reference = x.conv2d(&w, padding, stride, 1, 5).unwrap();
            assert_eq!(ours.dims(), reference.dims());
            let diff = (ours - reference)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }

    /// Central finite differences of sum(out * r) against the analytic gradients.
    #[test]
    fn backward_matches_finite_differences() {
        for (stride, padding) in [(1, 1), (2, 1), (2, 0)] {
            let x = Var::from_tensor(&random(&[2, 3, 7, 6], 3)).unwrap();
            let w = Var::from_tensor(&random(&[3, 1, 3, 3], 4)).unwrap();
            let probe_shape = depthwise_conv2d(&x, &w, stride, padding)
                .unwrap()
                .dims()
                .to_vec();
            let probe = random(&probe_shape, 5);
            let objective = |x: &Tensor, w: &Tensor| -> f64 {
                let out = depthwise_conv2d(x, w, stride, padding).unwrap();
                let value = (out * &probe).unwrap().sum_all().unwrap();
                value
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let out = depthwise_conv2d(&x, &w, stride, padding).unwrap();
            let grads = (out * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (var, other, is_input) in [(&x, &w, true), (&w, &x, false)] {
                let analytic = grads
                    .get(var)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let base = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let eps = 1e-2f32;
                for index in (0..base.len()).step_by(7) {
                    let shifted = |delta: f32| {
                        let mut values = base.clone();
                        values[index] += delta;
                        Tensor::from_vec(values, var.dims(), &Device::Cpu).unwrap()
                    };
                    let (plus, minus) = (shifted(eps), shifted(-eps));
                    let numeric = if is_input {
                        (objective(&plus, other) - objective(&minus, other)) / (2.0 * eps as f64)
                    } else {
                        (objective(other, &plus) - objective(other, &minus)) / (2.0 * eps as f64)
                    };
                    let error = (numeric - analytic[index] as f64).abs();
                    assert!(
                        error < 1e-2 * (1.0 + numeric.abs()),
                        "index {index}: {numeric} vs {}",
                        analytic[index]
                    );
                }
            }
        }
    }
}
