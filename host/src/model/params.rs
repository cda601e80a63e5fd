//! Named parameters and buffers of a network, seeded initialisation, safetensors I/O.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

/// A flat, name-ordered store of `Var`s. Trainable ones get gradients and optimizer updates;
/// the others are buffers (BN running statistics) that are saved but not optimised.
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
    trainable: BTreeSet<String>,
    device: Device,
    rng: StdRng,
}

impl ParamStore {
    /// An empty store whose initialisers draw from a generator seeded with `seed`.
    pub fn new(seed: u64, device: &Device) -> Self {
        Self {
            vars: BTreeMap::new(),
            trainable: BTreeSet::new(),
            device: device.clone(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The device the values live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A trainable tensor drawn uniformly from `[-bound, bound]`.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f32) -> Result<Tensor> {
        let count = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..count)
            .map(|_| self.rng.random_range(-bound..=bound))
            .collect();
        self.insert(name, Tensor::from_vec(values, shape, &self.device)?, true)
    }

    /// A tensor filled with `value`, trainable or a buffer.
    pub fn constant(
        &mut self,
        name: &str,
        shape: &[usize],
        value: f32,
        trainable: bool,
    ) -> Result<Tensor> {
        let tensor = Tensor::full(value, shape, &self.device)?;
        self.insert(name, tensor, trainable)
    }

    /// A non-trainable buffer filled with `value`; the returned `Var` can be updated in place.
    pub fn buffer(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Var> {
        self.constant(name, shape, value, false)?;
        Ok(self.vars[name].clone())
    }

    fn insert(&mut self, name: &str, value: Tensor, trainable: bool) -> Result<Tensor> {
        if self.vars.contains_key(name) {
            return Err(Error::InvalidInput(format!(
                "parameter '{name}' defined twice"
            )));
        }
        let var = Var::from_tensor(&value)?;
        let tensor = var.as_tensor().clone();
        self.vars.insert(name.to_string(), var);
        if trainable {
            self.trainable.insert(name.to_string());
        }
        Ok(tensor)
    }

    /// The variable called `name`.
    pub fn var(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    /// Trainable variables in name order.
    pub fn trainable(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.vars
            .iter()
            .filter(|(name, _)| self.trainable.contains(*name))
            .map(|(name, var)| (name.as_str(), var))
    }

    /// Number of trainable scalars.
    pub fn trainable_count(&self) -> usize {
        self.trainable().map(|(_, var)| var.elem_count()).sum()
    }

    /// All values (trainable and buffers) by name, for saving.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect()
    }

    /// Writes every value to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.tensors(), path)
            .map_err(|e| Error::InvalidInput(format!("cannot write '{}': {e}", path.display())))
    }

    /// Replaces every value with the one of the same name in a safetensors file; names and
    /// shapes must match exactly.
    pub fn load(&self, path: &Path) -> Result<()> {
        let loaded = candle_core::safetensors::load(path, &self.device)
            .map_err(|e| Error::InvalidInput(format!("cannot read '{}': {e}", path.display())))?;
        self.assign(&loaded, &path.display().to_string())
    }

    /// Replaces every value from `tensors` (names and shapes must match); `origin` names the
    /// source in errors.
    pub fn assign(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
        for (name, var) in &self.vars {
            let value = tensors
                .get(name)
                .ok_or_else(|| Error::InvalidInput(format!("'{origin}' has no tensor '{name}'")))?;
            if value.dims() != var.dims() {
                return Err(Error::InvalidInput(format!(
                    "'{origin}': tensor '{name}' is {:?}, the model expects {:?}",
                    value.dims(),
                    var.dims()
                )));
            }
            var.set(&value.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        if let Some(extra) = tensors.keys().find(|name| !self.vars.contains_key(*name)) {
            return Err(Error::InvalidInput(format!(
                "'{origin}' has tensor '{extra}' that the model does not use"
            )));
        }
        Ok(())
    }
}
