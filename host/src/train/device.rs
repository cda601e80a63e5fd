//! Choosing the compute device: CPU, or CUDA with clear errors when it is unavailable.
use candle_core::Device;

use crate::{Error, Result};

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// The CPU (our fused kernels).
    Cpu,
    /// The first CUDA GPU (needs the `cuda` feature).
    Cuda,
}

/// Opens the device, or says why it cannot be used.
pub fn open(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda if !cfg!(feature = "cuda") => Err(Error::Unsupported(
            "--device cuda: this facelock was built without CUDA; rebuild with `--features cuda`"
                .into(),
        )),
        DeviceKind::Cuda => Device::new_cuda(0)
            .map_err(|e| Error::Unsupported(format!("--device cuda: no usable CUDA GPU ({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        if cfg!(feature = "cuda") {
            return;
        }
        let error = open(DeviceKind::Cuda).err().unwrap();
        assert!(error.to_string().contains("built without CUDA"), "{error}");
        assert!(open(DeviceKind::Cpu).unwrap().is_cpu());
    }
}
