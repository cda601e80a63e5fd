//! Generated identities (coloured patterns) for tests and benchmarks: no face data needed.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::trainer::{BatchSource, TrainBatch};
use crate::Result;

/// Images of `identities` classes: each class is a colour pair and a stripe/checker/ring
/// pattern; samples differ by shift, contrast and pixel noise.
pub struct SyntheticIdentities {
    /// Number of classes.
    pub identities: usize,
    /// Samples per class and epoch.
    pub samples_per_identity: usize,
    /// Image side in pixels.
    pub size: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Seed of the sample noise and order.
    pub seed: u64,
}

impl SyntheticIdentities {
    /// One normalised CHW image of `identity` ([3, size, size], values in about [-1, 1]).
    pub fn image(&self, identity: usize, rng: &mut StdRng) -> Vec<f32> {
        let s = self.size;
        let hue = identity as f32 * 0.618_034 % 1.0;
        let colour = |phase: f32| -> [f32; 3] {
            let channel =
                |k: f32| 0.5 + 0.45 * (std::f32::consts::TAU * (hue + phase + k / 3.0)).cos();
            [channel(0.0), channel(1.0), channel(2.0)]
        };
        let (fore, back) = (colour(0.0), colour(0.5));
        let pattern = identity % 4;
        let frequency = 2.0 + (identity / 4 % 3) as f32;
        let (dx, dy) = (
            rng.random_range(-2.0..2.0f32),
            rng.random_range(-2.0..2.0f32),
        );
        let contrast = rng.random_range(0.8..1.2f32);
        let mut out = vec![0f32; 3 * s * s];
        for y in 0..s {
            for x in 0..s {
                let (u, v) = ((x as f32 + dx) / s as f32, (y as f32 + dy) / s as f32);
                let wave = |t: f32| (std::f32::consts::TAU * frequency * t).sin() > 0.0;
                let on = match pattern {
                    0 => wave(u),
                    1 => wave(v),
                    2 => wave(u) ^ wave(v),
                    _ => wave(((u - 0.5).powi(2) + (v - 0.5).powi(2)).sqrt()),
                };
                for c in 0..3 {
                    let value = if on { fore[c] } else { back[c] };
                    let noisy = 0.5 + contrast * (value - 0.5) + rng.random_range(-0.1..0.1f32);
                    out[c * s * s + y * s + x] = (noisy - 0.5) / 0.5;
                }
            }
        }
        out
    }

    /// A batch of the given labels, drawn with `rng`.
    pub fn batch(&self, labels: &[u32], rng: &mut StdRng) -> TrainBatch {
        let images = labels
            .iter()
            .flat_map(|&l| self.image(l as usize, rng))
            .collect();
        TrainBatch {
            images,
            labels: labels.to_vec(),
        }
    }
}

impl BatchSource for SyntheticIdentities {
    fn batches_per_epoch(&self) -> usize {
        (self.identities * self.samples_per_identity).div_ceil(self.batch_size)
    }

    fn epoch(&mut self, epoch: usize) -> Result<Box<dyn Iterator<Item = Result<TrainBatch>> + '_>> {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut labels: Vec<u32> = (0..self.identities * self.samples_per_identity)
            .map(|i| (i % self.identities) as u32)
            .collect();
        for i in (1..labels.len()).rev() {
            labels.swap(i, rng.random_range(0..=i));
        }
        let chunks: Vec<Vec<u32>> = labels
            .chunks(self.batch_size)
            .map(<[u32]>::to_vec)
            .collect();
        Ok(Box::new(
            chunks
                .into_iter()
                .map(move |chunk| Ok(self.batch(&chunk, &mut rng))),
        ))
    }
}
