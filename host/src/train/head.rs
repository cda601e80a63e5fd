//! The classifier head used in training: class weights and the loss from `crate::loss`.
use candle_core::{Device, Tensor};

use super::checkpoint::{HeadConfig, LossKind};
use super::trainer::Objective;
use crate::loss::{self, Head};
use crate::model::ParamStore;
use crate::Result;

/// Class weights `weight` [classes, dim] (+ `bias` [classes] for plain softmax) and the loss.
pub struct ClassifierHead {
    config: HeadConfig,
    store: ParamStore,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl ClassifierHead {
    /// A head for `config.classes` identities on `dim`-d embeddings, seeded.
    pub fn new(config: HeadConfig, dim: usize, seed: u64, device: &Device) -> Result<Self> {
        let mut store = ParamStore::new(seed ^ 0x4845_4144, device);
        let bound = (6.0 / (dim + config.classes) as f32).sqrt();
        let weight = store.uniform("weight", &[config.classes, dim], bound)?;
        let bias = match config.loss {
            LossKind::Softmax => Some(store.constant("bias", &[config.classes], 0.0, true)?),
            _ => None,
        };
        Ok(Self {
            config,
            store,
            weight,
            bias,
        })
    }

    /// Class weights [classes, dim].
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    fn head(&self, margin: f32) -> Head {
        match self.config.loss {
            LossKind::AmSoftmax => Head::AmSoftmax {
                scale: self.config.scale,
                margin,
            },
            LossKind::NormSoftmax => Head::NormSoftmax {
                scale: self.config.scale,
            },
            LossKind::Softmax => Head::Softmax,
        }
    }
}

impl Objective for ClassifierHead {
    fn loss(&self, embeddings: &Tensor, labels: &Tensor, margin: f32) -> Result<(Tensor, usize)> {
        let loss = match (&self.config.loss, &self.bias) {
            (LossKind::Softmax, Some(bias)) => {
                loss::softmax_loss(embeddings, &self.weight, bias, labels)?
            }
            (LossKind::NormSoftmax, _) => {
                loss::am_softmax_loss(embeddings, &self.weight, labels, self.config.scale, 0.0)?
            }
            _ => {
                loss::am_softmax_loss(embeddings, &self.weight, labels, self.config.scale, margin)?
            }
        };
        let correct = loss::top1_correct(
            &self.head(margin),
            &embeddings.detach(),
            &self.weight.detach(),
            self.bias.as_ref().map(Tensor::detach).as_ref(),
            labels,
        )?;
        Ok((loss, correct))
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn config(&self) -> HeadConfig {
        self.config.clone()
    }
}
