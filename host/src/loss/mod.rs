//! The training heads: fused AM-Softmax (CPU and CUDA) as a candle op, the plain softmax
//! baseline, and streamed top-1 accuracy.
//!
//! For features X [batch, dim] and class weights W [classes, dim]: x̂ = x/‖x‖, ŵ = w/‖w‖,
//! cos = x̂ŵᵀ, logits = s·(cos − m·onehot(y)), loss = mean cross-entropy. The fused paths never
//! allocate a [batch, classes] buffer.
use candle_core::{bail, DType, Tensor, D};

pub mod bench;
pub mod cuda;
pub mod fused_cpu;
pub mod op;
pub mod reference;
#[cfg(test)]
mod tests;

/// Which classification head a model trains with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Head {
    /// AM-Softmax (CosFace): normalised features and weights, margin at the target, scale.
    AmSoftmax {
        /// Logit scale s (30 in the paper).
        scale: f32,
        /// Cosine margin m (0.35 in the paper).
        margin: f32,
    },
    /// Normalised softmax: AM-Softmax with margin 0.
    NormSoftmax {
        /// Logit scale s.
        scale: f32,
    },
    /// Plain softmax over unnormalised logits X·Wᵀ + b: the baseline.
    Softmax,
}

impl Default for Head {
    fn default() -> Self {
        Head::AmSoftmax {
            scale: 30.0,
            margin: 0.35,
        }
    }
}

/// Mean AM-Softmax loss, scalar tensor; gradients flow to `features` [batch, dim] and `weights`
/// [classes, dim] (both unnormalised; the op normalises internally). `labels`: u32 [batch].
///
/// Runs the fused CUDA kernels for CUDA tensors (`cuda` feature) and the fused CPU op otherwise.
pub fn am_softmax_loss(
    features: &Tensor,
    weights: &Tensor,
    labels: &Tensor,
    scale: f32,
    margin: f32,
) -> candle_core::Result<Tensor> {
    am_softmax_loss_tiled(features, weights, labels, scale, margin, 0)
}

/// [`am_softmax_loss`] with an explicit CPU tile size in classes (0 = automatic); for tests.
pub fn am_softmax_loss_tiled(
    features: &Tensor,
    weights: &Tensor,
    labels: &Tensor,
    scale: f32,
    margin: f32,
    tile: usize,
) -> candle_core::Result<Tensor> {
    let (features, weights, labels) = prepare(features, weights, labels)?;
    features.apply_op3(&weights, &labels, op::AmSoftmaxOp::new(scale, margin, tile))
}

/// Mean AM-Softmax loss with its gradients computed directly: (loss [], dX [batch, dim],
/// dW [classes, dim]), all detached. For a trainer that applies dW itself and sends dX back into
/// the network (e.g. via `(features · dX.detach()).sum_all().backward()`); it avoids the
/// autograd path's zero-filled accumulator and sum for dW, which matter at millions of classes.
pub fn am_softmax_loss_and_grads(
    features: &Tensor,
    weights: &Tensor,
    labels: &Tensor,
    scale: f32,
    margin: f32,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (features, weights, labels) = prepare(features, weights, labels)?;
    op::loss_and_grads(
        &features.detach(),
        &weights.detach(),
        &labels,
        scale,
        margin,
    )
}

/// Plain softmax baseline head: logits = features·weightsᵀ + bias, mean cross-entropy.
///
/// `features` [batch, dim], `weights` [classes, dim], `bias` [classes], `labels` u32 [batch].
pub fn softmax_loss(
    features: &Tensor,
    weights: &Tensor,
    bias: &Tensor,
    labels: &Tensor,
) -> candle_core::Result<Tensor> {
    let (features, weights, labels) = prepare(features, weights, labels)?;
    if bias.dims() != [weights.dim(0)?] {
        bail!(
            "softmax: bias has shape {:?}, expected [{}]",
            bias.dims(),
            weights.dim(0)?
        )
    }
    let logits = features
        .matmul(&weights.t()?)?
        .broadcast_add(&bias.to_dtype(DType::F32)?)?;
    candle_nn::loss::cross_entropy(&logits, &labels)
}

