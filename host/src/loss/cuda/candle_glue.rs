//! The fused CUDA AM-Softmax on candle's CUDA storage (`cuda` feature only).
use candle_core::{CudaStorage, Layout};
use cudarc::driver::CudaView;

use super::{Kernels, Params};

type Input<'a> = (&'a CudaStorage, &'a Layout);

fn msg(e: crate::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// A contiguous view of one input, or an error naming it.
fn view<'a, T: candle_core::cuda_backend::CudaDType>(
    (storage, layout): Input<'a>,
    what: &str,
) -> candle_core::Result<CudaView<'a, T>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("am-softmax: {what} must be contiguous")
    };
    Ok(storage.as_cuda_slice::<T>()?.slice(start..end))
}

fn params(x: Input, w: Input, scale: f32, margin: f32) -> candle_core::Result<Params> {
    let (batch, dim) = x.1.shape().dims2()?;
    let classes = w.1.shape().dims2()?.0;
    Ok(Params {
        batch,
        dim,
        classes,
        scale,
        margin,
    })
}

/// Loss as a one-element f32 storage, and the per-row log-sum-exp for the backward pass.
pub fn forward(
    x: Input,
    w: Input,
    labels: Input,
    scale: f32,
    margin: f32,
) -> candle_core::Result<(CudaStorage, Vec<f32>)> {
    let p = params(x, w, scale, margin)?;
    let device = x.0.device.clone();
    let kernels = Kernels::for_stream(&device.cuda_stream()).map_err(msg)?;
    let (xv, wv, lv) = (
        view::<f32>(x, "features")?,
        view::<f32>(w, "weights")?,
        view::<u32>(labels, "labels")?,
    );
    let (loss, lse) = kernels.forward(&xv, &wv, &lv, p).map_err(msg)?;
    Ok((CudaStorage::wrap_cuda_slice(loss, device), lse))
}

/// Flattened [batch·dim + classes·dim] gradients (dX then dW) of `grad · loss`.
pub fn backward(
    x: Input,
    w: Input,
    labels: Input,
    scale: f32,
    margin: f32,
    grad: f32,
    lse: Option<&[f32]>,
) -> candle_core::Result<CudaStorage> {
    let p = params(x, w, scale, margin)?;
    let device = x.0.device.clone();
    let kernels = Kernels::for_stream(&device.cuda_stream()).map_err(msg)?;
    let (xv, wv, lv) = (
        view::<f32>(x, "features")?,
        view::<f32>(w, "weights")?,
        view::<u32>(labels, "labels")?,
    );
    let lse = match lse {
        Some(lse) => lse.to_vec(),
        None => kernels.forward(&xv, &wv, &lv, p).map_err(msg)?.1,
    };
    let flat = kernels
        .backward(&xv, &wv, &lv, p, &lse, grad)
        .map_err(msg)?;
    Ok(CudaStorage::wrap_cuda_slice(flat, device))
}
