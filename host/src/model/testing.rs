//! Helpers for the tests of the model's custom ops: comparing tensors and taking gradients.
use candle_core::{Tensor, Var};

/// Largest absolute element-wise difference between two tensors of one shape.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `y` and the gradients of `sum(y · probe)` with respect to `x` and `w`: a random linear
/// function of the output, so every output element's gradient path is exercised.
pub(crate) fn with_grads(y: Tensor, probe: &Tensor, x: &Var, w: &Var) -> [Tensor; 3] {
    let grads = (&y * probe).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = grads.get(x).unwrap().clone();
    let dw = grads.get(w).unwrap().clone();
    [y, dx, dw]
}
