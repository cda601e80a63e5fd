//! Training the landmark cascade: one ridge regression per stage, from grey patches around the
//! current estimate to the correction that reaches the labelled points.
//!
//! Each training face starts from the mean box shape in its detector box, and also from
//! `perturbations - 1` jittered boxes (shifted and scaled by up to `jitter` of the box side), so
//! later stages learn to correct the errors earlier ones leave. Every tenth face is held out:
//! it picks the ridge strength of each stage and gives the reported error.
use candle_core::{Device, Tensor};
use facelock_shared::landmarks::{self, FaceBox, StageInput, PATCH_LEN, STAGE_OUTPUTS};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::model::Cascade;
use crate::data::{DecodedImage, FivePoints};
use crate::{Error, Result};

/// One labelled face: the decoded image, its detector box and its true points.
pub struct FaceSample {
    /// The image, grey or RGB.
    pub image: DecodedImage,
    /// The detector's box around the labelled face.
    pub face: FaceBox,
    /// The labelled points.
    pub truth: FivePoints,
}

/// How to train the cascade.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// What each stage reads; one entry per stage.
    pub inputs: Vec<StageInput>,
    /// Starting points per training face (the box itself, then jittered boxes).
    pub perturbations: usize,
    /// Largest box shift (fraction of its side) and log-scale change of a jittered start.
    pub jitter: f32,
    /// Ridge strengths tried per stage, as multiples of the number of training rows.
    pub ridges: Vec<f64>,
    /// Seed of the jitter.
    pub seed: u64,
    /// Patch-frame pixels per local-patch pixel of the local stages.
    pub local_step: f32,
    /// Also train on every training face mirrored left to right (held-out faces never are).
    pub mirror: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            inputs: vec![StageInput::Face; 3],
            perturbations: 4,
            jitter: 0.08,
            ridges: vec![1e-4, 1e-3, 1e-2, 1e-1, 1.0],
            seed: 1,
            local_step: 0.5,
            mirror: false,
        }
    }
}

/// Parses a list of stage inputs such as `2*face,4*gradients,pixels`: comma-separated
/// [`StageInput`] names, each optionally repeated `N*` times; 1 to
/// [`landmarks::MAX_STAGES`] stages.
pub fn parse_stage_inputs(text: &str) -> std::result::Result<Vec<StageInput>, String> {
    let mut inputs = Vec::new();
    for item in text.split(',') {
        let (count, name) = match item.split_once('*') {
            Some((count, name)) => (
                count
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("'{item}': the count before '*' is not a number"))?,
                name,
            ),
            None => (1, item),
        };
        let input = StageInput::from_name(name)
            .ok_or_else(|| format!("'{item}': stage inputs are face, gradients or pixels"))?;
        inputs.extend(std::iter::repeat_n(input, count));
    }
    if inputs.is_empty() || inputs.len() > landmarks::MAX_STAGES {
        return Err(format!(
            "{} stages: use 1 to {}",
            inputs.len(),
            landmarks::MAX_STAGES
        ));
    }
    Ok(inputs)
}

/// What one stage achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// The chosen ridge strength (multiple of the training rows).
    pub ridge: f64,
    /// Mean inter-ocular normalised error on the held-out faces after this stage.
    pub validation_error: f32,
}

/// A start of the cascade: which face, and the current estimate.
struct State {
    sample: usize,
    points: FivePoints,
}

