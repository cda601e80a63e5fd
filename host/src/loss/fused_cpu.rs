//! Fused AM-Softmax on the CPU: class tiles, online log-sum-exp, no [batch, classes] buffer.
//!
//! The forward pass streams over tiles of classes; each tile's cosines come from one GEMM of the
//! normalised features against the raw weight rows, scaled by the rows' inverse norms. The
//! backward pass recomputes each tile, turns it into the softmax gradient in place, accumulates
//! dX̂ per thread and writes the tile's dW rows directly. Both L2 normalisations are then
//! back-propagated row by row. Extra memory: O(batch·tile + batch·dim) per thread plus O(classes).
use rayon::prelude::*;

/// Classes per tile when the caller does not choose one.
pub const DEFAULT_TILE: usize = 2048;

/// One AM-Softmax problem over borrowed, row-major f32 buffers.
#[derive(Clone, Copy, Debug)]
pub struct Problem<'a> {
    /// Features, [batch, dim], unnormalised.
    pub features: &'a [f32],
    /// Class weights, [classes, dim], unnormalised.
    pub weights: &'a [f32],
    /// Class of each row, [batch].
    pub labels: &'a [u32],
    /// Rows in `features`.
    pub batch: usize,
    /// Embedding width.
    pub dim: usize,
    /// Rows in `weights`.
    pub classes: usize,
    /// Logit scale s.
    pub scale: f32,
    /// Cosine margin m subtracted at the target class.
    pub margin: f32,
    /// Classes per tile (0 picks one from the problem size and the thread count).
    pub tile: usize,
}

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Forward {
    /// Mean loss over the batch.
    pub loss: f32,
    /// Log-sum-exp of each row's logits, [batch].
    pub lse: Vec<f32>,
}

