//! Five-point landmark regression geometry: the cascade's canonical grey patch, the starting
//! shape in a face box, and the update each stage applies.
//!
//! A landmark model is a cascade of linear stages. Stage `k` takes the current estimate of the
//! five points, maps it onto [`canonical_shape`] with a similarity, samples a
//! [`PATCH_SIZE`]² grey patch in that frame (zero mean, unit variance), and regresses a
//! correction of the five points in patch pixels. The first estimate is a mean shape placed in
//! the detector's face box. Only the regression itself is a model (ONNX, run by tract); this
//! file is the arithmetic both the trainer and the board must agree on.

use core::fmt;

use crate::align::{
    estimate_similarity, for_each_warped_pixel, AlignError, ImageRef, Similarity, TEMPLATE_112,
};

/// Side of the square grey patch a stage reads, in pixels.
pub const PATCH_SIZE: usize = 32;

/// Number of values in one patch: [32, 32], row-major.
pub const PATCH_LEN: usize = PATCH_SIZE * PATCH_SIZE;

/// Outputs of one stage: x, y corrections of the five points, in patch pixels.
pub const STAGE_OUTPUTS: usize = 10;

/// How much of the aligned 112x112 framing the patch keeps around the face: the template is
/// shrunk by this factor about the crop centre, so the patch also sees some forehead and chin.
pub const CONTEXT: f32 = 0.75;

/// Largest number of sub-samples per axis when a patch shrinks the image.
const MAX_SUPERSAMPLE: usize = 8;

/// Side of each of the five local patches a late stage reads, in pixels.
pub const LOCAL_SIZE: usize = 14;

/// Values of the five local patches; the rest of the [`PATCH_LEN`] input is zero.
pub const LOCAL_LEN: usize = 5 * LOCAL_SIZE * LOCAL_SIZE;

/// Most stages a landmark model may have.
pub const MAX_STAGES: usize = 16;

/// Orientation bins of [`extract_local_gradients`] (unsigned, 45° apart).
const ORIENTATIONS: usize = 4;

/// What a cascade stage reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StageInput {
    /// The whole-face grey patch ([`extract_patch`]).
    Face,
    /// Five local grey patches, one around each point ([`extract_local_patches`]).
    Pixels,
    /// Gradient-orientation histograms of five local patches ([`extract_local_gradients`]).
    Gradients,
}

impl StageInput {
    /// The name used in model metadata and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            StageInput::Face => "face",
            StageInput::Pixels => "pixels",
            StageInput::Gradients => "gradients",
        }
    }

    /// Parses [`StageInput::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim() {
            "face" => Some(StageInput::Face),
            "pixels" => Some(StageInput::Pixels),
            "gradients" => Some(StageInput::Gradients),
            _ => None,
        }
    }
}

/// A face box in image pixels: top-left corner and size.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaceBox {
    /// Left edge, pixels.
    pub x: f32,
    /// Top edge, pixels.
    pub y: f32,
    /// Width, pixels.
    pub width: f32,
    /// Height, pixels.
    pub height: f32,
}

impl FaceBox {
    /// Whether point `p` lies inside the box.
    pub fn contains(&self, p: [f32; 2]) -> bool {
        p[0] >= self.x
            && p[1] >= self.y
            && p[0] <= self.x + self.width
            && p[1] <= self.y + self.height
    }

    /// Area in square pixels.
    pub fn area(&self) -> f32 {
        self.width * self.height
    }

    /// Expresses image points relative to the box: (0, 0) top-left, (1, 1) bottom-right.
    pub fn to_unit(&self, points: &[[f32; 2]; 5]) -> [[f32; 2]; 5] {
        points.map(|p| [(p[0] - self.x) / self.width, (p[1] - self.y) / self.height])
    }

    /// Inverse of [`FaceBox::to_unit`]: box-relative points back to image pixels.
    pub fn from_unit(&self, unit: &[[f32; 2]; 5]) -> [[f32; 2]; 5] {
        unit.map(|p| [self.x + p[0] * self.width, self.y + p[1] * self.height])
    }
}

