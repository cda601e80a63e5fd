//! Backbone configuration (MobileFaceNet-style) with computed parameter and FLOP counts.
use serde::{Deserialize, Serialize};

/// One stage of inverted-residual bottlenecks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    /// Expansion factor of the 1x1 conv inside each bottleneck.
    pub expansion: usize,
    /// Output channels before the width multiplier.
    pub channels: usize,
    /// Number of bottlenecks in the stage.
    pub repeats: usize,
    /// Stride of the first bottleneck (the others use 1).
    pub stride: usize,
}

/// The backbone: stem conv, depthwise conv, bottleneck stages, 1x1 conv, global depthwise
/// conv, linear embedding with BN. Serialised as `config.json` next to the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Side of the square input image in pixels (112 for aligned faces).
    pub input_size: usize,
    /// Input channels (3: RGB, CHW, normalised with mean = std = 0.5).
    pub input_channels: usize,
    /// Width multiplier applied to every channel count (rounded to a multiple of 8).
    pub width: f32,
    /// Channels of the stem conv and the depthwise conv after it, before the multiplier.
    pub stem_channels: usize,
    /// Bottleneck stages.
    pub stages: Vec<StageSpec>,
    /// Channels of the last 1x1 conv before the global depthwise conv, before the multiplier.
    pub head_channels: usize,
    /// Embedding dimension (not scaled by the width multiplier).
    pub embedding_dim: usize,
}

impl Default for ModelConfig {
    /// MobileFaceNet layout at width 0.7: 0.52 M parameters, 0.117 G multiply-adds (0.235
    /// GFLOPs) at 112x112; full width (1.0) would be 1.003 M parameters and 0.44 GFLOPs.
    fn default() -> Self {
        Self::mobilefacenet(0.7)
    }
}

impl ModelConfig {
    /// The MobileFaceNet layout (Chen et al. 2018) at the given width multiplier.
    pub fn mobilefacenet(width: f32) -> Self {
        let stage = |expansion, channels, repeats, stride| StageSpec {
            expansion,
            channels,
            repeats,
            stride,
        };
        Self {
            input_size: 112,
            input_channels: 3,
            width,
            stem_channels: 64,
            stages: vec![
                stage(2, 64, 5, 2),
                stage(4, 128, 1, 2),
                stage(2, 128, 6, 1),
                stage(4, 128, 1, 2),
                stage(2, 128, 2, 1),
            ],
            head_channels: 512,
            embedding_dim: 128,
        }
    }

    /// A few-thousand-parameter network on 32x32 inputs, for tests.
    pub fn tiny() -> Self {
        let stage = |expansion, channels, repeats, stride| StageSpec {
            expansion,
            channels,
            repeats,
            stride,
        };
        Self {
            input_size: 32,
            input_channels: 3,
            width: 1.0,
            stem_channels: 8,
            stages: vec![stage(2, 16, 1, 2), stage(2, 16, 1, 1), stage(2, 24, 1, 2)],
            head_channels: 48,
            embedding_dim: 32,
        }
    }

    /// A channel count after the width multiplier: rounded to a multiple of 8, at least 8.
    pub fn scaled(&self, channels: usize) -> usize {
        let scaled = (channels as f32 * self.width / 8.0).round() as usize * 8;
        scaled.max(8)
    }

    /// Total stride of the network: the stem (2) times every stage's stride.
    pub fn total_stride(&self) -> usize {
        2 * self.stages.iter().map(|s| s.stride).product::<usize>()
    }

    /// Side of the last feature map, which the global depthwise conv covers entirely.
    pub fn final_map_size(&self) -> usize {
        self.input_size / self.total_stride()
    }

