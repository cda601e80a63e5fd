//! A seeded random MobileFaceNet-shaped [`Network`] (with non-trivial BN statistics), for
//! tests and for size/latency measurements before a trained checkpoint exists.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::network::{BatchNorm, Conv, Layer, Linear, Network};

struct Draw(StdRng);

impl Draw {
    fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.0.random_range(-bound..=bound))
            .collect()
    }

    fn batch_norm(&mut self, channels: usize) -> Layer {
        Layer::BatchNorm(BatchNorm {
            gamma: (0..channels)
                .map(|_| self.0.random_range(0.5..1.5))
                .collect(),
            beta: self.uniform(channels, 0.2),
            mean: self.uniform(channels, 0.3),
            var: (0..channels)
                .map(|_| self.0.random_range(0.5..2.0))
                .collect(),
            eps: 1e-5,
        })
    }

    fn prelu(&mut self, channels: usize) -> Layer {
        Layer::Prelu(
            (0..channels)
                .map(|_| self.0.random_range(0.1..0.4))
                .collect(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
    ) -> Layer {
        let fan_in = cin / groups * k * k;
        Layer::Conv(Conv {
            name: name.to_string(),
            weight: self.uniform(cout * fan_in, (3.0 / fan_in as f32).sqrt()),
            out_channels: cout,
            in_channels: cin,
            kernel: k,
            stride,
            padding: if k == 3 { 1 } else { 0 },
            groups,
            bias: None,
        })
    }

    /// Conv + BN (+ PReLU).
    #[allow(clippy::too_many_arguments)]
    fn unit(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        act: bool,
    ) -> Vec<Layer> {
        let mut layers = vec![
            self.conv(name, cin, cout, k, stride, groups),
            self.batch_norm(cout),
        ];
        if act {
            layers.push(self.prelu(cout));
        }
        layers
    }
}

/// Stem conv, depthwise, `blocks` bottlenecks (the first with stride 2), 1x1 conv, global
/// depthwise conv, linear + BN to `embedding_dim`. Channels are multiples of `width`.
pub fn random_network(
    seed: u64,
    input_size: usize,
    width: usize,
    blocks: usize,
    embedding_dim: usize,
) -> Network {
    let mut d = Draw(StdRng::seed_from_u64(seed));
    let mut layers = Vec::new();
    let c = width;
    layers.extend(d.unit("stem", 3, c, 3, 2, 1, true));
    layers.extend(d.unit("stem_dw", c, c, 3, 1, c, true));
    let mut channels = c;
    let mut side = input_size / 2;
    for b in 0..blocks {
        let stride = if b == 0 { 2 } else { 1 };
        let out = if b == 0 { 2 * c } else { channels };
        let hidden = 2 * channels;
        let mut body = d.unit(
            &format!("blocks.{b}.expand"),
            channels,
            hidden,
            1,
            1,
            1,
            true,
        );
        body.extend(d.unit(
            &format!("blocks.{b}.depthwise"),
            hidden,
            hidden,
            3,
            stride,
            hidden,
            true,
        ));
        body.extend(d.unit(&format!("blocks.{b}.project"), hidden, out, 1, 1, 1, false));
        side /= stride;
        if stride == 1 && out == channels {
            layers.push(Layer::Residual(body));
        } else {
            layers.extend(body);
        }
        channels = out;
    }
    let head = 4 * c;
    layers.extend(d.unit("final_conv", channels, head, 1, 1, 1, true));
    let mut gdc = d.conv("gdc", head, head, side, 1, head);
    if let Layer::Conv(conv) = &mut gdc {
        conv.padding = 0;
    }
    layers.push(gdc);
    layers.push(d.batch_norm(head));
    layers.push(Layer::Flatten);
    layers.push(Layer::Linear(Linear {
        name: "embedding.linear".into(),
        weight: d.uniform(embedding_dim * head, (3.0 / head as f32).sqrt()),
        out_features: embedding_dim,
        in_features: head,
        bias: None,
    }));
    layers.push(d.batch_norm(embedding_dim));
    Network {
        input_channels: 3,
        input_size,
        embedding_dim,
        layers,
    }
}