/// Where the five points sit in the patch, in patch pixels (pixel centres at integers).
pub fn canonical_shape() -> [[f32; 2]; 5] {
    let crop_centre = 112.0 / 2.0;
    let to_patch = PATCH_SIZE as f32 / 112.0;
    TEMPLATE_112.map(|p| {
        let x = crop_centre + (p[0] + 0.5 - crop_centre) * CONTEXT;
        let y = crop_centre + (p[1] + 0.5 - crop_centre) * CONTEXT;
        [x * to_patch - 0.5, y * to_patch - 0.5]
    })
}

/// The similarity from image pixels into the patch frame of the estimate `points`.
pub fn patch_transform(points: &[[f32; 2]; 5]) -> Result<Similarity, AlignError> {
    estimate_similarity(points, &canonical_shape())
}

/// Samples the grey patch of `image` through `to_patch` into `out`, [32, 32], then normalises it
/// to zero mean and unit variance (a flat patch becomes all zeros). Shrinking transforms average
/// an n x n grid of bilinear taps per pixel so small patches of large faces do not alias.
pub fn extract_patch(
    image: &ImageRef<'_>,
    to_patch: &Similarity,
    out: &mut [f32],
) -> Result<(), AlignError> {
    if out.len() != PATCH_LEN {
        return Err(AlignError::BadOutputLength);
    }
    grey_patch(image, to_patch, PATCH_SIZE, out)
}

/// Samples a `side`² grey patch through `to_output` into `out` and normalises it to zero mean
/// and unit variance (a flat patch becomes all zeros).
fn grey_patch(
    image: &ImageRef<'_>,
    to_output: &Similarity,
    side: usize,
    out: &mut [f32],
) -> Result<(), AlignError> {
    for_each_warped_pixel(
        image,
        to_output,
        side,
        MAX_SUPERSAMPLE,
        |x, y, [r, g, b]| {
            out[y * side + x] = 0.299 * r + 0.587 * g + 0.114 * b;
        },
    )?;
    let len = out.len() as f32;
    let mean = out.iter().sum::<f32>() / len;
    let variance = out.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / len;
    let inv_std = if variance > 1e-6 {
        1.0 / libm::sqrtf(variance)
    } else {
        0.0
    };
    for v in out.iter_mut() {
        *v = (*v - mean) * inv_std;
    }
    Ok(())
}

/// Samples one [`LOCAL_SIZE`]² grey patch around each current point into `out` ([`PATCH_LEN`]
/// values: five patches of [`LOCAL_LEN`] / 5, then zeros). Patch `i` is centred on
/// `points[i]` in the patch frame of `to_patch`, with `step` patch-frame pixels per local
/// pixel, so it sees that point at a finer scale than the whole-face patch. Each local patch is
/// normalised on its own.
pub fn extract_local_patches(
    image: &ImageRef<'_>,
    to_patch: &Similarity,
    points: &[[f32; 2]; 5],
    step: f32,
    out: &mut [f32],
) -> Result<(), AlignError> {
    check_local(step, out)?;
    let area = LOCAL_SIZE * LOCAL_SIZE;
    for (i, point) in points.iter().enumerate() {
        let to_local = local_transform(to_patch, *point, step, LOCAL_SIZE);
        grey_patch(
            image,
            &to_local,
            LOCAL_SIZE,
            &mut out[i * area..(i + 1) * area],
        )?;
    }
    out[LOCAL_LEN..].fill(0.0);
    Ok(())
}

