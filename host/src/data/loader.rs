//! Shuffled, seeded, multi-threaded batch loader: decode + align (through the crop cache) +
//! random horizontal flip on worker threads, a bounded number of batches ahead of training.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use facelock_shared::align::{normalise_rgb, ALIGNED_LEN};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::data::align::{align_image_rgb, AlignConfig};
use crate::data::cache::CropCache;
use crate::data::folder::Dataset;
use crate::data::landmarks::{FivePoints, Landmarks};
use crate::{Error, Result};

/// How batches are made.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Worker threads decoding and aligning.
    pub workers: usize,
    /// Batches prepared ahead of the one being consumed (at least 1).
    pub prefetch_batches: usize,
    /// Seed of the shuffle and flips; epoch `e` uses a stream derived from (seed, e).
    pub seed: u64,
    /// Drop the last, smaller batch of an epoch.
    pub drop_last: bool,
    /// Probability of mirroring an image left-right, in [0, 1].
    pub flip_probability: f32,
    /// Standard deviation of Gaussian noise added to each landmark coordinate before
    /// alignment, as a fraction of the inter-ocular distance, in [0, 0.5]; 0 turns it off.
    /// Trains the embedding on the misalignments a landmark predictor makes. Jittered
    /// samples are decoded and aligned every time (the crop cache cannot hold them).
    pub landmark_jitter: f32,
    /// Crop geometry and normalisation.
    pub align: AlignConfig,
    /// Directory of the aligned-crop cache; `None` decodes every image every epoch.
    pub cache_dir: Option<PathBuf>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 64,
            workers: 2,
            prefetch_batches: 4,
            seed: 0,
            drop_last: true,
            flip_probability: 0.5,
            landmark_jitter: 0.0,
            align: AlignConfig::default(),
            cache_dir: None,
        }
    }
}

/// One training batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Model input, [batch, 3, 112, 112], normalised.
    pub images: Vec<f32>,
    /// Identity labels, [batch].
    pub labels: Vec<u32>,
    /// Indices into [`Dataset::samples`], [batch].
    pub samples: Vec<usize>,
    /// Whether each image was mirrored, [batch].
    pub flipped: Vec<bool>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Everything the workers share.
struct Shared {
    dataset: Dataset,
    landmarks: Landmarks,
    cache: Option<CropCache>,
    config: LoaderConfig,
}

/// Makes epochs of batches from a [`Dataset`].
pub struct BatchLoader {
    shared: Arc<Shared>,
}