/// Number of rows whose highest-scoring class is the label (cosine for the normalised heads,
/// X·Wᵀ + b for [`Head::Softmax`], which needs `bias`). No gradient; streamed over class tiles,
/// so no [batch, classes] buffer is allocated.
pub fn top1_correct(
    head: &Head,
    features: &Tensor,
    weights: &Tensor,
    bias: Option<&Tensor>,
    labels: &Tensor,
) -> candle_core::Result<usize> {
    const TILE: usize = 4096;
    let (features, weights, labels) = prepare(features, weights, labels)?;
    let (features, weights) = (features.detach(), weights.detach());
    let normalised = !matches!(head, Head::Softmax);
    let bias = match (head, bias) {
        (Head::Softmax, Some(bias)) => Some(bias.detach().to_dtype(DType::F32)?),
        (Head::Softmax, None) => bail!("top1: the softmax head needs its bias"),
        _ => None,
    };
    let features = if normalised {
        unit_rows(&features, "features")?
    } else {
        features
    };

    let classes = weights.dim(0)?;
    let mut best: Option<(Tensor, Tensor)> = None;
    for c0 in (0..classes).step_by(TILE) {
        let n = TILE.min(classes - c0);
        let mut w = weights.narrow(0, c0, n)?;
        if normalised {
            w = unit_rows(&w, "weights")?;
        }
        let mut scores = features.matmul(&w.t()?)?;
        if let Some(bias) = &bias {
            scores = scores.broadcast_add(&bias.narrow(0, c0, n)?)?;
        }
        let value = scores.max(D::Minus1)?;
        let index = (scores.argmax(D::Minus1)? + c0 as f64)?;
        best = Some(match best {
            None => (value, index),
            Some((best_value, best_index)) => {
                let better = value.gt(&best_value)?;
                (
                    better.where_cond(&value, &best_value)?,
                    better.where_cond(&index, &best_index)?,
                )
            }
        });
    }
    let Some((_, index)) = best else {
        bail!("top1: weights has no classes")
    };
    let correct = index
        .eq(&labels)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(correct as usize)
}

/// Rows divided by their L2 norm; errors on a zero-norm row.
fn unit_rows(t: &Tensor, what: &str) -> candle_core::Result<Tensor> {
    let norms = t.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    if norms.min_all()?.to_scalar::<f32>()? <= 0.0 {
        bail!("top1: a row of {what} has zero norm")
    }
    t.broadcast_div(&norms)
}

/// Checks ranks, sizes and labels; returns contiguous f32 features/weights and u32 labels.
fn prepare(
    features: &Tensor,
    weights: &Tensor,
    labels: &Tensor,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let Ok((batch, dim)) = features.dims2() else {
        bail!(
            "loss: features must be [batch, dim], got {:?}",
            features.dims()
        )
    };
    let Ok((classes, weight_dim)) = weights.dims2() else {
        bail!(
            "loss: weights must be [classes, dim], got {:?}",
            weights.dims()
        )
    };
    if batch == 0 {
        bail!("loss: empty batch (features has 0 rows)")
    }
    if classes == 0 || dim == 0 {
        bail!(
            "loss: weights {:?} must have classes > 0 and dim > 0",
            weights.dims()
        )
    }
    if weight_dim != dim {
        bail!("loss: features dim {dim} does not match weights dim {weight_dim}")
    }
    if labels.dims() != [batch] {
        bail!(
            "loss: labels has shape {:?}, expected [{batch}]",
            labels.dims()
        )
    }
    if !features.device().same_device(weights.device())
        || !features.device().same_device(labels.device())
    {
        bail!("loss: features, weights and labels must be on the same device")
    }
    let labels = match labels.dtype() {
        DType::U32 => labels.clone(),
        DType::U8 | DType::I64 => {
            let wide = labels.to_dtype(DType::I64)?.to_vec1::<i64>()?;
            if let Some(bad) = wide.iter().find(|&&l| l < 0 || l > u32::MAX as i64) {
                bail!("loss: label {bad} is out of range (classes = {classes})")
            }
            labels.to_dtype(DType::U32)?
        }
        other => bail!("loss: labels must be u32, u8 or i64, got {other:?}"),
    };
    if let Some((row, label)) = labels
        .to_vec1::<u32>()?
        .into_iter()
        .enumerate()
        .find(|(_, l)| *l as usize >= classes)
    {
        bail!("loss: label {label} of row {row} is out of range (classes = {classes})")
    }
    Ok((
        features.to_dtype(DType::F32)?.contiguous()?,
        weights.to_dtype(DType::F32)?.contiguous()?,
        labels.contiguous()?,
    ))
}
