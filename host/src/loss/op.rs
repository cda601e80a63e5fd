//! candle custom ops for the fused AM-Softmax loss: a forward op with a backward that calls a
//! second op computing (dX, dW) in one pass.
use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::fused_cpu::{self, Problem};

/// Forward op: (features [batch, dim], weights [classes, dim], labels u32 [batch]) → loss [].
pub struct AmSoftmaxOp {
    /// Logit scale s.
    pub scale: f32,
    /// Cosine margin m.
    pub margin: f32,
    /// Classes per CPU tile (0 = automatic).
    pub tile: usize,
    /// Per-row log-sum-exp saved by the forward pass, [batch].
    lse: OnceLock<Vec<f32>>,
}

impl AmSoftmaxOp {
    /// A fresh op; each loss evaluation gets its own, since it keeps the forward's row statistics.
    pub fn new(scale: f32, margin: f32, tile: usize) -> Self {
        Self {
            scale,
            margin,
            tile,
            lse: OnceLock::new(),
        }
    }
}

/// Backward op: same inputs, output [batch·dim + classes·dim] = dX then dW, flattened.
struct AmSoftmaxGradOp {
    scale: f32,
    margin: f32,
    tile: usize,
    grad: f32,
    lse: Option<Vec<f32>>,
}

/// Borrows a contiguous f32/u32 CPU buffer, or says which input is not.
fn cpu_slice<'a, T: candle_core::WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("am-softmax: {what} must be contiguous")
    };
    match storage.as_slice::<T>() {
        Ok(all) => Ok(&all[start..end]),
        Err(_) => bail!(
            "am-softmax: {what} has dtype {:?}, expected {:?}",
            storage.dtype(),
            T::DTYPE
        ),
    }
}

/// The problem's sizes from the three layouts, checked against each other.
fn dims(l1: &Layout, l2: &Layout, l3: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (b, d) = l1
        .shape()
        .dims2()
        .map_err(|_| shape_error("features", l1))?;
    let (c, d2) = l2.shape().dims2().map_err(|_| shape_error("weights", l2))?;
    let b2 = l3.shape().dims1().map_err(|_| shape_error("labels", l3))?;
    if d != d2 || b != b2 {
        bail!("am-softmax: features {:?}, weights {:?} and labels {:?} do not fit together (want [batch, dim], [classes, dim], [batch])", l1.dims(), l2.dims(), l3.dims())
    }
    Ok((b, d, c))
}

fn shape_error(what: &str, layout: &Layout) -> candle_core::Error {
    candle_core::Error::Msg(format!("am-softmax: {what} has shape {:?}", layout.dims()))
}

fn cpu_problem<'a>(
    op: (f32, f32, usize),
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    (s3, l3): (&'a CpuStorage, &Layout),
) -> candle_core::Result<Problem<'a>> {
    let (batch, dim, classes) = dims(l1, l2, l3)?;
    Ok(Problem {
        features: cpu_slice(s1, l1, "features")?,
        weights: cpu_slice(s2, l2, "weights")?,
        labels: cpu_slice(s3, l3, "labels")?,
        batch,
        dim,
        classes,
        scale: op.0,
        margin: op.1,
        tile: op.2,
    })
}

impl CustomOp3 for AmSoftmaxOp {
    fn name(&self) -> &'static str {
        "am-softmax"
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
        let p = cpu_problem(
            (self.scale, self.margin, self.tile),
            (s1, l1),
            (s2, l2),
            (s3, l3),
        )?;
        let out = fused_cpu::forward(&p).map_err(candle_core::Error::Msg)?;
        let _ = self.lse.set(out.lse);
        Ok((CpuStorage::F32(vec![out.loss]), Shape::from(())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (loss, lse) = super::cuda::candle_glue::forward(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            self.scale,
            self.margin,
        )?;
        let _ = self.lse.set(lse);
        Ok((loss, Shape::from(())))
    }

    fn bwd(
        &self,
        features: &Tensor,
        weights: &Tensor,
        labels: &Tensor,
        _loss: &Tensor,
        grad_loss: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad_loss
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        let op = AmSoftmaxGradOp {
            scale: self.scale,
            margin: self.margin,
            tile: self.tile,
            grad,
            lse: self.lse.get().cloned(),
        };
        let flat = features.apply_op3_no_bwd(weights, labels, &op)?;
        let (b, d) = features.dims2()?;
        let c = weights.dim(0)?;
        let d_features = flat.narrow(0, 0, b * d)?.reshape((b, d))?;
        let d_weights = flat.narrow(0, b * d, c * d)?.reshape((c, d))?;
        Ok((Some(d_features), Some(d_weights), None))
    }
}

/// Loss and (dX, dW) without candle's autograd: one forward and one gradient pass, and no
/// zero-filled gradient accumulators (the autograd path holds ~3 copies of dW at its peak).
pub fn loss_and_grads(
    features: &Tensor,
    weights: &Tensor,
    labels: &Tensor,
    scale: f32,
    margin: f32,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let forward = AmSoftmaxOp::new(scale, margin, 0);
    let loss = features.apply_op3_no_bwd(weights, labels, &forward)?;
    let grad_op = AmSoftmaxGradOp {
        scale,
        margin,
        tile: 0,
        grad: 1.0,
        lse: forward.lse.get().cloned(),
    };
    let flat = features.apply_op3_no_bwd(weights, labels, &grad_op)?;
    let (b, d) = features.dims2()?;
    let c = weights.dim(0)?;
    let d_features = flat.narrow(0, 0, b * d)?.reshape((b, d))?;
    let d_weights = flat.narrow(0, b * d, c * d)?.reshape((c, d))?;
    Ok((loss, d_features, d_weights))
}

impl CustomOp3 for AmSoftmaxGradOp {
    fn name(&self) -> &'static str {
        "am-softmax-grad"
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
        let p = cpu_problem(
            (self.scale, self.margin, self.tile),
            (s1, l1),
            (s2, l2),
            (s3, l3),
        )?;
        let lse = match &self.lse {
            Some(lse) => lse.clone(),
            None => fused_cpu::forward(&p).map_err(candle_core::Error::Msg)?.lse,
        };
        let (b, d, c) = (p.batch, p.dim, p.classes);
        let mut flat = vec![0f32; b * d + c * d];
        let (d_features, d_weights) = flat.split_at_mut(b * d);
        fused_cpu::backward(&p, &lse, self.grad, d_features, d_weights)
            .map_err(candle_core::Error::Msg)?;
        Ok((CpuStorage::F32(flat), Shape::from(b * d + c * d)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (b, d) = l1.shape().dims2()?;
        let c = l2.shape().dims2()?.0;
        let flat = super::cuda::candle_glue::backward(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            self.scale,
            self.margin,
            self.grad,
            self.lse.as_deref(),
        )?;
        Ok((flat, Shape::from(b * d + c * d)))
    }
}
