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
    if out.len() != PATCH_LEN {
        return Err(AlignError::BadOutputLength);
    }
    if !(step.is_finite() && step > 0.0) {
        return Err(AlignError::DegenerateLandmarks);
    }
    let centre = (LOCAL_SIZE - 1) as f32 / 2.0;
    let area = LOCAL_SIZE * LOCAL_SIZE;
    for (i, point) in points.iter().enumerate() {
        let q = to_patch.apply(*point);
        // Patch frame -> local frame: (c - q) / step + centre.
        let to_local = Similarity {
            a: to_patch.a / step,
            b: to_patch.b / step,
            tx: (to_patch.tx - q[0]) / step + centre,
            ty: (to_patch.ty - q[1]) / step + centre,
        };
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

/// The input of cascade stage `stage` for the estimate `points` (whose patch transform is
/// `to_patch`): the whole-face patch, or local patches from [`CascadeInfo::local_from`] on.
pub fn stage_input(
    image: &ImageRef<'_>,
    info: &CascadeInfo,
    stage: usize,
    to_patch: &Similarity,
    points: &[[f32; 2]; 5],
    out: &mut [f32],
) -> Result<(), AlignError> {
    if stage >= info.local_from {
        extract_local_patches(image, to_patch, points, info.local_step_of(stage), out)
    } else {
        extract_patch(image, to_patch, out)
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
    /// First stage that reads local patches ([`extract_local_patches`]); `stages` or more: none.
    pub local_from: usize,
    /// Patch-frame pixels per local-patch pixel at stage `local_from`.
    pub local_step: f32,
    /// Factor on the local step per later stage (below 1: each stage looks finer).
    pub local_decay: f32,
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
    /// The stage count is missing, not a number, or zero.
    Stages,
    /// The box shape is not ten finite numbers.
    BoxShape,
    /// The local-patch stage, step or decay is not a number, or the step or decay is not
    /// positive.
    Local,
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetaError::NotLandmarks => {
                "not a facelock landmark model (metadata facelock.kind is not 'landmarks')"
            }
            MetaError::PatchSize => "landmark patch side is not 32 (unsupported by this build)",
            MetaError::Stages => "landmark stage count is missing or not a positive number",
            MetaError::BoxShape => "landmark box shape is not 10 finite numbers",
            MetaError::Local => "landmark local-patch stage, step or decay is not a valid number",
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
            .filter(|s| *s > 0)
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
        // Models from before local patches have neither key: every stage reads the whole face.
        let (local_from, local_step) =
            match (get(key::LANDMARK_LOCAL_FROM), get(key::LANDMARK_LOCAL_STEP)) {
                (None, None) => (stages, 1.0),
                (Some(from), Some(step)) => {
                    let from: usize = from.trim().parse().map_err(|_| MetaError::Local)?;
                    let step: f32 = step.trim().parse().map_err(|_| MetaError::Local)?;
                    if !(step.is_finite() && step > 0.0) {
                        return Err(MetaError::Local);
                    }
                    (from, step)
                }
                _ => return Err(MetaError::Local),
            };
        let local_decay = match get(key::LANDMARK_LOCAL_DECAY) {
            None => 1.0,
            Some(text) => text
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|d| d.is_finite() && *d > 0.0)
                .ok_or(MetaError::Local)?,
        };
        Ok(CascadeInfo {
            stages,
            box_shape,
            local_from,
            local_step,
            local_decay,
        })
    }

    /// The local-patch step of stage `stage` (from `local_from` on).
    pub fn local_step_of(&self, stage: usize) -> f32 {
        let later = stage.saturating_sub(self.local_from);
        self.local_step * libm::powf(self.local_decay, later as f32)
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

        // Stage inputs switch from the whole face to local patches at `local_from`.
        let info = CascadeInfo {
            stages: 3,
            box_shape: [[0.5; 2]; 5],
            local_from: 2,
            local_step: 0.25,
            local_decay: 1.0,
        };
        let mut whole = [0.0f32; PATCH_LEN];
        stage_input(&image, &info, 1, &to_patch, &points, &mut whole).unwrap();
        let mut expected = [0.0f32; PATCH_LEN];
        extract_patch(&image, &to_patch, &mut expected).unwrap();
        assert_eq!(whole, expected);
        stage_input(&image, &info, 2, &to_patch, &points, &mut whole).unwrap();
        assert_eq!(whole, out);

        let mut short = [0.0f32; 10];
        assert_eq!(
            extract_local_patches(&image, &to_patch, &points, 0.5, &mut short),
            Err(AlignError::BadOutputLength)
        );
        assert!(extract_local_patches(&image, &to_patch, &points, -1.0, &mut out).is_err());
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
            info.local_from, 3,
            "no local keys: every stage reads the whole face"
        );

        let local = |from: Option<&'static str>, step: Option<&'static str>| {
            move |name: &str| match name {
                key::LANDMARK_LOCAL_FROM => from,
                key::LANDMARK_LOCAL_STEP => step,
                _ => good(name),
            }
        };
        let info = CascadeInfo::from_metadata(local(Some("2"), Some("0.4"))).unwrap();
        assert_eq!((info.local_from, info.local_step), (2, 0.4));
        assert_eq!(info.local_decay, 1.0);
        let decaying = |name: &str| match name {
            key::LANDMARK_LOCAL_DECAY => Some("0.5"),
            _ => local(Some("2"), Some("0.4"))(name),
        };
        let info = CascadeInfo::from_metadata(decaying).unwrap();
        assert_eq!(info.local_decay, 0.5);
        assert_eq!(info.local_step_of(2), 0.4);
        assert_eq!(info.local_step_of(4), 0.1);
        let bad_decay = |name: &str| match name {
            key::LANDMARK_LOCAL_DECAY => Some("-1"),
            _ => local(Some("2"), Some("0.4"))(name),
        };
        assert_eq!(CascadeInfo::from_metadata(bad_decay), Err(MetaError::Local));
        for (from, step) in [
            (Some("2"), None),
            (None, Some("0.5")),
            (Some("x"), Some("0.5")),
            (Some("2"), Some("0")),
            (Some("2"), Some("nan")),
        ] {
            assert_eq!(
                CascadeInfo::from_metadata(local(from, step)),
                Err(MetaError::Local),
                "{from:?} {step:?}"
            );
        }

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