/// Trains a cascade on `samples`; `progress(stage)` is called as each stage starts. Returns the
/// cascade, the held-out error of the box shape alone, and one report per stage.
pub fn train(
    samples: &[FaceSample],
    config: &TrainConfig,
    mut progress: impl FnMut(usize),
) -> Result<(Cascade, f32, Vec<StageReport>)> {
    if samples.len() < 20 {
        return Err(Error::InvalidInput(format!(
            "{} labelled faces are too few to train landmarks (need at least 20)",
            samples.len()
        )));
    }
    let stages = config.inputs.len();
    if stages == 0 || config.perturbations == 0 || config.ridges.is_empty() {
        return Err(Error::InvalidInput(
            "landmark training needs at least one stage, start and ridge strength".into(),
        ));
    }
    if stages > landmarks::MAX_STAGES {
        return Err(Error::InvalidInput(format!(
            "{stages} landmark stages: at most {}",
            landmarks::MAX_STAGES
        )));
    }
    if !(config.local_step.is_finite() && config.local_step > 0.0) {
        return Err(Error::InvalidInput(format!(
            "landmark local-patch step {} must be positive",
            config.local_step
        )));
    }
    let held_out = |i: usize| i.is_multiple_of(10);

    // The mean shape in the box, over the training faces.
    let mut box_shape = [[0.0f32; 2]; 5];
    let training: Vec<&FaceSample> = (0..samples.len())
        .filter(|i| !held_out(*i))
        .map(|i| &samples[i])
        .collect();
    for sample in &training {
        for (sum, p) in box_shape.iter_mut().zip(sample.face.to_unit(&sample.truth)) {
            sum[0] += p[0] / training.len() as f32;
            sum[1] += p[1] / training.len() as f32;
        }
    }

    // Mirrored copies of the training faces follow the originals (indices from samples.len()).
    let mirrored: Vec<FaceSample> = if config.mirror {
        training.iter().map(|s| mirror(s)).collect()
    } else {
        Vec::new()
    };
    let samples: Vec<&FaceSample> = samples.iter().chain(&mirrored).collect();
    let originals = samples.len() - mirrored.len();

    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut train_states = Vec::new();
    let mut valid_states = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        if i < originals && held_out(i) {
            valid_states.push(State {
                sample: i,
                points: sample.face.from_unit(&box_shape),
            });
            continue;
        }
        for p in 0..config.perturbations {
            let face = if p == 0 {
                sample.face
            } else {
                jitter(&sample.face, config.jitter, &mut rng)
            };
            train_states.push(State {
                sample: i,
                points: face.from_unit(&box_shape),
            });
        }
    }
    let box_error = mean_error(&samples, &valid_states);

    let mut weights = vec![0.0f32; PATCH_LEN * STAGE_OUTPUTS * stages];
    let mut bias = vec![0.0f32; STAGE_OUTPUTS * stages];
    let width = STAGE_OUTPUTS * stages;
    let mut reports = Vec::new();
    let mut inputs = [StageInput::Face; landmarks::MAX_STAGES];
    inputs[..stages].copy_from_slice(&config.inputs);
    let info = landmarks::CascadeInfo {
        stages,
        box_shape,
        inputs,
        local_step: config.local_step,
    };
    for stage in 0..stages {
        progress(stage);
        let (train_x, train_y, train_t) = design(&samples, &train_states, &info, stage)?;
        let (valid_x, valid_y, valid_t) = design(&samples, &valid_states, &info, stage)?;
        let rows = train_states.len();
        let (gram, cross) = normal_equations(&train_x, &train_y, rows)?;

        let mut best: Option<(f64, Vec<f64>, f64)> = None;
        for &ridge in &config.ridges {
            let solution = ridge_solve(&gram, &cross, ridge * rows as f64)?;
            let mse = squared_error(&valid_x, &valid_y, &solution);
            if best.as_ref().is_none_or(|(_, _, b)| mse < *b) {
                best = Some((ridge, solution, mse));
            }
        }
        let (ridge, solution, _) = best.expect("at least one ridge strength");
        for row in 0..PATCH_LEN {
            for o in 0..STAGE_OUTPUTS {
                weights[row * width + stage * STAGE_OUTPUTS + o] =
                    solution[row * STAGE_OUTPUTS + o] as f32;
            }
        }
        for o in 0..STAGE_OUTPUTS {
            bias[stage * STAGE_OUTPUTS + o] = solution[PATCH_LEN * STAGE_OUTPUTS + o] as f32;
        }

        advance(&mut train_states, &train_x, &train_t, &solution)?;
        advance(&mut valid_states, &valid_x, &valid_t, &solution)?;
        let validation_error = mean_error(&samples, &valid_states);
        tracing::info!(
            "landmark stage {}: ridge {ridge:e} x rows, held-out error {:.2} % of the eye distance",
            stage + 1,
            validation_error * 100.0
        );
        reports.push(StageReport {
            ridge,
            validation_error,
        });
    }
    let cascade = Cascade {
        stages,
        weights,
        bias,
        box_shape,
        inputs: config.inputs.clone(),
        local_step: config.local_step,
    };
    Ok((cascade, box_error, reports))
}

