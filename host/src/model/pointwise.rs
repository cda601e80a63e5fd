//! 1x1 convolution as a candle custom op over 4-d tensors, one GEMM per image (CPU, f32).
//!
//! Written as reshape + batched matmul, every 1x1 layer adds reshape nodes whose backward
//! passes copy whole activations; this op takes and returns [batch, channels, h, w] directly.
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// `input` [batch, in, h, w] convolved with `weight` [out, in, 1, 1] to [batch, out, h, w].
pub fn pointwise_conv(input: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    if input.device().is_cpu() {
        input
            .contiguous()?
            .apply_op2(&weight.contiguous()?, Pointwise)
    } else {
        input.conv2d(weight, 0, 1, 1, 1)
    }
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("pointwise conv needs contiguous tensors"),
    }
}

/// Row-major matrix operand: pointer, row stride, column stride.
#[derive(Clone, Copy)]
struct Operand(*const f32, isize, isize);

/// dst [m, n] (row-major, contiguous) = lhs [m, k] · rhs [k, n], or += when `accumulate`.
///
/// # Safety
/// `dst` must hold m·n values; `lhs` and `rhs` must address m·k and k·n values through their
/// strides, all inside live allocations that `dst` does not overlap.
unsafe fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
) {
    debug_assert_eq!(dst.len(), m * n);
    // SAFETY: the caller guarantees the extents; dst is a unique slice of m·n values.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// (batch, in, out, plane) of a pointwise conv, checked.
fn shapes(input: &[usize], weight: &[usize]) -> candle_core::Result<(usize, usize, usize, usize)> {
    let (&[batch, channels, h, w], &[out, in_w, 1, 1]) = (input, weight) else {
        bail!(
            "pointwise conv: input {input:?} must be [b, c, h, w], weight {weight:?} [o, c, 1, 1]"
        )
    };
    if in_w != channels {
        bail!("pointwise conv: input {input:?} and weight {weight:?} do not fit")
    }
    Ok((batch, channels, out, h * w))
}

/// Forward op: arguments (input, weight).
struct Pointwise;

impl CustomOp2 for Pointwise {
    fn name(&self) -> &'static str {
        "pointwise-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (batch, channels, out_channels, plane) = shapes(l1.dims(), l2.dims())?;
        let (input, weight) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let mut out = vec![0f32; batch * out_channels * plane];
        out.par_chunks_mut(out_channels * plane)
            .enumerate()
            .for_each(|(b, dst)| {
                let x = &input[b * channels * plane..][..channels * plane];
                let w = Operand(weight.as_ptr(), channels as isize, 1);
                let x = Operand(x.as_ptr(), plane as isize, 1);
                // SAFETY: dst is [out, plane]; w addresses [out, in] and x [in, plane] in place.
                unsafe { matmul(dst, out_channels, plane, channels, w, x, false) }
            });
        let shape = Shape::from((batch, out_channels, l1.dims()[2], l1.dims()[3]));
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
        let grad_input = grad.apply_op2_no_bwd(weight, &PointwiseGradInput)?;
        let grad_weight = input.apply_op2_no_bwd(&grad, &PointwiseGradWeight)?;
        Ok((Some(grad_input), Some(grad_weight)))
    }
}

/// dX_b = Wᵀ · dY_b: arguments (grad_output, weight).
struct PointwiseGradInput;

