//! A straightforward candle forward pass of a [`Network`], the float reference for the export.
use candle_core::{Device, Tensor};

use super::network::{Layer, Network};
use crate::{Error, Result};

impl Network {
    /// Embeddings [batch, embedding_dim] of images [batch, channels, size, size] computed with
    /// candle's own ops (BN in inference mode), on the CPU.
    pub fn forward_candle(&self, images: &Tensor) -> Result<Tensor> {
        let expected = [self.input_channels, self.input_size, self.input_size];
        if images.rank() != 4 || images.dims()[1..] != expected {
            return Err(Error::InvalidInput(format!(
                "network input is {:?}, expected [batch, {}, {}, {}]",
                images.dims(),
                expected[0],
                expected[1],
                expected[2]
            )));
        }
        run(&self.layers, images.clone())
    }
}

fn channel_view(x: &Tensor, values: &[f32]) -> Result<Tensor> {
    let shape: Vec<usize> = (0..x.rank())
        .map(|d| if d == 1 { values.len() } else { 1 })
        .collect();
    Ok(Tensor::from_slice(values, shape.as_slice(), &Device::Cpu)?)
}

fn run(layers: &[Layer], mut x: Tensor) -> Result<Tensor> {
    for layer in layers {
        x = match layer {
            Layer::Conv(conv) => {
                let per_group = conv.in_channels / conv.groups;
                let shape = (conv.out_channels, per_group, conv.kernel, conv.kernel);
                let weight = Tensor::from_slice(&conv.weight, shape, &Device::Cpu)?;
                let y = x.conv2d(&weight, conv.padding, conv.stride, 1, conv.groups)?;
                match &conv.bias {
                    Some(bias) => y.broadcast_add(&channel_view(&y, bias)?)?,
                    None => y,
                }
            }
            Layer::BatchNorm(bn) => {
                let scale: Vec<f32> = bn
                    .gamma
                    .iter()
                    .zip(&bn.var)
                    .map(|(g, v)| g / (v + bn.eps).sqrt())
                    .collect();
                let centred = x.broadcast_sub(&channel_view(&x, &bn.mean)?)?;
                centred
                    .broadcast_mul(&channel_view(&x, &scale)?)?
                    .broadcast_add(&channel_view(&x, &bn.beta)?)?
            }
            Layer::Prelu(slope) => {
                let negative = x.minimum(0f32)?.broadcast_mul(&channel_view(&x, slope)?)?;
                (x.relu()? + negative)?
            }
            Layer::Residual(inner) => (run(inner, x.clone())? + x)?,
            Layer::Flatten => x.flatten_from(1)?,
            Layer::Linear(linear) => {
                let shape = (linear.out_features, linear.in_features);
                let weight = Tensor::from_slice(&linear.weight, shape, &Device::Cpu)?;
                let y = x.matmul(&weight.t()?)?;
                match &linear.bias {
                    Some(bias) => {
                        y.broadcast_add(&Tensor::from_slice(bias, (1, bias.len()), &Device::Cpu)?)?
                    }
                    None => y,
                }
            }
        };
    }
    Ok(x)
}
