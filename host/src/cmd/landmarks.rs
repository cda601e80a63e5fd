//! `facelock landmarks train|eval`: the 5-point landmark cascade on detector boxes.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use facelock_host::data::{decode_file, Dataset, DecodedImage, FivePoints, Landmarks};
use facelock_host::landmarks::{self, FaceSample, LandmarkModel, TrainConfig};
use facelock_host::progress;
use facelock_shared::detect::{Detection, DetectorConfig, FaceDetector};
use facelock_shared::landmarks::{interocular_error, StageInput};
use rayon::prelude::*;

/// Landmark model commands.
#[derive(Subcommand)]
pub enum LandmarksCmd {
    /// Train the cascade on labelled faces (e.g. LFW peopleDevTrain) and write it as ONNX.
    Train(TrainArgs),
    /// Detect and locate faces; report detection rate and landmark error, write a landmarks TSV.
    Eval(EvalArgs),
}

impl LandmarksCmd {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            LandmarksCmd::Train(args) => args.run(),
            LandmarksCmd::Eval(args) => args.run(),
        }
    }
}

/// Arguments of `facelock landmarks train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Root folder with one sub-folder per identity.
    #[arg(long, env = "FACELOCK_IMAGES")]
    images: PathBuf,
    /// Only these identities (LFW people file or one name per line), e.g. peopleDevTrain.txt.
    #[arg(long)]
    identities: Option<PathBuf>,
    /// The labelled landmarks TSV (paths relative to --images).
    #[arg(long)]
    landmarks: PathBuf,
    /// Output ONNX file.
    #[arg(long)]
    out: PathBuf,
    /// What each cascade stage reads, in order: `face` (a 32×32 patch of the whole face),
    /// `gradients` or `pixels` (five 14×14 patches, one around each current point: gradient
    /// orientation histograms, or grey values); `N*kind` repeats. Up to 16 stages.
    #[arg(long, default_value = "2*face,4*gradients,2*pixels", value_parser = parse_inputs)]
    inputs: StageInputs,
    /// Starting points per face (the detector box, then jittered boxes).
    #[arg(long, default_value_t = 4)]
    perturbations: usize,
    /// Use at most this many labelled images (the first in path order).
    #[arg(long)]
    max_images: Option<usize>,
    /// Seed of the box jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Local-patch sampling step in whole-face patch pixels (smaller: finer and narrower).
    #[arg(long, default_value_t = 0.7)]
    local_step: f32,
    /// Also train on each training face mirrored left to right.
    #[arg(long)]
    mirror: bool,
}

/// The stage inputs of `--inputs`.
#[derive(Debug, Clone)]
struct StageInputs(Vec<StageInput>);

fn parse_inputs(text: &str) -> Result<StageInputs, String> {
    landmarks::parse_stage_inputs(text).map(StageInputs)
}

impl TrainArgs {
    fn run(self) -> anyhow::Result<()> {
        let start = Instant::now();
        let dataset = Dataset::from_folder(&self.images, self.identities.as_deref(), 1)?;
        let truth = Landmarks::load(&self.landmarks)?;
        let mut labelled: Vec<(PathBuf, FivePoints)> = dataset
            .samples
            .iter()
            .filter_map(|s| truth.get(&s.path).map(|p| (s.path.clone(), p)))
            .collect();
        labelled.truncate(self.max_images.unwrap_or(usize::MAX));
        anyhow::ensure!(
            !labelled.is_empty(),
            "no image under {} has a row in {}",
            self.images.display(),
            self.landmarks.display()
        );

        let bar = progress::bar(labelled.len() as u64, "detecting faces");
        let found: Vec<Option<FaceSample>> = labelled
            .par_iter()
            .map_init(detector, |detector, (relative, points)| {
                let detector = detector.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
                let image = decode_file(&dataset.root.join(relative))?;
                let detections = detector.detect(&image.view()?);
                bar.inc(1);
                Ok(
                    landmarks::detection_for(&detections, points).map(|face| FaceSample {
                        image,
                        face,
                        truth: *points,
                    }),
                )
            })
            .collect::<anyhow::Result<_>>()?;
        bar.finish_and_clear();
        let samples: Vec<FaceSample> = found.into_iter().flatten().collect();
        let missed = labelled.len() - samples.len();
        if missed > 0 {
            tracing::warn!(
                "{missed} of {} labelled images have no detection holding the labelled face; \
                 they are not used",
                labelled.len()
            );
        }

        let config = TrainConfig {
            inputs: self.inputs.0.clone(),
            perturbations: self.perturbations,
            seed: self.seed,
            local_step: self.local_step,
            mirror: self.mirror,
            ..TrainConfig::default()
        };
        let bar = progress::bar(self.inputs.0.len() as u64, "training stages");
        let (cascade, box_error, reports) =
            landmarks::train(&samples, &config, |stage| bar.set_position(stage as u64))?;
        bar.finish_and_clear();
        facelock_host::onnx::runner::write_model(&cascade.to_onnx(), &self.out)?;

        println!(
            "trained on {} faces ({} held out) in {:.0} s; held-out error, % of the eye distance:",
            samples.len() - samples.len().div_ceil(10),
            samples.len().div_ceil(10),
            start.elapsed().as_secs_f64()
        );
        println!("  box shape only  {:6.2} %", box_error * 100.0);
        for (i, report) in reports.iter().enumerate() {
            println!(
                "  stage {}         {:6.2} %  (ridge {:e} x rows)",
                i + 1,
                report.validation_error * 100.0,
                report.ridge
            );
        }
        println!("wrote {}", self.out.display());
        Ok(())
    }
}