impl BatchLoader {
    /// A loader over `dataset`; images without `landmarks` use the centred-crop fallback (counted
    /// in a warning).
    pub fn new(
        dataset: Dataset,
        landmarks: Option<Landmarks>,
        config: LoaderConfig,
    ) -> Result<BatchLoader> {
        if config.batch_size == 0 || config.workers == 0 {
            return Err(Error::InvalidInput(
                "batch size and workers must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.flip_probability) {
            return Err(Error::InvalidInput(format!(
                "flip probability {} is not in [0, 1]",
                config.flip_probability
            )));
        }
        if !(0.0..=0.5).contains(&config.landmark_jitter) {
            return Err(Error::InvalidInput(format!(
                "landmark jitter {} is not in [0, 0.5] (a fraction of the eye distance)",
                config.landmark_jitter
            )));
        }
        config
            .align
            .normalisation
            .validate()
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let landmarks = landmarks.unwrap_or_default();
        let without = dataset
            .samples
            .iter()
            .filter(|s| landmarks.get(&s.path).is_none())
            .count();
        if without > 0 {
            tracing::warn!(
                "{without} of {} images have no landmarks: centred square crop fallback ({})",
                dataset.samples.len(),
                config.align.crop_fraction
            );
        }
        let cache = config
            .cache_dir
            .as_deref()
            .map(CropCache::open)
            .transpose()?;
        Ok(BatchLoader {
            shared: Arc::new(Shared {
                dataset,
                landmarks,
                cache,
                config,
            }),
        })
    }

    /// The data set being loaded.
    pub fn dataset(&self) -> &Dataset {
        &self.shared.dataset
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (
            self.shared.dataset.samples.len(),
            self.shared.config.batch_size,
        );
        if self.shared.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Cache (hits, misses) so far, if a cache is used.
    pub fn cache_counts(&self) -> Option<(u64, u64)> {
        self.shared.cache.as_ref().map(CropCache::counts)
    }

    /// Starts epoch `epoch`: shuffles with a stream derived from (seed, epoch) and starts the
    /// workers. Batches come out in a fixed order whatever the thread timing.
    pub fn epoch(&self, epoch: u64) -> EpochBatches {
        let config = &self.shared.config;
        let mut rng =
            StdRng::seed_from_u64(config.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut order: Vec<usize> = (0..self.shared.dataset.samples.len()).collect();
        order.shuffle(&mut rng);
        let plan: Vec<PlanItem> = order
            .into_iter()
            .map(|index| PlanItem {
                index,
                flip: rng.random::<f32>() < config.flip_probability,
                jitter_seed: rng.random(),
            })
            .collect();

        let total = self.batches_per_epoch();
        let progress = Arc::new(Progress {
            next_to_build: AtomicUsize::new(0),
            consumed: Mutex::new(0),
            advanced: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let plan = Arc::new(plan);
        let (sender, receiver) = channel();
        let workers = (0..config.workers)
            .map(|_| {
                let job = Worker {
                    shared: Arc::clone(&self.shared),
                    plan: Arc::clone(&plan),
                    progress: Arc::clone(&progress),
                    sender: sender.clone(),
                    total,
                };
                std::thread::spawn(move || job.run())
            })
            .collect();
        EpochBatches {
            receiver: Some(receiver),
            pending: BTreeMap::new(),
            next: 0,
            total,
            progress,
            workers,
        }
    }
}

/// One sample of an epoch: which image, mirrored or not, and the seed of its landmark noise.
#[derive(Clone, Copy)]
struct PlanItem {
    index: usize,
    flip: bool,
    jitter_seed: u64,
}

/// Moves every coordinate of `points` by independent Gaussian noise with standard deviation
/// `sigma` times the inter-ocular distance (points 0 and 1 are the eye centres).
pub fn jitter_landmarks(points: &FivePoints, sigma: f32, rng: &mut impl Rng) -> FivePoints {
    let eyes = (points[1][0] - points[0][0]).hypot(points[1][1] - points[0][1]);
    let spread = sigma * eyes;
    let mut moved = *points;
    for point in moved.iter_mut() {
        // Box-Muller: two independent standard normals from two uniforms in (0, 1].
        let u = 1.0 - rng.random::<f32>();
        let angle = std::f32::consts::TAU * rng.random::<f32>();
        let radius = (-2.0 * u.ln()).sqrt() * spread;
        point[0] += radius * angle.cos();
        point[1] += radius * angle.sin();
    }
    moved
}

/// Coordination between the consumer and the workers of one epoch.
struct Progress {
    next_to_build: AtomicUsize,
    consumed: Mutex<usize>,
    advanced: Condvar,
    stop: AtomicBool,
}

struct Worker {
    shared: Arc<Shared>,
    plan: Arc<Vec<PlanItem>>,
    progress: Arc<Progress>,
    sender: Sender<(usize, Result<Batch>)>,
    total: usize,
}

impl Worker {
    fn run(self) {
        let ahead = self.shared.config.prefetch_batches.max(1);
        loop {
            let k = self.progress.next_to_build.fetch_add(1, Ordering::Relaxed);
            if k >= self.total {
                return;
            }
            // Wait until batch k is within `ahead` of what the consumer has taken.
            let mut consumed = self
                .progress
                .consumed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            while k >= *consumed + ahead && !self.progress.stop.load(Ordering::Relaxed) {
                consumed = self
                    .progress
                    .advanced
                    .wait(consumed)
                    .unwrap_or_else(|e| e.into_inner());
            }
            drop(consumed);
            if self.progress.stop.load(Ordering::Relaxed) {
                return;
            }
            let batch = self.build(k);
            if self.sender.send((k, batch)).is_err() {
                return;
            }
        }
    }

    fn build(&self, k: usize) -> Result<Batch> {
        let Shared {
            dataset,
            landmarks,
            cache,
            config,
        } = &*self.shared;
        let start = k * config.batch_size;
        let end = (start + config.batch_size).min(self.plan.len());
        let items = &self.plan[start..end];

        let mut batch = Batch {
            images: vec![0.0; items.len() * ALIGNED_LEN],
            labels: Vec::with_capacity(items.len()),
            samples: Vec::with_capacity(items.len()),
            flipped: Vec::with_capacity(items.len()),
        };
        for (slot, item) in batch.images.chunks_mut(ALIGNED_LEN).zip(items) {
            let (index, flip) = (item.index, item.flip);
            let sample = &dataset.samples[index];
            let path = dataset.full_path(sample);
            let points = landmarks.get(&sample.path);
            let crop = match (points, cache) {
                (Some(points), _) if config.landmark_jitter > 0.0 => {
                    let mut rng = StdRng::seed_from_u64(item.jitter_seed);
                    let moved = jitter_landmarks(&points, config.landmark_jitter, &mut rng);
                    align_image_rgb(&path, Some(&moved), &config.align)?
                }
                (points, Some(cache)) => {
                    cache.get_or_align(&path, points.as_ref(), &config.align)?
                }
                (points, None) => align_image_rgb(&path, points.as_ref(), &config.align)?,
            };
            normalise_rgb(&crop, &config.align.normalisation, flip, slot).map_err(|source| {
                Error::Align {
                    path: path.clone(),
                    source,
                }
            })?;
            batch.labels.push(sample.label);
            batch.samples.push(index);
            batch.flipped.push(flip);
        }
        Ok(batch)
    }
}

/// The batches of one epoch, in order; an unreadable image makes its batch an error naming it.
/// Dropping this stops and joins the workers.
pub struct EpochBatches {
    receiver: Option<Receiver<(usize, Result<Batch>)>>,
    pending: BTreeMap<usize, Result<Batch>>,
    next: usize,
    total: usize,
    progress: Arc<Progress>,
    workers: Vec<JoinHandle<()>>,
}

impl EpochBatches {
    /// Batches in this epoch.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl Iterator for EpochBatches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.total {
            return None;
        }
        let receiver = self.receiver.as_ref()?;
        while !self.pending.contains_key(&self.next) {
            match receiver.recv() {
                Ok((k, batch)) => {
                    self.pending.insert(k, batch);
                }
                Err(_) => {
                    let k = self.next;
                    self.next = self.total;
                    return Some(Err(Error::InvalidInput(format!(
                        "loader workers stopped before batch {k} (a worker panicked)"
                    ))));
                }
            }
        }
        let batch = self.pending.remove(&self.next);
        self.next += 1;
        let mut consumed = self
            .progress
            .consumed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *consumed = self.next;
        drop(consumed);
        self.progress.advanced.notify_all();
        batch
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        self.progress.stop.store(true, Ordering::Relaxed);
        {
            // Take the lock so no worker misses the wake-up between its check and its wait.
            let _guard = self
                .progress
                .consumed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.progress.advanced.notify_all();
        }
        self.receiver = None;
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!("a batch loader worker panicked");
            }
        }
    }
}
