//! Reference AM-Softmax implementations that materialise [batch, classes]: for tests and the
//! benchmark's naive row only.
//!
//! [`loss_and_grads_f64`] is a plain-loop f64 version with hand-derived gradients (checked against
//! finite differences in the tests). [`candle_graph_loss`] is the head written the usual way with
//! candle tensor ops (normalise, matmul, subtract the margin at the target, scale, cross-entropy),
//! differentiated by candle's autograd.
use candle_core::{DType, Tensor, D};

/// Loss and gradients of the mean AM-Softmax loss, all in f64.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Mean loss over the batch.
    pub loss: f64,
    /// dL/dX, [batch, dim].
    pub d_features: Vec<f64>,
    /// dL/dW, [classes, dim].
    pub d_weights: Vec<f64>,
}

/// Mean AM-Softmax loss and its gradients for `features` [batch, dim], `weights` [classes, dim].
///
/// Builds the full cosine and softmax matrices [batch, classes]. Panics on inconsistent sizes
/// (test-only code; the fused paths validate input).
pub fn loss_and_grads_f64(
    features: &[f64],
    weights: &[f64],
    labels: &[u32],
    dim: usize,
    scale: f64,
    margin: f64,
) -> Reference {
    let (b, c) = (features.len() / dim, weights.len() / dim);
    let normalise = |v: &[f64]| {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        (v.iter().map(|x| x / norm).collect::<Vec<_>>(), norm)
    };
    let xs: Vec<_> = features.chunks(dim).map(normalise).collect();
    let ws: Vec<_> = weights.chunks(dim).map(normalise).collect();

    // cos [b, c] and softmax probabilities [b, c].
    let cos: Vec<Vec<f64>> = xs
        .iter()
        .map(|(x, _)| {
            ws.iter()
                .map(|(w, _)| x.iter().zip(w).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect();
    let mut loss = 0.0;
    let mut grad_cos = vec![vec![0.0; c]; b];
    for i in 0..b {
        let y = labels[i] as usize;
        let logits: Vec<f64> = (0..c)
            .map(|j| scale * (cos[i][j] - if j == y { margin } else { 0.0 }))
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + logits.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
        loss += (lse - logits[y]) / b as f64;
        for j in 0..c {
            let onehot = if j == y { 1.0 } else { 0.0 };
            grad_cos[i][j] = scale * ((logits[j] - lse).exp() - onehot) / b as f64;
        }
    }

    // dX̂ = G·Ŵ, dŴ = Gᵀ·X̂, then through v̂ = v/‖v‖: dv = (dv̂ − v̂(v̂·dv̂))/‖v‖.
    let through_norm = |unit: &[f64], norm: f64, grad: Vec<f64>| {
        let along: f64 = unit.iter().zip(&grad).map(|(u, g)| u * g).sum();
        grad.iter()
            .zip(unit)
            .map(|(g, u)| (g - u * along) / norm)
            .collect::<Vec<_>>()
    };
    let mut d_features = Vec::with_capacity(b * dim);
    for (i, (x, norm)) in xs.iter().enumerate() {
        let g: Vec<f64> = (0..dim)
            .map(|k| (0..c).map(|j| grad_cos[i][j] * ws[j].0[k]).sum())
            .collect();
        d_features.extend(through_norm(x, *norm, g));
    }
    let mut d_weights = Vec::with_capacity(c * dim);
    for (j, (w, norm)) in ws.iter().enumerate() {
        let g: Vec<f64> = (0..dim)
            .map(|k| (0..b).map(|i| grad_cos[i][j] * xs[i].0[k]).sum())
            .collect();
        d_weights.extend(through_norm(w, *norm, g));
    }
    Reference {
        loss,
        d_features,
        d_weights,
    }
}

/// The naive head with candle ops: mean AM-Softmax loss as a differentiable scalar.
///
/// `features` [batch, dim], `weights` [classes, dim], `labels` u32 [batch]. Materialises several
/// [batch, classes] tensors in the forward and backward passes.
pub fn candle_graph_loss(
    features: &Tensor,
    weights: &Tensor,
    labels: &Tensor,
    scale: f64,
    margin: f64,
) -> candle_core::Result<Tensor> {
    let unit = |t: &Tensor| t.broadcast_div(&t.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?);
    let cos = unit(features)?.matmul(&unit(weights)?.t()?)?;
    let classes = weights.dim(0)?;
    let onehot = labels
        .unsqueeze(1)?
        .broadcast_eq(&Tensor::arange(0u32, classes as u32, features.device())?.unsqueeze(0)?)?
        .to_dtype(DType::F32)?;
    let logits = ((cos - (onehot * margin)?)? * scale)?;
    candle_nn::loss::cross_entropy(&logits, labels)
}