/// Like [`extract_local_patches`], but each point's [`LOCAL_SIZE`]² values are a histogram of
/// gradient orientations: the gradient of every pixel of the local patch (central differences)
/// adds its magnitude to 2×2-pixel cells, in 4 unsigned orientation bins with linear
/// interpolation between neighbouring bins; each point's histogram is scaled to unit RMS.
/// Less precise than pixels but far less thrown by lighting and texture, so a cascade uses
/// these first and pixels last.
pub fn extract_local_gradients(
    image: &ImageRef<'_>,
    to_patch: &Similarity,
    points: &[[f32; 2]; 5],
    step: f32,
    out: &mut [f32],
) -> Result<(), AlignError> {
    const SIDE: usize = LOCAL_SIZE + 2;
    const CELLS: usize = LOCAL_SIZE / 2;
    check_local(step, out)?;
    let area = LOCAL_SIZE * LOCAL_SIZE;
    let mut grey = [0.0f32; SIDE * SIDE];
    for (i, point) in points.iter().enumerate() {
        // One pixel of margin on each side for the central differences.
        let to_local = local_transform(to_patch, *point, step, SIDE);
        grey_patch(image, &to_local, SIDE, &mut grey)?;
        let histogram = &mut out[i * area..(i + 1) * area];
        histogram.fill(0.0);
        for y in 1..=LOCAL_SIZE {
            for x in 1..=LOCAL_SIZE {
                let gx = grey[y * SIDE + x + 1] - grey[y * SIDE + x - 1];
                let gy = grey[(y + 1) * SIDE + x] - grey[(y - 1) * SIDE + x];
                let magnitude = libm::hypotf(gx, gy);
                let mut angle = libm::atan2f(gy, gx);
                if angle < 0.0 {
                    angle += core::f32::consts::PI;
                }
                let position = angle / core::f32::consts::PI * ORIENTATIONS as f32;
                let below = libm::floorf(position);
                let fraction = position - below;
                let lower = below as usize % ORIENTATIONS;
                let upper = (lower + 1) % ORIENTATIONS;
                let cell = ((y - 1) / 2 * CELLS + (x - 1) / 2) * ORIENTATIONS;
                histogram[cell + lower] += magnitude * (1.0 - fraction);
                histogram[cell + upper] += magnitude * fraction;
            }
        }
        let norm = libm::sqrtf(histogram.iter().map(|v| v * v).sum::<f32>() / area as f32);
        let scale = if norm > 1e-6 { 1.0 / norm } else { 0.0 };
        for v in histogram.iter_mut() {
            *v *= scale;
        }
    }
    out[LOCAL_LEN..].fill(0.0);
    Ok(())
}

fn check_local(step: f32, out: &[f32]) -> Result<(), AlignError> {
    if out.len() != PATCH_LEN {
        return Err(AlignError::BadOutputLength);
    }
    if !(step.is_finite() && step > 0.0) {
        return Err(AlignError::DegenerateLandmarks);
    }
    Ok(())
}

/// The similarity from image pixels into a `side`² local patch centred on `point`, `step`
/// patch-frame pixels per local pixel: `(to_patch(x) - to_patch(point)) / step + centre`.
fn local_transform(to_patch: &Similarity, point: [f32; 2], step: f32, side: usize) -> Similarity {
    let q = to_patch.apply(point);
    let centre = (side - 1) as f32 / 2.0;
    Similarity {
        a: to_patch.a / step,
        b: to_patch.b / step,
        tx: (to_patch.tx - q[0]) / step + centre,
        ty: (to_patch.ty - q[1]) / step + centre,
    }
}

/// The input of cascade stage `stage` for the estimate `points` (whose patch transform is
/// `to_patch`), as [`CascadeInfo::inputs`] says.
pub fn stage_input(
    image: &ImageRef<'_>,
    info: &CascadeInfo,
    stage: usize,
    to_patch: &Similarity,
    points: &[[f32; 2]; 5],
    out: &mut [f32],
) -> Result<(), AlignError> {
    match info.input(stage) {
        StageInput::Face => extract_patch(image, to_patch, out),
        StageInput::Pixels => extract_local_patches(image, to_patch, points, info.local_step, out),
        StageInput::Gradients => {
            extract_local_gradients(image, to_patch, points, info.local_step, out)
        }
    }
}

/// The correction a perfect stage would output: the true points in the patch frame minus the
/// canonical shape, [x0, y0, .., x4, y4] in patch pixels.
pub fn target_update(to_patch: &Similarity, truth: &[[f32; 2]; 5]) -> [f32; STAGE_OUTPUTS] {
    let canonical = canonical_shape();
    let mut update = [0.0; STAGE_OUTPUTS];
    for (i, point) in truth.iter().enumerate() {
        let p = to_patch.apply(*point);
        update[2 * i] = p[0] - canonical[i][0];
        update[2 * i + 1] = p[1] - canonical[i][1];
    }
    update
}

