//! Learning-rate schedule (linear warm-up, then cosine or step decay) and margin warm-up.
use serde::{Deserialize, Serialize};

/// How the learning rate decays after warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    /// Half a cosine from the base rate down to 0 at the last step.
    Cosine,
    /// Multiply by `gamma` at each epoch in `milestones`.
    Step {
        /// Epochs (0-based) at which the rate is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// The factor.
        gamma: f64,
    },
}

/// Learning rate and margin as functions of the global step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Epochs of linear warm-up from ~0 to `base_lr`.
    pub warmup_epochs: f64,
    /// Decay after warm-up.
    pub decay: Decay,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// Total epochs.
    pub epochs: usize,
    /// Final additive margin.
    pub margin: f32,
    /// Epochs over which the margin rises linearly from 0 to `margin` (0: constant).
    pub margin_warmup_epochs: f64,
}

impl Schedule {
    /// Learning rate for the 0-based global `step`.
    pub fn lr(&self, step: usize) -> f64 {
        let epoch = step as f64 / self.steps_per_epoch.max(1) as f64;
        if epoch < self.warmup_epochs {
            return self.base_lr * (step + 1) as f64
                / (self.warmup_epochs * self.steps_per_epoch as f64).max(1.0);
        }
        match &self.decay {
            Decay::Cosine => {
                let total = (self.epochs * self.steps_per_epoch) as f64;
                let start = self.warmup_epochs * self.steps_per_epoch as f64;
                let progress = ((step as f64 - start) / (total - start).max(1.0)).clamp(0.0, 1.0);
                self.base_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Decay::Step { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| epoch >= m as f64).count();
                self.base_lr * gamma.powi(passed as i32)
            }
        }
    }

    /// Margin for the 0-based global `step`.
    pub fn margin(&self, step: usize) -> f32 {
        if self.margin_warmup_epochs <= 0.0 {
            return self.margin;
        }
        let epoch = step as f64 / self.steps_per_epoch.max(1) as f64;
        self.margin * (epoch / self.margin_warmup_epochs).min(1.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(decay: Decay) -> Schedule {
        Schedule {
            base_lr: 0.1,
            warmup_epochs: 1.0,
            decay,
            steps_per_epoch: 10,
            epochs: 5,
            margin: 0.35,
            margin_warmup_epochs: 2.0,
        }
    }

    #[test]
    fn warm_up_then_cosine_to_zero() {
        let s = schedule(Decay::Cosine);
        assert!((s.lr(0) - 0.01).abs() < 1e-12);
        assert!((s.lr(9) - 0.1).abs() < 1e-12);
        assert!((s.lr(10) - 0.1).abs() < 1e-12);
        assert!((s.lr(30) - 0.05).abs() < 1e-12);
        assert!(s.lr(50).abs() < 1e-12);
    }

    #[test]
    fn step_decay_and_margin_ramp() {
        let s = schedule(Decay::Step {
            milestones: vec![2, 4],
            gamma: 0.1,
        });
        assert!((s.lr(15) - 0.1).abs() < 1e-12);
        assert!((s.lr(25) - 0.01).abs() < 1e-12);
        assert!((s.lr(45) - 0.001).abs() < 1e-12);
        assert_eq!(s.margin(0), 0.0);
        assert!((s.margin(10) - 0.175).abs() < 1e-6);
        assert_eq!(s.margin(40), 0.35);
    }
}