impl CustomOp2 for PointwiseGradInput {
    fn name(&self) -> &'static str {
        "pointwise-conv-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[batch, out_channels, h, w] = l1.dims() else {
            bail!("pointwise backward: grad must be 4-d")
        };
        let &[out_w, channels, 1, 1] = l2.dims() else {
            bail!("pointwise backward: bad weight")
        };
        if out_w != out_channels {
            bail!(
                "pointwise backward: grad {:?} and weight {:?} do not fit",
                l1.dims(),
                l2.dims()
            )
        }
        let plane = h * w;
        let (grad, weight) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let mut out = vec![0f32; batch * channels * plane];
        out.par_chunks_mut(channels * plane)
            .enumerate()
            .for_each(|(b, dst)| {
                let g = &grad[b * out_channels * plane..][..out_channels * plane];
                // Wᵀ [in, out]: element (i, o) at o·in + i.
                let wt = Operand(weight.as_ptr(), 1, channels as isize);
                let g = Operand(g.as_ptr(), plane as isize, 1);
                // SAFETY: dst is [in, plane]; wt addresses [in, out], g [out, plane] in place.
                unsafe { matmul(dst, channels, plane, out_channels, wt, g, false) }
            });
        Ok((CpuStorage::F32(out), Shape::from((batch, channels, h, w))))
    }
}

/// dW = Σ_b dY_b · X_bᵀ: arguments (input, grad_output).
struct PointwiseGradWeight;

impl CustomOp2 for PointwiseGradWeight {
    fn name(&self) -> &'static str {
        "pointwise-conv-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[batch, channels, h, w] = l1.dims() else {
            bail!("pointwise backward: input must be 4-d")
        };
        let &[batch_g, out_channels, h_g, w_g] = l2.dims() else {
            bail!("pointwise backward: grad must be 4-d")
        };
        if (batch, h, w) != (batch_g, h_g, w_g) {
            bail!(
                "pointwise backward: input {:?} and grad {:?} do not fit",
                l1.dims(),
                l2.dims()
            )
        }
        let plane = h * w;
        let (input, grad) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let workers = rayon::current_num_threads().clamp(1, batch.max(1));
        let per_worker = batch.div_ceil(workers);
        let partials: Vec<Vec<f32>> = (0..workers)
            .into_par_iter()
            .map(|worker| {
                let mut acc = vec![0f32; out_channels * channels];
                for b in worker * per_worker..((worker + 1) * per_worker).min(batch) {
                    let g = &grad[b * out_channels * plane..][..out_channels * plane];
                    let x = &input[b * channels * plane..][..channels * plane];
                    let g = Operand(g.as_ptr(), plane as isize, 1);
                    // Xᵀ [plane, in]: element (p, i) at i·plane + p.
                    let xt = Operand(x.as_ptr(), 1, plane as isize);
                    let first = b == worker * per_worker;
                    // SAFETY: acc is [out, in]; g addresses [out, plane], xt [plane, in].
                    unsafe { matmul(&mut acc, out_channels, channels, plane, g, xt, !first) }
                }
                acc
            })
            .collect();
        let mut out = vec![0f32; out_channels * channels];
        for partial in partials {
            out.iter_mut().zip(partial).for_each(|(o, p)| *o += p);
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((out_channels, channels, 1, 1)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{max_diff, with_grads};
    use crate::model::ParamStore;
    use candle_core::{Device, Var};

    /// Values and both gradients against candle's conv2d and its autograd.
    #[test]
    fn matches_candle_conv2d_forward_and_backward() {
        for batch in [1, 3, 5] {
            let mut store = ParamStore::new(9, &Device::Cpu);
            let x = Var::from_tensor(&store.uniform("x", &[batch, 6, 5, 4], 1.0).unwrap()).unwrap();
            let w = Var::from_tensor(&store.uniform("w", &[7, 6, 1, 1], 1.0).unwrap()).unwrap();
            let probe = store.uniform("p", &[batch, 7, 5, 4], 1.0).unwrap();
            let run = |ours: bool| {
                let y = if ours {
                    pointwise_conv(&x, &w).unwrap()
                } else {
                    x.conv2d(&w, 0, 1, 1, 1).unwrap()
                };
                with_grads(y, &probe, &x, &w)
            };
            let (a, b) = (run(true), run(false));
            for (p, q) in a.iter().zip(&b) {
                let diff = max_diff(p, q);
                assert!(diff < 1e-4, "batch {batch}: {diff}");
            }
        }
    }
}