/// Applies a stage's correction (`update`, patch pixels) and maps the points back to the image.
pub fn apply_update(to_patch: &Similarity, update: &[f32]) -> Result<[[f32; 2]; 5], AlignError> {
    if update.len() != STAGE_OUTPUTS {
        return Err(AlignError::BadOutputLength);
    }
    if !update.iter().all(|v| v.is_finite()) {
        return Err(AlignError::NonFiniteLandmarks);
    }
    let inverse = to_patch.inverse().ok_or(AlignError::DegenerateLandmarks)?;
    let canonical = canonical_shape();
    let mut points = [[0.0; 2]; 5];
    for (i, point) in points.iter_mut().enumerate() {
        let p = [
            canonical[i][0] + update[2 * i],
            canonical[i][1] + update[2 * i + 1],
        ];
        *point = inverse.apply(p);
    }
    Ok(points)
}

/// Mean distance between predicted and true points divided by the distance between the true
/// eye centres (the usual "inter-ocular normalised error"); `None` if the eyes coincide.
pub fn interocular_error(predicted: &[[f32; 2]; 5], truth: &[[f32; 2]; 5]) -> Option<f32> {
    let distance = |a: [f32; 2], b: [f32; 2]| libm::hypotf(a[0] - b[0], a[1] - b[1]);
    let eyes = distance(truth[0], truth[1]);
    if eyes.is_nan() || eyes <= 1e-3 {
        return None;
    }
    let total: f32 = predicted
        .iter()
        .zip(truth)
        .map(|(p, t)| distance(*p, *t))
        .sum();
    Some(total / 5.0 / eyes)
}

/// Why [`run_cascade`] stopped: the geometry (degenerate estimate) or the regression itself.
#[derive(Debug, Clone, PartialEq)]
pub enum CascadeError<E> {
    /// An estimate or update could not be used (degenerate or non-finite points).
    Align(AlignError),
    /// The stage regression failed.
    Model(E),
}

/// Runs the cascade on the face in `face`: the box shape of `info`, then each stage's
/// `regress(stage, patch)` correction ([`STAGE_OUTPUTS`] values for a [`PATCH_LEN`] patch).
pub fn run_cascade<E>(
    image: &ImageRef<'_>,
    face: &FaceBox,
    info: &CascadeInfo,
    mut regress: impl FnMut(usize, &[f32]) -> Result<[f32; STAGE_OUTPUTS], E>,
) -> Result<[[f32; 2]; 5], CascadeError<E>> {
    let mut points = face.from_unit(&info.box_shape);
    let mut patch = [0.0f32; PATCH_LEN];
    for stage in 0..info.stages {
        let to_patch = patch_transform(&points).map_err(CascadeError::Align)?;
        stage_input(image, info, stage, &to_patch, &points, &mut patch)
            .map_err(CascadeError::Align)?;
        let update = regress(stage, &patch).map_err(CascadeError::Model)?;
        points = apply_update(&to_patch, &update).map_err(CascadeError::Align)?;
    }
    Ok(points)
}

/// What a landmark model's metadata says (keys of [`crate::model_meta`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CascadeInfo {
    /// Number of stages.
    pub stages: usize,
    /// The starting shape relative to the detector box ((0, 0) top-left, (1, 1) bottom-right).
    pub box_shape: [[f32; 2]; 5],
    /// What each stage reads; entries from `stages` on are unused.
    pub inputs: [StageInput; MAX_STAGES],
    /// Patch-frame pixels per local-patch pixel of the local stages.
    pub local_step: f32,
}

/// Why landmark model metadata was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MetaError {
    /// `facelock.kind` is not `landmarks`: an embedding model or a file that is not ours.
    NotLandmarks,
    /// The patch side is not [`PATCH_SIZE`].
    PatchSize,
    /// The stage count is missing, not a number, zero, or over [`MAX_STAGES`].
    Stages,
    /// The box shape is not ten finite numbers.
    BoxShape,
    /// The stage inputs are not one known name per stage, or local stages lack a positive
    /// local step.
    Inputs,
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetaError::NotLandmarks => {
                "not a facelock landmark model (metadata facelock.kind is not 'landmarks')"
            }
            MetaError::PatchSize => "landmark patch side is not 32 (unsupported by this build)",
            MetaError::Stages => "landmark stage count is missing, zero, or over 16",
            MetaError::BoxShape => "landmark box shape is not 10 finite numbers",
            MetaError::Inputs => {
                "landmark stage inputs are not one of face/pixels/gradients per stage with a \
                 positive local step"
            }
        })
    }
}