impl Problem<'_> {
    /// Checks shapes, labels, scale and that no row has zero (or non-finite) norm.
    pub fn validate(&self) -> Result<(), String> {
        let (b, d, c) = (self.batch, self.dim, self.classes);
        if b == 0 {
            return Err("am-softmax: empty batch (features has 0 rows)".into());
        }
        if d == 0 || c == 0 {
            return Err(format!(
                "am-softmax: dim {d} and classes {c} must both be > 0"
            ));
        }
        if self.features.len() != b * d {
            return Err(format!(
                "am-softmax: features has {} values, not {b}x{d}",
                self.features.len()
            ));
        }
        if self.weights.len() != c * d {
            return Err(format!(
                "am-softmax: weights has {} values, not {c}x{d}",
                self.weights.len()
            ));
        }
        if self.labels.len() != b {
            return Err(format!(
                "am-softmax: {} labels for a batch of {b}",
                self.labels.len()
            ));
        }
        if let Some((row, &label)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= c)
        {
            return Err(format!(
                "am-softmax: label {label} of row {row} is out of range (classes = {c})"
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0 && self.margin.is_finite()) {
            return Err(format!(
                "am-softmax: scale {} must be > 0 and margin {} finite",
                self.scale, self.margin
            ));
        }
        Ok(())
    }

    fn tile_size(&self) -> usize {
        if self.tile > 0 {
            return self.tile;
        }
        let threads = rayon::current_num_threads().max(1);
        self.classes
            .div_ceil(4 * threads)
            .clamp(64, DEFAULT_TILE)
            .next_multiple_of(16)
    }
}

/// Inverse L2 norm of each row of a [rows, dim] buffer; names the first zero or non-finite row.
pub fn inverse_norms(values: &[f32], dim: usize, what: &str) -> Result<Vec<f32>, String> {
    let inv: Vec<f32> = values
        .par_chunks(dim)
        .map(|row| 1.0 / row.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    match inv.iter().position(|v| !v.is_finite() || *v == 0.0) {
        Some(row) => Err(format!(
            "am-softmax: row {row} of {what} has zero or non-finite norm"
        )),
        None => Ok(inv),
    }
}

/// Loss and per-row log-sum-exp. Validates the problem first.
pub fn forward(p: &Problem) -> Result<Forward, String> {
    p.validate()?;
    let (b, d) = (p.batch, p.dim);
    let inv_x = inverse_norms(p.features, d, "features")?;
    let inv_w = inverse_norms(p.weights, d, "weights")?;
    let xhat = scale_rows(p.features, &inv_x, d);
    let tile = p.tile_size();
    let tiles = p.classes.div_ceil(tile);

    // Each fold state: a cosine scratch tile plus a running (max, sum of exp) per row.
    let identity = || {
        (
            vec![0f32; b * tile],
            vec![f32::NEG_INFINITY; b],
            vec![0f32; b],
        )
    };
    let (_, max, sum) = (0..tiles)
        .into_par_iter()
        .fold(identity, |(mut scratch, mut max, mut sum), t| {
            let (c0, n) = (t * tile, tile.min(p.classes - t * tile));
            let cos = &mut scratch[..b * n];
            tile_logits(p, &xhat, &inv_w, c0, n, cos);
            for i in 0..b {
                let row = &cos[i * n..(i + 1) * n];
                let tile_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let new_max = max[i].max(tile_max);
                let tile_sum: f32 = row.iter().map(|z| (z - new_max).exp()).sum();
                sum[i] = sum[i] * (max[i] - new_max).exp() + tile_sum;
                max[i] = new_max;
            }
            (scratch, max, sum)
        })
        .map(|(_, max, sum)| (Vec::new(), max, sum))
        .reduce(identity_merge(b), merge_lse);

    let lse: Vec<f32> = max.iter().zip(&sum).map(|(m, s)| m + s.ln()).collect();
    let mut total = 0f64;
    for i in 0..b {
        let y = p.labels[i] as usize;
        let cos_target = dot(&xhat[i * d..(i + 1) * d], &p.weights[y * d..(y + 1) * d]) * inv_w[y];
        total += f64::from(lse[i] - p.scale * (cos_target - p.margin));
    }
    Ok(Forward {
        loss: (total / b as f64) as f32,
        lse,
    })
}

/// Gradients of `grad · loss`: writes dX into `d_features` [batch, dim] and dW into
/// `d_weights` [classes, dim]. `lse` is [`Forward::lse`] of the same problem.
pub fn backward(
    p: &Problem,
    lse: &[f32],
    grad: f32,
    d_features: &mut [f32],
    d_weights: &mut [f32],
) -> Result<(), String> {
    p.validate()?;
    let (b, d) = (p.batch, p.dim);
    if lse.len() != b || d_features.len() != b * d || d_weights.len() != p.classes * d {
        return Err("am-softmax backward: buffer sizes do not match the problem".into());
    }
    let inv_x = inverse_norms(p.features, d, "features")?;
    let inv_w = inverse_norms(p.weights, d, "weights")?;
    let xhat = scale_rows(p.features, &inv_x, d);
    let tile = p.tile_size();
    let coef = grad * p.scale / b as f32;

    // Per fold state: cosine scratch and a partial dX̂; each tile owns its dW rows.
    let identity = || (vec![0f32; b * tile], vec![0f32; b * d]);
    let (_, d_xhat) = d_weights
        .par_chunks_mut(tile * d)
        .enumerate()
        .fold(identity, |(mut cos, mut d_xhat), (t, d_w_tile)| {
            let (c0, n) = (t * tile, d_w_tile.len() / d);
            let g = &mut cos[..b * n];
            tile_logits(p, &xhat, &inv_w, c0, n, g);

            // G'[i, j] = coef · (softmax − onehot) / ‖w_j‖, in place over the logits.
            for i in 0..b {
                let y = p.labels[i] as usize;
                for (j, z) in g[i * n..(i + 1) * n].iter_mut().enumerate() {
                    let target = if c0 + j == y { 1.0 } else { 0.0 };
                    *z = coef * ((*z - lse[i]).exp() - target) * inv_w[c0 + j];
                }
            }
            let w_tile = &p.weights[c0 * d..(c0 + n) * d];
            // dX̂ [b, d] += G' [b, n] · W_tile [n, d]
            gemm_rm(
                b,
                d,
                n,
                &mut d_xhat,
                true,
                g,
                (n as isize, 1),
                w_tile,
                (d as isize, 1),
            );
            // dŴ'_tile [n, d] = G'ᵀ [n, b] · X̂ [b, d]
            gemm_rm(
                n,
                d,
                b,
                d_w_tile,
                false,
                g,
                (1, n as isize),
                &xhat,
                (d as isize, 1),
            );
            normalise_backward(
                w_tile,
                &inv_w[c0..c0 + n],
                d,
                d_w_tile,
                NormBackward::Scaled,
            );
            (cos, d_xhat)
        })
        .reduce(
            || (Vec::new(), vec![0f32; b * d]),
            |(_, mut a), (_, bb)| {
                a.iter_mut().zip(&bb).for_each(|(x, y)| *x += y);
                (Vec::new(), a)
            },
        );

    d_features.copy_from_slice(&d_xhat);
    normalise_backward(p.features, &inv_x, d, d_features, NormBackward::Plain);
    Ok(())
}

/// How the incoming gradient of a normalised row was formed.
#[derive(Clone, Copy)]
enum NormBackward {
    /// `grad` is dL/dv̂: out = inv·g − v·inv³·(v·g).
    Plain,
    /// `grad` is inv·dL/dv̂: out = g − v·inv²·(v·g).
    Scaled,
}

/// Back-propagates through v̂ = v/‖v‖ for every row, in place on `grad` [rows, dim].
fn normalise_backward(
    values: &[f32],
    inv: &[f32],
    dim: usize,
    grad: &mut [f32],
    kind: NormBackward,
) {
    for ((v, g), &inv) in values.chunks(dim).zip(grad.chunks_mut(dim)).zip(inv) {
        let (a, b) = match kind {
            NormBackward::Plain => (inv, inv * inv * inv),
            NormBackward::Scaled => (1.0, inv * inv),
        };
        let along = b * dot(v, g);
        g.iter_mut()
            .zip(v)
            .for_each(|(g, v)| *g = a * *g - along * v);
    }
}

/// Logits of classes [c0, c0+n) for all rows into `out` [batch, n]: s·(cos − m·onehot).
fn tile_logits(p: &Problem, xhat: &[f32], inv_w: &[f32], c0: usize, n: usize, out: &mut [f32]) {
    let (b, d) = (p.batch, p.dim);
    let w_tile = &p.weights[c0 * d..(c0 + n) * d];
    // cos [b, n] = X̂ [b, d] · W_tileᵀ [d, n]
    gemm_rm(
        b,
        n,
        d,
        out,
        false,
        xhat,
        (d as isize, 1),
        w_tile,
        (1, d as isize),
    );
    for i in 0..b {
        let row = &mut out[i * n..(i + 1) * n];
        row.iter_mut()
            .zip(&inv_w[c0..c0 + n])
            .for_each(|(z, inv)| *z *= p.scale * inv);
        let y = p.labels[i] as usize;
        if (c0..c0 + n).contains(&y) {
            row[y - c0] -= p.scale * p.margin;
        }
    }
}

/// dst [m, n] (row-major, contiguous) = (dst if accumulate) + lhs [m, k] · rhs [k, n], with
/// lhs/rhs given as (row stride, column stride) views. Single-threaded: callers parallelise.
#[allow(clippy::too_many_arguments)]
fn gemm_rm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (isize, isize),
) {
    let last = |rs: isize, cs: isize, r: usize, c: usize| {
        if r == 0 || c == 0 {
            0
        } else {
            (r as isize - 1) * rs + (c as isize - 1) * cs + 1
        }
    };
    assert!(dst.len() >= m * n, "gemm dst too small");
    assert!(
        lhs.len() as isize >= last(lhs_rs, lhs_cs, m, k),
        "gemm lhs too small"
    );
    assert!(
        rhs.len() as isize >= last(rhs_rs, rhs_cs, k, n),
        "gemm rhs too small"
    );
    // SAFETY: the asserts above check that every index the strided views reach,
    // (rows-1)·rs + (cols-1)·cs, lies inside its slice; dst is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

fn scale_rows(values: &[f32], inv: &[f32], dim: usize) -> Vec<f32> {
    let mut out = values.to_vec();
    out.chunks_mut(dim)
        .zip(inv)
        .for_each(|(row, inv)| row.iter_mut().for_each(|v| *v *= inv));
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

type LseState = (Vec<f32>, Vec<f32>, Vec<f32>);

fn identity_merge(b: usize) -> impl Fn() -> LseState + Sync + Send {
    move || (Vec::new(), vec![f32::NEG_INFINITY; b], vec![0f32; b])
}

/// Merges two running (max, sum of exp) states row by row.
fn merge_lse((_, mut max, mut sum): LseState, (_, max2, sum2): LseState) -> LseState {
    for i in 0..max.len() {
        let m = max[i].max(max2[i]);
        if m == f32::NEG_INFINITY {
            continue;
        }
        sum[i] = sum[i] * (max[i] - m).exp() + sum2[i] * (max2[i] - m).exp();
        max[i] = m;
    }
    (Vec::new(), max, sum)
}