/// The face mirrored left to right: image, box, and points with the left and right eyes and
/// mouth corners swapped (pixel centres at integer coordinates).
pub(crate) fn mirror(sample: &FaceSample) -> FaceSample {
    let image = &sample.image;
    let (width, channels) = (image.width, image.channels);
    let mut pixels = Vec::with_capacity(image.pixels.len());
    for row in image.pixels.chunks_exact(width * channels) {
        for pixel in row.chunks_exact(channels).rev() {
            pixels.extend_from_slice(pixel);
        }
    }
    let flip = |p: [f32; 2]| [(width - 1) as f32 - p[0], p[1]];
    let t = sample.truth;
    let face = sample.face;
    FaceSample {
        image: DecodedImage {
            pixels,
            width,
            height: image.height,
            channels,
        },
        face: FaceBox {
            x: (width - 1) as f32 - face.x - face.width,
            ..face
        },
        truth: [flip(t[1]), flip(t[0]), flip(t[2]), flip(t[4]), flip(t[3])],
    }
}

fn jitter(face: &FaceBox, amount: f32, rng: &mut impl Rng) -> FaceBox {
    let scale = (rng.random_range(-amount..amount)).exp();
    let (cx, cy) = (face.x + face.width / 2.0, face.y + face.height / 2.0);
    let (dx, dy) = (
        rng.random_range(-amount..amount) * face.width,
        rng.random_range(-amount..amount) * face.height,
    );
    let (width, height) = (face.width * scale, face.height * scale);
    FaceBox {
        x: cx + dx - width / 2.0,
        y: cy + dy - height / 2.0,
        width,
        height,
    }
}

/// Features (patch values and a constant 1), targets, and each state's patch transform.
type Design = (Vec<f64>, Vec<f64>, Vec<facelock_shared::align::Similarity>);

fn design(
    samples: &[&FaceSample],
    states: &[State],
    info: &landmarks::CascadeInfo,
    stage: usize,
) -> Result<Design> {
    let rows: Vec<(Vec<f64>, [f32; STAGE_OUTPUTS], _)> = states
        .par_iter()
        .map(|state| {
            let sample = samples[state.sample];
            let image = sample.image.view().map_err(align_error)?;
            let to_patch = landmarks::patch_transform(&state.points).map_err(align_error)?;
            let mut patch = vec![0.0f32; PATCH_LEN];
            landmarks::stage_input(&image, info, stage, &to_patch, &state.points, &mut patch)
                .map_err(align_error)?;
            let mut features: Vec<f64> = patch.iter().map(|v| *v as f64).collect();
            features.push(1.0);
            let target = landmarks::target_update(&to_patch, &sample.truth);
            Ok((features, target, to_patch))
        })
        .collect::<Result<_>>()?;
    let mut x = Vec::with_capacity(rows.len() * (PATCH_LEN + 1));
    let mut y = Vec::with_capacity(rows.len() * STAGE_OUTPUTS);
    let mut transforms = Vec::with_capacity(rows.len());
    for (features, target, to_patch) in rows {
        x.extend(features);
        y.extend(target.iter().map(|v| *v as f64));
        transforms.push(to_patch);
    }
    Ok((x, y, transforms))
}

fn candle_error(e: candle_core::Error) -> Error {
    Error::InvalidInput(format!("landmark training: {e}"))
}

fn align_error(e: facelock_shared::align::AlignError) -> Error {
    Error::InvalidInput(format!("landmark training: {e}"))
}

/// XᵀX [k, k] and XᵀY [k, 10] for X [rows, k] (k = 1025), through candle's f64 matmul.
fn normal_equations(x: &[f64], y: &[f64], rows: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let k = PATCH_LEN + 1;
    let device = Device::Cpu;
    let x = Tensor::from_slice(x, (rows, k), &device).map_err(candle_error)?;
    let y = Tensor::from_slice(y, (rows, STAGE_OUTPUTS), &device).map_err(candle_error)?;
    let xt = x.t().and_then(|t| t.contiguous()).map_err(candle_error)?;
    let gram = xt.matmul(&x).map_err(candle_error)?;
    let cross = xt.matmul(&y).map_err(candle_error)?;
    let flat = |t: Tensor| -> Result<Vec<f64>> {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f64>())
            .map_err(candle_error)
    };
    Ok((flat(gram)?, flat(cross)?))
}

