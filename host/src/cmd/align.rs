//! `facelock align`: writes aligned 112x112 PNGs of a data set and a montage to check by eye.
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use std::sync::atomic::{AtomicUsize, Ordering};

use facelock_host::data::align::align_decoded_rgb;
use facelock_host::data::{decode_file, AlignConfig, Dataset, FivePoints, Landmarks};
use facelock_host::landmarks::LandmarkModel;
use facelock_shared::align::{ALIGNED_SIZE, TEMPLATE_112};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Arguments of `facelock align`.
#[derive(Args)]
pub struct AlignArgs {
    /// Root folder with one sub-folder per identity.
    #[arg(long)]
    data: PathBuf,
    /// Landmarks TSV (paths relative to --data); images without a row use the centred crop.
    #[arg(long)]
    landmarks: Option<PathBuf>,
    /// Output folder; images keep their relative path with a .png extension.
    #[arg(long)]
    out: PathBuf,
    /// Only these identities (LFW people file or one name per line).
    #[arg(long)]
    people: Option<PathBuf>,
    /// Drop identities with fewer images.
    #[arg(long, default_value_t = 1)]
    min_images: usize,
    /// Align at most this many images (the first in path order).
    #[arg(long)]
    limit: Option<usize>,
    /// Centred-crop fraction for images without landmarks.
    #[arg(long, default_value_t = 0.5)]
    crop_fraction: f32,
    /// Also write a montage PNG of aligned samples, template points marked in green.
    #[arg(long)]
    montage: Option<PathBuf>,
    /// Number of images in the montage (spread evenly over the aligned set).
    #[arg(long, default_value_t = 64)]
    montage_count: usize,
    /// Find landmarks for images without a --landmarks row: the face detector, then the
    /// landmark cascade of --landmark-model.
    #[arg(long)]
    detect: bool,
    /// Landmark cascade for --detect (ONNX from `facelock landmarks train`).
    #[arg(long, default_value = "models/facelock-landmarks.onnx")]
    landmark_model: PathBuf,
    /// Write the landmarks used for every image (given or detected) to this TSV.
    #[arg(long)]
    write_landmarks: Option<PathBuf>,
}

impl AlignArgs {
    /// Aligns and writes the images, then the montage.
    pub fn run(self) -> anyhow::Result<()> {
        let dataset = Dataset::from_folder(&self.data, self.people.as_deref(), self.min_images)?;
        let landmarks = match &self.landmarks {
            Some(path) => Landmarks::load(path)?,
            None => Landmarks::default(),
        };
        let config = AlignConfig {
            crop_fraction: self.crop_fraction,
            ..AlignConfig::default()
        };
        let count = self.limit.unwrap_or(usize::MAX).min(dataset.samples.len());
        let samples = &dataset.samples[..count];
        let without = samples
            .iter()
            .filter(|s| landmarks.get(&s.path).is_none())
            .count();
        let cascade = self
            .detect
            .then(|| LandmarkModel::load(&self.landmark_model))
            .transpose()?;
        if without > 0 && cascade.is_none() {
            tracing::warn!("{without} images have no landmarks: centred square crop fallback");
        }
        let no_face = AtomicUsize::new(0);

        let bar = ProgressBar::new(count as u64).with_style(ProgressStyle::with_template(
            "aligning {bar:40} {pos}/{len} {per_sec} eta {eta}",
        )?);
        let aligned: Vec<(Vec<u8>, Option<FivePoints>)> = samples
            .par_iter()
            .map_init(super::landmarks::detector, |detector, sample| {
                let source = dataset.full_path(sample);
                let image = decode_file(&source)?;
                let mut points = landmarks.get(&sample.path);
                if let (None, Some(cascade)) = (points, &cascade) {
                    let detector = detector.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
                    let view = image.view()?;
                    match detector.largest(&view) {
                        Some(face) => points = Some(cascade.locate(&view, &face.face)?),
                        None => {
                            no_face.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("{}: no face found, centred crop", source.display());
                        }
                    }
                }
                let crop = align_decoded_rgb(&image, points.as_ref(), &config, &source)?;
                let target = self.out.join(&sample.path).with_extension("png");
                write_png(&target, &crop, ALIGNED_SIZE as u32, ALIGNED_SIZE as u32)?;
                bar.inc(1);
                Ok((crop, points))
            })
            .collect::<anyhow::Result<_>>()?;
        bar.finish_and_clear();
        println!("aligned {count} images into {}", self.out.display());
        if cascade.is_some() {
            let missed = no_face.load(Ordering::Relaxed);
            println!(
                "{} images without landmarks: detected {}, no face in {missed} (centred crop)",
                without,
                without - missed
            );
        }
        if let Some(path) = &self.write_landmarks {
            let mut table = Landmarks::default();
            for (sample, (_, points)) in samples.iter().zip(&aligned) {
                if let Some(points) = points {
                    table.insert(sample.path.clone(), *points);
                }
            }
            table.save(path)?;
            println!("landmarks of {} images: {}", table.len(), path.display());
        }
        let crops: Vec<Vec<u8>> = aligned.into_iter().map(|(crop, _)| crop).collect();

        if let Some(path) = &self.montage {
            let picked = self.montage_count.min(crops.len());
            let chosen: Vec<&[u8]> = (0..picked)
                .map(|i| crops[i * crops.len() / picked].as_slice())
                .collect();
            let montage = montage(&chosen);
            write_png(path, montage.as_raw(), montage.width(), montage.height())?;
            println!("montage of {picked} images: {}", path.display());
        }
        Ok(())
    }
}

/// Tiles RGB crops ([112, 112, 3] each) in a near-square grid with a 2 px gap, marking the
/// template points on each tile.
fn montage(crops: &[&[u8]]) -> RgbImage {
    let side = ALIGNED_SIZE as u32;
    let gap = 2;
    let columns = (crops.len() as f64).sqrt().ceil().max(1.0) as u32;
    let rows = (crops.len() as u32).div_ceil(columns).max(1);
    let mut image = RgbImage::new(columns * (side + gap) + gap, rows * (side + gap) + gap);
    for (i, crop) in crops.iter().enumerate() {
        let (x0, y0) = (
            gap + (i as u32 % columns) * (side + gap),
            gap + (i as u32 / columns) * (side + gap),
        );
        for (k, pixel) in crop.chunks(3).enumerate() {
            let (x, y) = (k as u32 % side, k as u32 / side);
            image.put_pixel(x0 + x, y0 + y, image::Rgb([pixel[0], pixel[1], pixel[2]]));
        }
        for point in TEMPLATE_112 {
            let (x, y) = (point[0].round() as u32, point[1].round() as u32);
            image.put_pixel(x0 + x, y0 + y, image::Rgb([0, 255, 0]));
        }
    }
    image
}

/// Writes an RGB buffer as PNG, creating the folder.
fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> anyhow::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
    }
    image::save_buffer(path, rgb, width, height, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("writing {}", path.display()))
}