    /// Checks that the layout is buildable: positive sizes, input divisible by the stride.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |reason: String| Err(crate::Error::InvalidInput(reason));
        if self.width <= 0.0 || !self.width.is_finite() {
            return bad(format!(
                "model width multiplier {} must be positive",
                self.width
            ));
        }
        if self.stages.is_empty() || self.stages.iter().any(|s| s.repeats == 0 || s.stride == 0) {
            return bad("model stages must be non-empty with repeats and strides >= 1".into());
        }
        let stride = self.total_stride();
        if self.input_size == 0 || self.input_size / stride * stride != self.input_size {
            return bad(format!(
                "model input size {} is not a multiple of the total stride {}",
                self.input_size,
                self.total_stride()
            ));
        }
        if self.embedding_dim == 0 || self.input_channels == 0 {
            return bad("model embedding and input channels must be positive".into());
        }
        Ok(())
    }

    /// Walks the layers in order, calling `layer` with each one's shape summary.
    pub fn layers(&self) -> Vec<LayerShape> {
        let mut layers = Vec::new();
        let mut side = self.input_size / 2;
        let stem = self.scaled(self.stem_channels);
        layers.push(LayerShape::conv(self.input_channels, stem, 3, side, true));
        layers.push(LayerShape::depthwise(stem, 3, side, true));
        let mut channels = stem;
        for stage in &self.stages {
            let out = self.scaled(stage.channels);
            for repeat in 0..stage.repeats {
                let stride = if repeat == 0 { stage.stride } else { 1 };
                let hidden = channels * stage.expansion;
                layers.push(LayerShape::conv(channels, hidden, 1, side, true));
                side /= stride;
                layers.push(LayerShape::depthwise(hidden, 3, side, true));
                layers.push(LayerShape::conv(hidden, out, 1, side, false));
                channels = out;
            }
        }
        let head = self.scaled(self.head_channels);
        layers.push(LayerShape::conv(channels, head, 1, side, true));
        layers.push(LayerShape::depthwise(head, side, 1, false));
        layers.push(LayerShape::conv(head, self.embedding_dim, 1, 1, false));
        layers
    }

    /// Learned parameters (conv and linear weights, BN scale and shift, PReLU slopes).
    pub fn parameter_count(&self) -> usize {
        self.layers().iter().map(LayerShape::parameters).sum()
    }

    /// Multiply-adds of one forward pass on one image (convolutions and the linear layer).
    pub fn multiply_adds(&self) -> usize {
        self.layers().iter().map(LayerShape::multiply_adds).sum()
    }

    /// Floating-point operations of one forward pass: 2 per multiply-add.
    pub fn flops(&self) -> usize {
        2 * self.multiply_adds()
    }
}

/// One conv (+ BN, + optional PReLU) layer as the counters see it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerShape {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Side of the output feature map.
    pub out_side: usize,
    /// Depthwise (one filter per channel) rather than dense.
    pub depthwise: bool,
    /// Followed by a PReLU (one slope per channel).
    pub prelu: bool,
}

impl LayerShape {
    fn conv(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        side: usize,
        prelu: bool,
    ) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            out_side: side,
            depthwise: false,
            prelu,
        }
    }

    fn depthwise(channels: usize, kernel: usize, side: usize, prelu: bool) -> Self {
        Self {
            in_channels: channels,
            out_channels: channels,
            kernel,
            out_side: side,
            depthwise: true,
            prelu,
        }
    }

    /// Weights + BN (scale, shift) + PReLU slopes.
    pub fn parameters(&self) -> usize {
        let fan_in = if self.depthwise { 1 } else { self.in_channels };
        let weights = self.out_channels * fan_in * self.kernel * self.kernel;
        let prelu = if self.prelu { self.out_channels } else { 0 };
        weights + 2 * self.out_channels + prelu
    }

    /// Multiply-adds for one image.
    pub fn multiply_adds(&self) -> usize {
        let fan_in = if self.depthwise { 1 } else { self.in_channels };
        self.out_side * self.out_side * self.out_channels * fan_in * self.kernel * self.kernel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobilefacenet_full_width_matches_the_published_size() {
        // Chen et al. 2018 report 0.99 M parameters and 221 M multiply-adds at 112x112.
        let config = ModelConfig::mobilefacenet(1.0);
        let params = config.parameter_count() as f64 / 1e6;
        let madds = config.multiply_adds() as f64 / 1e6;
        assert!((0.95..1.1).contains(&params), "{params} M parameters");
        assert!((200.0..240.0).contains(&madds), "{madds} M multiply-adds");
        assert_eq!(config.final_map_size(), 7);
    }

    #[test]
    fn default_fits_the_budget() {
        let config = ModelConfig::default();
        config.validate().unwrap();
        assert!(config.parameter_count() <= 1_000_000);
        assert!(config.flops() <= 250_000_000, "{} flops", config.flops());
    }

    #[test]
    fn tiny_is_valid() {
        let config = ModelConfig::tiny();
        config.validate().unwrap();
        assert_eq!(config.final_map_size(), 4);
    }
}
