//! SGD with momentum and decoupled-from-BN weight decay over named `Var`s.
use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::{Error, Result};

/// SGD with heavy-ball momentum: `v ← μ·v + g + λ·w`, `w ← w − lr·v`. Weight decay λ applies
/// only to tensors with two or more dimensions (conv and linear weights), not to BN or PReLU.
pub struct Sgd {
    vars: Vec<(String, Var)>,
    velocity: BTreeMap<String, Tensor>,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// An optimizer over `vars` (name, variable) with zero initial velocity.
    pub fn new(vars: Vec<(String, Var)>, momentum: f64, weight_decay: f64) -> Result<Self> {
        let mut velocity = BTreeMap::new();
        for (name, var) in &vars {
            velocity.insert(name.clone(), var.zeros_like()?);
        }
        Ok(Self {
            vars,
            velocity,
            momentum,
            weight_decay,
        })
    }

    /// Applies one update with learning rate `lr` from the gradients in `grads`. A variable
    /// without a gradient (unused this step) is left unchanged.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        for (name, var) in &self.vars {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let mut grad = grad.clone();
            if self.weight_decay > 0.0 && var.rank() >= 2 {
                grad = (grad + (var.as_tensor() * self.weight_decay)?)?;
            }
            let velocity = &self.velocity[name];
            // Detached: `var * weight_decay` tracks an op on the variable, and a velocity that
            // kept it would chain every earlier step's graph (and its buffers) into the next.
            let velocity = ((velocity * self.momentum)? + grad)?.detach();
            var.set(&(var.as_tensor() - (&velocity * lr)?)?)?;
            self.velocity.insert(name.clone(), velocity);
        }
        Ok(())
    }

    /// Velocity buffers by name (`momentum.{name}`), for checkpoints.
    pub fn state(&self) -> HashMap<String, Tensor> {
        self.velocity
            .iter()
            .map(|(name, v)| (format!("momentum.{name}"), v.clone()))
            .collect()
    }

    /// Restores velocity buffers written by [`Sgd::state`]; `origin` names the file in errors.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
        for (name, velocity) in self.velocity.iter_mut() {
            let key = format!("momentum.{name}");
            let saved = state.get(&key).ok_or_else(|| {
                Error::InvalidInput(format!("'{origin}' has no optimizer state '{key}'"))
            })?;
            if saved.dims() != velocity.dims() {
                return Err(Error::InvalidInput(format!(
                    "'{origin}': '{key}' is {:?}, expected {:?}",
                    saved.dims(),
                    velocity.dims()
                )));
            }
            *velocity = saved.to_device(velocity.device())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Gradients of the loss Σ w².
    fn square_loss_grads(w: &Var) -> GradStore {
        w.as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    }

    /// Two steps by hand: w=1, g=2w (loss w²), lr=0.1, μ=0.9, λ=0.5 on a [1,1] weight.
    #[test]
    fn matches_hand_computed_momentum_updates() {
        let w = Var::from_tensor(&Tensor::new(&[[1f32]], &Device::Cpu).unwrap()).unwrap();
        let mut sgd = Sgd::new(vec![("w".into(), w.clone())], 0.9, 0.5).unwrap();
        let mut expected_w = 1f64;
        let mut v = 0f64;
        for _ in 0..2 {
            let grads = square_loss_grads(&w);
            sgd.step(&grads, 0.1).unwrap();
            v = 0.9 * v + 2.0 * expected_w + 0.5 * expected_w;
            expected_w -= 0.1 * v;
            let got = w
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0];
            assert!(
                (got as f64 - expected_w).abs() < 1e-6,
                "{got} vs {expected_w}"
            );
        }
    }

    /// The velocity must not hold the autograd graph of earlier steps: with weight decay it
    /// did (the decay term is computed from the `Var`), and memory grew with every step.
    #[test]
    fn velocity_holds_no_graph_of_earlier_steps() {
        let w = Var::from_tensor(&Tensor::new(&[[1f32, -2.0]], &Device::Cpu).unwrap()).unwrap();
        let mut sgd = Sgd::new(vec![("w".into(), w.clone())], 0.9, 0.5).unwrap();
        for _ in 0..3 {
            let grads = square_loss_grads(&w);
            sgd.step(&grads, 0.1).unwrap();
        }
        for (name, velocity) in sgd.state() {
            assert!(
                !velocity.track_op(),
                "{name} still tracks its autograd graph"
            );
        }
    }
}
