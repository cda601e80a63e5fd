//! Dense convolution as im2col + batched matrix product, with a col2im backward (CPU, f32).
//!
//! candle's conv2d backward computes the kernel gradient as another convolution whose kernel
//! is the whole output map, which is slow for the stem layer; here both gradients are matrix
//! products and one scatter.
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Convolution of `input` [batch, in, h, w] with `weight` [out, in, k, k]: square kernel,
/// same stride and zero padding on both axes, no groups.
pub fn conv2d(
    input: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    if !input.device().is_cpu() {
        return input.conv2d(weight, padding, stride, 1, 1);
    }
    let (batch, channels, h, w) = input.dims4()?;
    let (out, in_k, kernel, kernel_w) = weight.dims4()?;
    if in_k != channels
        || kernel != kernel_w
        || stride == 0
        || h + 2 * padding < kernel
        || w + 2 * padding < kernel
    {
        bail!(
            "conv2d: input {:?} and weight {:?} do not fit",
            input.dims(),
            weight.dims()
        )
    }
    let op = Im2Col {
        kernel,
        stride,
        padding,
        in_h: h,
        in_w: w,
    };
    let (out_h, out_w) = op.output_size();
    let cols = input.contiguous()?.apply_op1(op)?;
    let weight = weight
        .reshape((out, channels * kernel * kernel))?
        .broadcast_left(batch)?;
    weight.matmul(&cols)?.reshape((batch, out, out_h, out_w))
}

/// Unfolds [batch, c, h, w] to [batch, c·k·k, out_h·out_w]; row (c, ky, kx), column (oy, ox).
#[derive(Clone, Copy)]
struct Im2Col {
    kernel: usize,
    stride: usize,
    padding: usize,
    in_h: usize,
    in_w: usize,
}

impl Im2Col {
    fn output_size(&self) -> (usize, usize) {
        (
            (self.in_h + 2 * self.padding - self.kernel) / self.stride + 1,
            (self.in_w + 2 * self.padding - self.kernel) / self.stride + 1,
        )
    }

    /// Input (y, x) for output (oy, ox) and kernel tap (ky, kx), if inside the image.
    fn source(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let y = (oy * self.stride + ky).checked_sub(self.padding)?;
        let x = (ox * self.stride + kx).checked_sub(self.padding)?;
        (y < self.in_h && x < self.in_w).then_some(y * self.in_w + x)
    }
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("im2col needs contiguous tensors"),
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous(storage, layout)?;
        let &[batch, channels, h, w] = layout.dims() else {
            bail!("im2col: input must be 4-d")
        };
        if (h, w) != (self.in_h, self.in_w) {
            bail!(
                "im2col: input {:?} is not {}x{}",
                layout.dims(),
                self.in_h,
                self.in_w
            )
        }
        let (out_h, out_w) = self.output_size();
        let (k, columns) = (self.kernel, out_h * out_w);
        let mut out = vec![0f32; batch * channels * k * k * columns];
        // One output row per (image, channel, ky, kx).
        out.par_chunks_mut(columns)
            .enumerate()
            .for_each(|(row, dst)| {
                let (plane, tap) = (row / (k * k), row % (k * k));
                let (ky, kx) = (tap / k, tap % k);
                let src = &input[plane * h * w..][..h * w];
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        if let Some(index) = self.source(oy, ox, ky, kx) {
                            dst[oy * out_w + ox] = src[index];
                        }
                    }
                }
            });
        Ok((
            CpuStorage::F32(out),
            Shape::from((batch, channels * k * k, columns)),
        ))
    }

    fn bwd(
        &self,
        _input: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(*self))?))
    }
}

/// Adjoint of [`Im2Col`]: sums [batch, c·k·k, out_h·out_w] back to [batch, c, h, w].
struct Col2Im(Im2Col);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let cols = contiguous(storage, layout)?;
        let geometry = self.0;
        let (out_h, out_w) = geometry.output_size();
        let k = geometry.kernel;
        let &[batch, rows, columns] = layout.dims() else {
            bail!("col2im: input must be 3-d")
        };
        if rows % (k * k) != 0 || columns != out_h * out_w {
            bail!("col2im: {:?} does not fit the geometry", layout.dims())
        }
        let channels = rows / (k * k);
        let plane = geometry.in_h * geometry.in_w;
        let mut out = vec![0f32; batch * channels * plane];
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(index, dst)| {
                for tap in 0..k * k {
                    let (ky, kx) = (tap / k, tap % k);
                    let src = &cols[(index * k * k + tap) * columns..][..columns];
                    for oy in 0..out_h {
                        for ox in 0..out_w {
                            if let Some(i) = geometry.source(oy, ox, ky, kx) {
                                dst[i] += src[oy * out_w + ox];
                            }
                        }
                    }
                }
            });
        Ok((
            CpuStorage::F32(out),
            Shape::from((batch, channels, geometry.in_h, geometry.in_w)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{max_diff, with_grads};
    use crate::model::ParamStore;
    use candle_core::{Device, Var};

    /// Values and both gradients against candle's own conv2d and its autograd.
    #[test]
    fn matches_candle_conv2d_forward_and_backward() {
        for (size, stride, padding) in [(9, 2, 1), (8, 1, 1), (7, 2, 0)] {
            let mut store = ParamStore::new(5, &Device::Cpu);
            let x =
                Var::from_tensor(&store.uniform("x", &[2, 3, size, size], 1.0).unwrap()).unwrap();
            let w = Var::from_tensor(&store.uniform("w", &[4, 3, 3, 3], 1.0).unwrap()).unwrap();
            let probe_shape = x.conv2d(&w, padding, stride, 1, 1).unwrap().dims().to_vec();
            let probe = store.uniform("p", &probe_shape, 1.0).unwrap();
            let run = |ours: bool| {
                let y = if ours {
                    conv2d(&x, &w, stride, padding).unwrap()
                } else {
                    x.conv2d(&w, padding, stride, 1, 1).unwrap()
                };
                with_grads(y, &probe, &x, &w)
            };
            let (a, b) = (run(true), run(false));
            for (p, q) in a.iter().zip(&b) {
                let diff = max_diff(p, q);
                assert!(diff < 1e-4, "size {size} stride {stride}: {diff}");
            }
        }
    }
}