/// Arguments of `facelock landmarks eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The landmark model (ONNX from `facelock landmarks train`).
    #[arg(long)]
    model: PathBuf,
    /// Root folder with one sub-folder per identity.
    #[arg(long, env = "FACELOCK_IMAGES")]
    images: PathBuf,
    /// Only these identities, e.g. peopleDevTest.txt.
    #[arg(long)]
    identities: Option<PathBuf>,
    /// Labelled landmarks to measure the error against (paths relative to --images).
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Write the predicted landmarks of every image with a face to this TSV.
    #[arg(long)]
    out_landmarks: Option<PathBuf>,
    /// Use at most this many images (the first in path order).
    #[arg(long)]
    max_images: Option<usize>,
}

/// What happened to one image.
struct Outcome {
    relative: PathBuf,
    faces: usize,
    points: Option<FivePoints>,
    /// Whether the largest detection holds the labelled face (None without labels).
    right_face: Option<bool>,
    error: Option<f32>,
    box_error: Option<f32>,
}

impl EvalArgs {
    fn run(self) -> anyhow::Result<()> {
        let start = Instant::now();
        let model = LandmarkModel::load(&self.model)?;
        let dataset = Dataset::from_folder(&self.images, self.identities.as_deref(), 1)?;
        let truth = self.truth.as_deref().map(Landmarks::load).transpose()?;
        let count = self
            .max_images
            .unwrap_or(usize::MAX)
            .min(dataset.samples.len());
        let samples = &dataset.samples[..count];

        let bar = progress::bar(count as u64, "locating faces");
        let outcomes: Vec<Outcome> = samples
            .par_iter()
            .map_init(detector, |detector, sample| {
                let detector = detector.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
                let image = decode_file(&dataset.root.join(&sample.path))?;
                let labelled = truth.as_ref().and_then(|t| t.get(&sample.path));
                let outcome = locate(detector, &model, &image, &sample.path, labelled.as_ref())?;
                bar.inc(1);
                Ok(outcome)
            })
            .collect::<anyhow::Result<_>>()?;
        bar.finish_and_clear();

        let with_face = outcomes.iter().filter(|o| o.faces > 0).count();
        let several = outcomes.iter().filter(|o| o.faces > 1).count();
        println!(
            "{count} images in {:.1} s: a face in {with_face} ({:.1} %), several faces in {several}",
            start.elapsed().as_secs_f64(),
            100.0 * with_face as f64 / count.max(1) as f64
        );
        if truth.is_some() {
            let labelled: Vec<&Outcome> =
                outcomes.iter().filter(|o| o.right_face.is_some()).collect();
            let right = labelled
                .iter()
                .filter(|o| o.right_face == Some(true))
                .count();
            println!(
                "  largest face is the labelled one: {right} of {} labelled images ({:.1} %)",
                labelled.len(),
                100.0 * right as f64 / labelled.len().max(1) as f64
            );
            let summary = |values: Vec<f32>| -> (f32, f32, f32) {
                let mut values = values;
                values.sort_by(f32::total_cmp);
                let mean = values.iter().sum::<f32>() / values.len().max(1) as f32;
                let median = values.get(values.len() / 2).copied().unwrap_or(f32::NAN);
                let over =
                    values.iter().filter(|v| **v > 0.1).count() as f32 / values.len().max(1) as f32;
                (mean, median, over)
            };
            let (mean, median, over) = summary(outcomes.iter().filter_map(|o| o.error).collect());
            let (box_mean, box_median, _) =
                summary(outcomes.iter().filter_map(|o| o.box_error).collect());
            println!(
                "  landmark error (% of the eye distance, on the right faces): mean {:.2}, \
                 median {:.2}, over 10 %: {:.1} % of faces",
                mean * 100.0,
                median * 100.0,
                over * 100.0
            );
            println!(
                "  box shape alone: mean {:.2}, median {:.2}",
                box_mean * 100.0,
                box_median * 100.0
            );
        }
        if let Some(path) = &self.out_landmarks {
            let mut predicted = Landmarks::default();
            for outcome in &outcomes {
                if let Some(points) = outcome.points {
                    predicted.insert(outcome.relative.clone(), points);
                }
            }
            predicted.save(path)?;
            println!(
                "wrote {} predicted rows to {}",
                predicted.len(),
                path.display()
            );
        }
        Ok(())
    }
}

fn locate(
    detector: &mut FaceDetector,
    model: &LandmarkModel,
    image: &DecodedImage,
    relative: &Path,
    labelled: Option<&FivePoints>,
) -> anyhow::Result<Outcome> {
    let view = image.view()?;
    let detections: Vec<Detection> = detector.detect(&view);
    let mut outcome = Outcome {
        relative: relative.to_path_buf(),
        faces: detections.len(),
        points: None,
        right_face: None,
        error: None,
        box_error: None,
    };
    let Some(largest) = detections.first() else {
        outcome.right_face = labelled.map(|_| false);
        return Ok(outcome);
    };
    let points = model
        .locate(&view, &largest.face)
        .with_context(|| format!("locating landmarks in {}", relative.display()))?;
    outcome.points = Some(points);
    if let Some(truth) = labelled {
        let right = landmarks::detection_for(&detections[..1], truth).is_some();
        outcome.right_face = Some(right);
        if right {
            outcome.error = interocular_error(&points, truth);
            let start = model.box_shape_in(&largest.face);
            outcome.box_error = interocular_error(&start, truth);
        }
    }
    Ok(outcome)
}

/// One detector per worker thread, with the default settings.
pub fn detector() -> Result<FaceDetector, facelock_shared::detect::DetectError> {
    FaceDetector::embedded(&DetectorConfig::default())
}
