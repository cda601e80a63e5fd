//! Adapts the data loader ([`crate::data::BatchLoader`]) to the trainer's [`BatchSource`].
use super::trainer::{BatchSource, TrainBatch};
use crate::data::BatchLoader;
use crate::Result;

impl BatchSource for BatchLoader {
    fn batches_per_epoch(&self) -> usize {
        BatchLoader::batches_per_epoch(self)
    }

    fn epoch(&mut self, epoch: usize) -> Result<Box<dyn Iterator<Item = Result<TrainBatch>> + '_>> {
        let batches = BatchLoader::epoch(self, epoch as u64);
        Ok(Box::new(batches.map(|batch| {
            batch.map(|b| TrainBatch {
                images: b.images,
                labels: b.labels,
            })
        })))
    }
}