impl core::error::Error for MetaError {}

impl CascadeInfo {
    /// Reads the landmark keys through `get` (metadata key → value).
    pub fn from_metadata<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, MetaError> {
        use crate::model_meta as key;
        if get(key::KIND) != Some(key::KIND_LANDMARKS) {
            return Err(MetaError::NotLandmarks);
        }
        let patch: Option<usize> = get(key::LANDMARK_PATCH).and_then(|p| p.trim().parse().ok());
        if patch != Some(PATCH_SIZE) {
            return Err(MetaError::PatchSize);
        }
        let stages = get(key::LANDMARK_STAGES)
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|s| (1..=MAX_STAGES).contains(s))
            .ok_or(MetaError::Stages)?;
        let mut values = [0.0f32; 10];
        let mut count = 0;
        for field in get(key::LANDMARK_BOX_SHAPE).unwrap_or("").split(',') {
            let value: f32 = field.trim().parse().map_err(|_| MetaError::BoxShape)?;
            if count == 10 || !value.is_finite() {
                return Err(MetaError::BoxShape);
            }
            values[count] = value;
            count += 1;
        }
        if count != 10 {
            return Err(MetaError::BoxShape);
        }
        let box_shape = core::array::from_fn(|i| [values[2 * i], values[2 * i + 1]]);
        // Models from before local patches have no inputs key: every stage reads the face.
        let mut inputs = [StageInput::Face; MAX_STAGES];
        if let Some(list) = get(key::LANDMARK_INPUTS) {
            let mut count = 0;
            for name in list.split(',') {
                let input = StageInput::from_name(name).ok_or(MetaError::Inputs)?;
                *inputs.get_mut(count).ok_or(MetaError::Inputs)? = input;
                count += 1;
            }
            if count != stages {
                return Err(MetaError::Inputs);
            }
        }
        let local = inputs[..stages].iter().any(|i| *i != StageInput::Face);
        let local_step = match get(key::LANDMARK_LOCAL_STEP) {
            None if !local => 1.0,
            None => return Err(MetaError::Inputs),
            Some(text) => text
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or(MetaError::Inputs)?,
        };
        Ok(CascadeInfo {
            stages,
            box_shape,
            inputs,
            local_step,
        })
    }

    /// What stage `stage` reads (the whole face past the last stage).
    pub fn input(&self, stage: usize) -> StageInput {
        self.inputs.get(stage).copied().unwrap_or(StageInput::Face)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACE: [[f32; 2]; 5] = [
        [52.0, 60.0],
        [90.0, 58.0],
        [71.0, 80.0],
        [56.0, 101.0],
        [88.0, 100.0],
    ];

    #[test]
    fn the_target_update_reproduces_the_truth() {
        let estimate = FACE.map(|p| [p[0] + 3.0, p[1] - 2.0]);
        let to_patch = patch_transform(&estimate).unwrap();
        let update = target_update(&to_patch, &FACE);
        let back = apply_update(&to_patch, &update).unwrap();
        for (b, t) in back.iter().zip(&FACE) {
            assert!(
                (b[0] - t[0]).abs() < 1e-3 && (b[1] - t[1]).abs() < 1e-3,
                "{b:?} {t:?}"
            );
        }
    }

    #[test]
    fn a_zero_update_keeps_a_canonical_estimate() {
        let to_patch = patch_transform(&FACE).unwrap();
        let aligned = FACE.map(|p| to_patch.apply(p));
        let canonical = canonical_shape();
        let fitted = apply_update(&to_patch, &[0.0; STAGE_OUTPUTS]).unwrap();
        // The estimate is not exactly a similarity of the template, so only the fit is close.
        for (a, c) in aligned.iter().zip(&canonical) {
            assert!((a[0] - c[0]).abs() < 2.0 && (a[1] - c[1]).abs() < 2.0);
        }
        assert_eq!(fitted.len(), 5);
    }

    #[test]
    fn patches_are_normalised_and_flat_images_give_zeros() {
        let mut pixels = [0u8; 150 * 150];
        for (i, p) in pixels.iter_mut().enumerate() {
            *p = ((i % 150) * 255 / 150) as u8;
        }
        let image = ImageRef::new(&pixels, 150, 150, 1).unwrap();
        let to_patch = patch_transform(&FACE).unwrap();
        let mut patch = [0.0f32; PATCH_LEN];
        extract_patch(&image, &to_patch, &mut patch).unwrap();
        let mean = patch.iter().sum::<f32>() / PATCH_LEN as f32;
        let var = patch.iter().map(|v| v * v).sum::<f32>() / PATCH_LEN as f32;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );

        // Far from the borders (outside the image reads as black).
        let flat = std::vec![77u8; 400 * 400];
        let image = ImageRef::new(&flat, 400, 400, 1).unwrap();
        let centred = patch_transform(&FACE.map(|p| [p[0] + 125.0, p[1] + 125.0])).unwrap();
        extract_patch(&image, &centred, &mut patch).unwrap();
        assert!(patch.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn local_patches_are_centred_on_their_points_and_normalised() {
        // A bright dot at each point on a mid-grey background: each local patch's brightest
        // pixel is its centre.
        let mut pixels = std::vec![100u8; 150 * 150];
        for p in FACE {
            pixels[p[1] as usize * 150 + p[0] as usize] = 255;
        }
        let image = ImageRef::new(&pixels, 150, 150, 1).unwrap();
        // An estimate a little off the truth: patches follow the estimate given, so look
        // at the truth itself, with the transform fitted to a shifted estimate.
        let to_patch = patch_transform(&FACE.map(|p| [p[0] + 2.0, p[1] - 1.0])).unwrap();
        let mut out = [1.0f32; PATCH_LEN];
        // Point coordinates of the dots' pixel centres.
        let points = FACE.map(|p| [p[0], p[1]]);
        extract_local_patches(&image, &to_patch, &points, 0.25, &mut out).unwrap();
        let area = LOCAL_SIZE * LOCAL_SIZE;
        for i in 0..5 {
            let patch = &out[i * area..(i + 1) * area];
            let brightest = (0..area)
                .max_by(|a, b| patch[*a].total_cmp(&patch[*b]))
                .unwrap();
            let (x, y) = (brightest % LOCAL_SIZE, brightest / LOCAL_SIZE);
            assert!(
                (6..=7).contains(&x) && (6..=7).contains(&y),
                "point {i}: brightest at ({x}, {y})"
            );
            let mean = patch.iter().sum::<f32>() / area as f32;
            let var = patch.iter().map(|v| v * v).sum::<f32>() / area as f32;
            assert!(
                mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
        }
        assert!(out[LOCAL_LEN..].iter().all(|v| *v == 0.0));

        // Each stage reads what the cascade says.
        let mut inputs = [StageInput::Face; MAX_STAGES];
        inputs[1] = StageInput::Gradients;
        inputs[2] = StageInput::Pixels;
        let info = CascadeInfo {
            stages: 3,
            box_shape: [[0.5; 2]; 5],
            inputs,
            local_step: 0.25,
        };
        let mut read = [0.0f32; PATCH_LEN];
        let mut expected = [0.0f32; PATCH_LEN];
        stage_input(&image, &info, 0, &to_patch, &points, &mut read).unwrap();
        extract_patch(&image, &to_patch, &mut expected).unwrap();
        assert_eq!(read, expected);
        stage_input(&image, &info, 1, &to_patch, &points, &mut read).unwrap();
        extract_local_gradients(&image, &to_patch, &points, 0.25, &mut expected).unwrap();
        assert_eq!(read, expected);
        stage_input(&image, &info, 2, &to_patch, &points, &mut read).unwrap();
        assert_eq!(read, out);

        let mut short = [0.0f32; 10];
        assert_eq!(
            extract_local_patches(&image, &to_patch, &points, 0.5, &mut short),
            Err(AlignError::BadOutputLength)
        );
        assert!(extract_local_patches(&image, &to_patch, &points, -1.0, &mut out).is_err());
    }

    #[test]
    fn gradient_histograms_follow_edge_orientation_and_position() {
        // Left half dark, right half bright: a vertical edge through x = 70, whose gradients
        // point along x (orientation bin 0). Points on the edge see it in their middle cells.
        let mut pixels = std::vec![0u8; 150 * 150];
        for (i, p) in pixels.iter_mut().enumerate() {
            *p = if i % 150 >= 70 { 200 } else { 20 };
        }
        let image = ImageRef::new(&pixels, 150, 150, 1).unwrap();
        let to_patch = patch_transform(&FACE).unwrap();
        let points = [
            [69.5, 60.0],
            [69.5, 70.0],
            [69.5, 80.0],
            [20.0, 80.0],
            [120.0, 80.0],
        ];
        let mut out = [1.0f32; PATCH_LEN];
        extract_local_gradients(&image, &to_patch, &points, 0.5, &mut out).unwrap();
        let area = LOCAL_SIZE * LOCAL_SIZE;
        let cells = LOCAL_SIZE / 2;
        for (i, _) in points.iter().enumerate().take(3) {
            let histogram = &out[i * area..(i + 1) * area];
            let energy = |bin: usize| {
                (0..cells * cells)
                    .map(|c| histogram[c * 4 + bin])
                    .sum::<f32>()
            };
            // The face frame is barely rotated: nearly all energy in bin 0 (along x).
            assert!(
                energy(0) > 10.0 * (energy(1) + energy(2) + energy(3)),
                "{i}"
            );
            // ... and in the middle columns of cells.
            let column = |cx: usize| {
                (0..cells)
                    .map(|cy| histogram[(cy * cells + cx) * 4])
                    .sum::<f32>()
            };
            assert!(column(3) > 10.0 * (column(0) + column(6)), "{i}");
            let rms = libm::sqrtf(histogram.iter().map(|v| v * v).sum::<f32>() / area as f32);
            assert!((rms - 1.0).abs() < 1e-4, "{rms}");
        }
        // Flat regions far from the edge: no gradient, all zeros.
        assert!(out[3 * area..LOCAL_LEN].iter().all(|v| *v == 0.0));
        assert!(out[LOCAL_LEN..].iter().all(|v| *v == 0.0));

        let mut short = [0.0f32; 10];
        assert_eq!(
            extract_local_gradients(&image, &to_patch, &points, 0.5, &mut short),
            Err(AlignError::BadOutputLength)
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let to_patch = patch_transform(&FACE).unwrap();
        assert_eq!(
            apply_update(&to_patch, &[0.0; 3]),
            Err(AlignError::BadOutputLength)
        );
        let mut nan = [0.0; STAGE_OUTPUTS];
        nan[4] = f32::NAN;
        assert_eq!(
            apply_update(&to_patch, &nan),
            Err(AlignError::NonFiniteLandmarks)
        );
        let pixels = [0u8; 16];
        let image = ImageRef::new(&pixels, 4, 4, 1).unwrap();
        let mut short = [0.0f32; 10];
        assert_eq!(
            extract_patch(&image, &to_patch, &mut short),
            Err(AlignError::BadOutputLength)
        );
        assert_eq!(
            patch_transform(&[[1.0, 1.0]; 5]),
            Err(AlignError::DegenerateLandmarks)
        );
    }

    #[test]
    fn interocular_error_is_relative_to_the_eye_distance() {
        let shifted = FACE.map(|p| [p[0] + 3.8, p[1]]);
        let error = interocular_error(&shifted, &FACE).unwrap();
        let eyes = libm::hypotf(38.0, 2.0);
        assert!((error - 3.8 / eyes).abs() < 1e-5);
        assert_eq!(interocular_error(&FACE, &[[0.0, 0.0]; 5]), None);
    }

    #[test]
    fn cascade_metadata_is_read_and_checked() {
        use crate::model_meta as key;
        let good = |name: &str| match name {
            key::KIND => Some("landmarks"),
            key::LANDMARK_PATCH => Some("32"),
            key::LANDMARK_STAGES => Some("3"),
            key::LANDMARK_BOX_SHAPE => Some("0.3,0.4,0.7,0.4,0.5,0.6,0.35,0.8,0.65,0.8"),
            _ => None,
        };
        let info = CascadeInfo::from_metadata(good).unwrap();
        assert_eq!(info.stages, 3);
        assert_eq!(info.box_shape[4], [0.65, 0.8]);
        assert_eq!(
            info.inputs[..3],
            [StageInput::Face; 3],
            "no inputs key: every stage reads the whole face"
        );

        let local = |inputs: Option<&'static str>, step: Option<&'static str>| {
            move |name: &str| match name {
                key::LANDMARK_INPUTS => inputs,
                key::LANDMARK_LOCAL_STEP => step,
                _ => good(name),
            }
        };
        let info =
            CascadeInfo::from_metadata(local(Some("face, gradients,pixels"), Some("0.4"))).unwrap();
        assert_eq!(
            (info.input(0), info.input(1), info.input(2), info.local_step),
            (
                StageInput::Face,
                StageInput::Gradients,
                StageInput::Pixels,
                0.4
            )
        );
        for name in ["face", "pixels", "gradients"] {
            assert_eq!(StageInput::from_name(name).unwrap().name(), name);
        }
        // Only whole-face stages need no step.
        assert!(CascadeInfo::from_metadata(local(Some("face,face,face"), None)).is_ok());
        for (inputs, step) in [
            (Some("face,pixels,pixels"), None),
            (Some("face,pixels"), Some("0.5")),
            (Some("face,pixels,pixels,pixels"), Some("0.5")),
            (Some("face,edges,pixels"), Some("0.5")),
            (Some("face,pixels,pixels"), Some("0")),
            (Some("face,pixels,pixels"), Some("nan")),
        ] {
            assert_eq!(
                CascadeInfo::from_metadata(local(inputs, step)),
                Err(MetaError::Inputs),
                "{inputs:?} {step:?}"
            );
        }
        let many = |name: &str| {
            if name == key::LANDMARK_STAGES {
                Some("17")
            } else {
                good(name)
            }
        };
        assert_eq!(CascadeInfo::from_metadata(many), Err(MetaError::Stages));

        let embedding = |name: &str| if name == key::KIND { None } else { good(name) };
        assert_eq!(
            CascadeInfo::from_metadata(embedding),
            Err(MetaError::NotLandmarks)
        );
        let patch = |name: &str| {
            if name == key::LANDMARK_PATCH {
                Some("24")
            } else {
                good(name)
            }
        };
        assert_eq!(CascadeInfo::from_metadata(patch), Err(MetaError::PatchSize));
        let stages = |name: &str| {
            if name == key::LANDMARK_STAGES {
                Some("0")
            } else {
                good(name)
            }
        };
        assert_eq!(CascadeInfo::from_metadata(stages), Err(MetaError::Stages));
        for shape in [
            "1,2,3",
            "",
            "1,2,3,4,5,6,7,8,9,10,11",
            "1,2,3,4,5,6,7,8,9,inf",
        ] {
            let bad = |name: &str| {
                if name == key::LANDMARK_BOX_SHAPE {
                    Some(shape)
                } else {
                    good(name)
                }
            };
            assert_eq!(
                CascadeInfo::from_metadata(bad),
                Err(MetaError::BoxShape),
                "{shape}"
            );
        }
    }

    #[test]
    fn face_boxes_round_trip_points() {
        let face = FaceBox {
            x: 30.0,
            y: 40.0,
            width: 80.0,
            height: 90.0,
        };
        let back = face.from_unit(&face.to_unit(&FACE));
        for (b, t) in back.iter().zip(&FACE) {
            assert!((b[0] - t[0]).abs() < 1e-4 && (b[1] - t[1]).abs() < 1e-4);
        }
        assert!(face.contains([31.0, 41.0]) && !face.contains([10.0, 41.0]));
    }
}