/// Solves (G + λ·I) W = C by Cholesky; the last (constant) feature is not penalised.
fn ridge_solve(gram: &[f64], cross: &[f64], lambda: f64) -> Result<Vec<f64>> {
    let k = PATCH_LEN + 1;
    let mut l = gram.to_vec();
    for i in 0..k - 1 {
        l[i * k + i] += lambda;
    }
    // Tiny jitter keeps the factorisation defined when a pixel never varies.
    l[(k - 1) * k + k - 1] += 1e-9;
    for j in 0..k {
        let mut diagonal = l[j * k + j];
        for p in 0..j {
            diagonal -= l[j * k + p] * l[j * k + p];
        }
        if diagonal.is_nan() || diagonal <= 0.0 {
            return Err(Error::InvalidInput(
                "landmark training: the patch features are degenerate (normal equations not \
                 positive definite)"
                    .into(),
            ));
        }
        let diagonal = diagonal.sqrt();
        l[j * k + j] = diagonal;
        for i in j + 1..k {
            let mut value = l[i * k + j];
            let (row_i, row_j) = (i * k, j * k);
            for p in 0..j {
                value -= l[row_i + p] * l[row_j + p];
            }
            l[i * k + j] = value / diagonal;
        }
    }
    let mut solution = cross.to_vec();
    for o in 0..STAGE_OUTPUTS {
        // Forward: L z = c; backward: Lᵀ w = z.
        for i in 0..k {
            let mut value = solution[i * STAGE_OUTPUTS + o];
            for p in 0..i {
                value -= l[i * k + p] * solution[p * STAGE_OUTPUTS + o];
            }
            solution[i * STAGE_OUTPUTS + o] = value / l[i * k + i];
        }
        for i in (0..k).rev() {
            let mut value = solution[i * STAGE_OUTPUTS + o];
            for p in i + 1..k {
                value -= l[p * k + i] * solution[p * STAGE_OUTPUTS + o];
            }
            solution[i * STAGE_OUTPUTS + o] = value / l[i * k + i];
        }
    }
    Ok(solution)
}

fn predict(features: &[f64], solution: &[f64]) -> [f64; STAGE_OUTPUTS] {
    let mut out = [0.0; STAGE_OUTPUTS];
    for (row, value) in features.iter().enumerate() {
        for (o, out) in out.iter_mut().enumerate() {
            *out += value * solution[row * STAGE_OUTPUTS + o];
        }
    }
    out
}

fn squared_error(x: &[f64], y: &[f64], solution: &[f64]) -> f64 {
    let k = PATCH_LEN + 1;
    let rows = y.len() / STAGE_OUTPUTS;
    let total: f64 = (0..rows)
        .into_par_iter()
        .map(|r| {
            let predicted = predict(&x[r * k..(r + 1) * k], solution);
            predicted
                .iter()
                .zip(&y[r * STAGE_OUTPUTS..(r + 1) * STAGE_OUTPUTS])
                .map(|(p, t)| (p - t) * (p - t))
                .sum::<f64>()
        })
        .sum();
    total / rows.max(1) as f64
}

fn advance(
    states: &mut [State],
    x: &[f64],
    transforms: &[facelock_shared::align::Similarity],
    solution: &[f64],
) -> Result<()> {
    let k = PATCH_LEN + 1;
    states
        .par_iter_mut()
        .enumerate()
        .try_for_each(|(r, state)| {
            let update = predict(&x[r * k..(r + 1) * k], solution).map(|v| v as f32);
            state.points = landmarks::apply_update(&transforms[r], &update).map_err(align_error)?;
            Ok(())
        })
}

fn mean_error(samples: &[&FaceSample], states: &[State]) -> f32 {
    let errors: Vec<f32> = states
        .iter()
        .filter_map(|s| landmarks::interocular_error(&s.points, &samples[s.sample].truth))
        .collect();
    errors.iter().sum::<f32>() / errors.len().max(1) as f32
}
