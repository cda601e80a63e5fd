//! Face alignment: 5-point similarity transform to the 112x112 template, and the warp into model input.
//!
//! Coordinates are in pixels with integer values at pixel centres: pixel `(x, y)` of an image covers
//! `[x - 0.5, x + 0.5]`. The same convention holds for landmarks, the template and the output crop.
//! The warp is inverse mapping: every output pixel is mapped back into the source image and sampled
//! bilinearly; source taps outside the image read as black. When the transform shrinks the face
//! (scale < 1, e.g. a large camera frame), each output pixel averages an n x n grid of such samples
//! (n = ceil(1 / scale), at most [`MAX_SUPERSAMPLE`]) so downscaling does not alias.

use core::fmt;

/// Side of the aligned square crop, in pixels.
pub const ALIGNED_SIZE: usize = 112;

/// Number of values in one aligned model input: [3, 112, 112].
pub const ALIGNED_LEN: usize = 3 * ALIGNED_SIZE * ALIGNED_SIZE;

/// Number of bytes in one aligned crop stored as interleaved RGB u8: [112, 112, 3].
pub const ALIGNED_RGB_LEN: usize = ALIGNED_SIZE * ALIGNED_SIZE * 3;

/// Largest number of sub-samples per axis used when the warp shrinks the image.
pub const MAX_SUPERSAMPLE: usize = 4;

/// Where the five landmarks go in the 112x112 crop, in pixels (x, y): left eye, right eye, nose tip,
/// left mouth corner, right mouth corner ("left" as seen in the image).
///
/// These are the widely published reference points of the ArcFace / InsightFace 112x112 crop.
pub const TEMPLATE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// Why an alignment could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AlignError {
    /// A landmark coordinate is NaN or infinite.
    NonFiniteLandmarks,
    /// The landmarks (nearly) coincide, so no scale or rotation can be estimated.
    DegenerateLandmarks,
    /// Source and destination point lists differ in length or have fewer than two points.
    PointCountMismatch,
    /// The image has zero width or height, or its buffer is not `width * height * channels` long.
    BadImageSize,
    /// The image has a channel count other than 1 (grey) or 3 (RGB).
    UnsupportedChannels,
    /// The output buffer does not have the required length.
    BadOutputLength,
    /// The centre-crop fraction is not in (0, 1].
    BadCropFraction,
    /// A normalisation std is zero or not finite, or a mean is not finite.
    BadNormalisation,
}

impl fmt::Display for AlignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            AlignError::NonFiniteLandmarks => "landmarks contain NaN or infinite coordinates",
            AlignError::DegenerateLandmarks => "landmarks coincide; no similarity transform fits",
            AlignError::PointCountMismatch => {
                "source and destination points differ in number or are fewer than two"
            }
            AlignError::BadImageSize => "image is empty or its buffer length is not w*h*channels",
            AlignError::UnsupportedChannels => "image must have 1 (grey) or 3 (RGB) channels",
            AlignError::BadOutputLength => "output buffer has the wrong length",
            AlignError::BadCropFraction => "centre-crop fraction must be in (0, 1]",
            AlignError::BadNormalisation => "normalisation std must be finite and non-zero",
        };
        f.write_str(text)
    }
}

impl core::error::Error for AlignError {}

/// A borrowed interleaved u8 image: rows top to bottom, `channels` bytes per pixel (1 or 3).
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
    channels: usize,
}

impl<'a> ImageRef<'a> {
    /// Wraps `pixels`, [height, width, channels]; checks the channel count and buffer length.
    pub fn new(
        pixels: &'a [u8],
        width: usize,
        height: usize,
        channels: usize,
    ) -> Result<Self, AlignError> {
        if channels != 1 && channels != 3 {
            return Err(AlignError::UnsupportedChannels);
        }
        let expected = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(channels));
        if width == 0 || height == 0 || expected != Some(pixels.len()) {
            return Err(AlignError::BadImageSize);
        }
        Ok(ImageRef {
            pixels,
            width,
            height,
            channels,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Bytes per pixel: 1 (grey) or 3 (RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The pixels, [height, width, channels].
    pub fn pixels(&self) -> &'a [u8] {
        self.pixels
    }

    /// Writes the image as grey u8 into `out` (resized to width * height): RGB through the
    /// Rec. 601 luma weights, grey copied.
    #[cfg(feature = "std")]
    pub fn grey_into(&self, out: &mut std::vec::Vec<u8>) {
        out.clear();
        if self.channels == 1 {
            out.extend_from_slice(self.pixels);
            return;
        }
        out.extend(self.pixels.chunks_exact(3).map(|p| {
            let luma = 299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32;
            ((luma + 500) / 1000) as u8
        }));
    }

    /// RGB of the pixel at integer `(x, y)`, grey replicated; black outside the image.
    fn rgb_at(&self, x: isize, y: isize) -> [f32; 3] {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return [0.0; 3];
        }
        let index = (y as usize * self.width + x as usize) * self.channels;
        if self.channels == 1 {
            let v = self.pixels[index] as f32;
            [v, v, v]
        } else {
            let p = &self.pixels[index..index + 3];
            [p[0] as f32, p[1] as f32, p[2] as f32]
        }
    }

    /// Bilinear sample at real-valued `(x, y)`, values 0..=255 per channel.
    pub(crate) fn sample(&self, x: f32, y: f32) -> [f32; 3] {
        let x0 = libm::floorf(x);
        let y0 = libm::floorf(y);
        let fx = x - x0;
        let fy = y - y0;
        // Far outside: avoid converting huge floats to isize.
        if !(x0 > -2.0 && y0 > -2.0 && x0 <= self.width as f32 && y0 <= self.height as f32) {
            return [0.0; 3];
        }
        let (xi, yi) = (x0 as isize, y0 as isize);
        let p00 = self.rgb_at(xi, yi);
        let p10 = self.rgb_at(xi + 1, yi);
        let p01 = self.rgb_at(xi, yi + 1);
        let p11 = self.rgb_at(xi + 1, yi + 1);
        let mut out = [0.0; 3];
        for c in 0..3 {
            let top = p00[c] + (p10[c] - p00[c]) * fx;
            let bottom = p01[c] + (p11[c] - p01[c]) * fx;
            out[c] = top + (bottom - top) * fy;
        }
        out
    }
}

/// A 2-D similarity transform (uniform scale, rotation, translation), no reflection:
/// `x' = a*x - b*y + tx`, `y' = b*x + a*y + ty`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Similarity {
    /// `scale * cos(angle)`.
    pub a: f32,
    /// `scale * sin(angle)`.
    pub b: f32,
    /// Translation along x, pixels.
    pub tx: f32,
    /// Translation along y, pixels.
    pub ty: f32,
}

impl Similarity {
    /// Maps point `p` (x, y).
    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// Uniform scale factor (> 0 for a valid transform).
    pub fn scale(&self) -> f32 {
        libm::sqrtf(self.a * self.a + self.b * self.b)
    }

    /// Rotation angle in radians, `atan2(b, a)`; with y pointing down, positive turns clockwise.
    pub fn angle(&self) -> f32 {
        libm::atan2f(self.b, self.a)
    }

    /// The inverse transform; `None` if the scale is zero or not finite.
    pub fn inverse(&self) -> Option<Similarity> {
        let s2 = self.a * self.a + self.b * self.b;
        if !(s2.is_finite() && s2 > 0.0) {
            return None;
        }
        let a = self.a / s2;
        let b = -self.b / s2;
        Some(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// Least-squares similarity from `src` to `dst` (Umeyama 1991, restricted to 2-D without reflection):
/// minimises `sum |T(src_i) - dst_i|^2`.
///
/// With both point sets centred, the optimum is `a = sum(p.q) / sum|p|^2`,
/// `b = sum(p x q) / sum|p|^2` (p source, q destination), and the translation maps the source
/// centroid onto the destination centroid. Accumulates in f64.
pub fn estimate_similarity(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Result<Similarity, AlignError> {
    if src.len() != dst.len() || src.len() < 2 {
        return Err(AlignError::PointCountMismatch);
    }
    let all_finite = src
        .iter()
        .chain(dst)
        .all(|p| p[0].is_finite() && p[1].is_finite());
    if !all_finite {
        return Err(AlignError::NonFiniteLandmarks);
    }

    let n = src.len() as f64;
    let mean = |points: &[[f32; 2]]| {
        let (sx, sy) = points
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p[0] as f64, y + p[1] as f64));
        (sx / n, sy / n)
    };
    let (msx, msy) = mean(src);
    let (mdx, mdy) = mean(dst);

    let (mut dot, mut cross, mut var) = (0.0f64, 0.0f64, 0.0f64);
    for (p, q) in src.iter().zip(dst) {
        let (px, py) = (p[0] as f64 - msx, p[1] as f64 - msy);
        let (qx, qy) = (q[0] as f64 - mdx, q[1] as f64 - mdy);
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        var += px * px + py * py;
    }
    // Source spread below 1e-6 px^2 per point: the points coincide.
    if var <= 1e-6 * n {
        return Err(AlignError::DegenerateLandmarks);
    }

    let a = dot / var;
    let b = cross / var;
    if a * a + b * b < 1e-12 {
        return Err(AlignError::DegenerateLandmarks);
    }
    let tx = mdx - (a * msx - b * msy);
    let ty = mdy - (b * msx + a * msy);
    Ok(Similarity {
        a: a as f32,
        b: b as f32,
        tx: tx as f32,
        ty: ty as f32,
    })
}

/// The similarity taking five image landmarks (order as in [`TEMPLATE_112`]) onto the template.
pub fn landmark_transform(landmarks: &[[f32; 2]; 5]) -> Result<Similarity, AlignError> {
    estimate_similarity(landmarks, &TEMPLATE_112)
}

/// Fallback for images without landmarks: maps a centred square of side
/// `fraction * min(width, height)` onto the 112x112 crop.
pub fn center_crop_transform(
    width: usize,
    height: usize,
    fraction: f32,
) -> Result<Similarity, AlignError> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(AlignError::BadCropFraction);
    }
    if width == 0 || height == 0 {
        return Err(AlignError::BadImageSize);
    }
    let side = fraction * width.min(height) as f32;
    let scale = ALIGNED_SIZE as f32 / side;
    let out_centre = (ALIGNED_SIZE as f32 - 1.0) / 2.0;
    let (cx, cy) = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
    Ok(Similarity {
        a: scale,
        b: 0.0,
        tx: out_centre - scale * cx,
        ty: out_centre - scale * cy,
    })
}

/// Per-channel normalisation of RGB pixels scaled to [0, 1]: `(x - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Normalisation {
    /// Mean per channel (R, G, B), subtracted from pixels in [0, 1].
    pub mean: [f32; 3],
    /// Divisor per channel (R, G, B), applied after the mean.
    pub std: [f32; 3],
}

impl Normalisation {
    /// mean = std = 0.5: maps [0, 1] to [-1, 1].
    pub const HALF: Normalisation = Normalisation {
        mean: [0.5; 3],
        std: [0.5; 3],
    };

    /// Checks that means are finite and stds finite and non-zero.
    pub fn validate(&self) -> Result<(), AlignError> {
        let ok = self.mean.iter().all(|m| m.is_finite())
            && self.std.iter().all(|s| s.is_finite() && *s != 0.0);
        if ok {
            Ok(())
        } else {
            Err(AlignError::BadNormalisation)
        }
    }

    /// Normalised value of a 0..=255 intensity in channel `c`.
    pub fn apply(&self, c: usize, value: f32) -> f32 {
        (value / 255.0 - self.mean[c]) / self.std[c]
    }

    /// Inverse of [`Normalisation::apply`], rounded and clamped to u8.
    pub fn invert(&self, c: usize, value: f32) -> u8 {
        let v = (value * self.std[c] + self.mean[c]) * 255.0;
        libm::roundf(v).clamp(0.0, 255.0) as u8
    }
}

impl Default for Normalisation {
    fn default() -> Self {
        Normalisation::HALF
    }
}

/// Sub-samples per axis so that a shrinking transform averages instead of aliasing.
fn supersample_count(scale: f32, max: usize) -> usize {
    if scale >= 1.0 || !scale.is_finite() {
        return 1;
    }
    (libm::ceilf(1.0 / scale) as usize).clamp(1, max)
}

/// Calls `visit(x, y, rgb)` for every pixel of a `side` x `side` output warped from `image`
/// through `to_output`, rgb in 0..=255. A shrinking transform averages an n x n grid of bilinear
/// taps per output pixel, n = ceil(1 / scale) up to `max_supersample`.
pub(crate) fn for_each_warped_pixel(
    image: &ImageRef<'_>,
    to_output: &Similarity,
    side: usize,
    max_supersample: usize,
    mut visit: impl FnMut(usize, usize, [f32; 3]),
) -> Result<(), AlignError> {
    let inverse = to_output.inverse().ok_or(AlignError::DegenerateLandmarks)?;
    let n = supersample_count(to_output.scale(), max_supersample);
    let step = 1.0 / n as f32;
    let weight = 1.0 / (n * n) as f32;

    for y in 0..side {
        for x in 0..side {
            let mut acc = [0.0f32; 3];
            for sy in 0..n {
                for sx in 0..n {
                    let ox = x as f32 + (sx as f32 + 0.5) * step - 0.5;
                    let oy = y as f32 + (sy as f32 + 0.5) * step - 0.5;
                    let [u, v] = inverse.apply([ox, oy]);
                    let p = image.sample(u, v);
                    for c in 0..3 {
                        acc[c] += p[c];
                    }
                }
            }
            visit(x, y, [acc[0] * weight, acc[1] * weight, acc[2] * weight]);
        }
    }
    Ok(())
}

/// [`for_each_warped_pixel`] for the 112x112 aligned crop.
fn for_each_aligned_pixel(
    image: &ImageRef<'_>,
    to_crop: &Similarity,
    visit: impl FnMut(usize, usize, [f32; 3]),
) -> Result<(), AlignError> {
    for_each_warped_pixel(image, to_crop, ALIGNED_SIZE, MAX_SUPERSAMPLE, visit)
}

/// Warps `image` through `to_crop` into an interleaved RGB u8 crop, `out` = [112, 112, 3].
///
/// This is the compact form for caches and PNGs; [`normalise_rgb`] turns it into model input.
pub fn warp_rgb_u8(
    image: &ImageRef<'_>,
    to_crop: &Similarity,
    out: &mut [u8],
) -> Result<(), AlignError> {
    if out.len() != ALIGNED_RGB_LEN {
        return Err(AlignError::BadOutputLength);
    }
    for_each_aligned_pixel(image, to_crop, |x, y, rgb| {
        let index = (y * ALIGNED_SIZE + x) * 3;
        for c in 0..3 {
            out[index + c] = libm::roundf(rgb[c]).clamp(0.0, 255.0) as u8;
        }
    })
}

/// Warps `image` through `to_crop` straight into model input, `out` = [3, 112, 112] (CHW, RGB),
/// normalised; `flip` mirrors the crop left-right.
pub fn warp_normalised(
    image: &ImageRef<'_>,
    to_crop: &Similarity,
    normalisation: &Normalisation,
    flip: bool,
    out: &mut [f32],
) -> Result<(), AlignError> {
    if out.len() != ALIGNED_LEN {
        return Err(AlignError::BadOutputLength);
    }
    normalisation.validate()?;
    let plane = ALIGNED_SIZE * ALIGNED_SIZE;
    for_each_aligned_pixel(image, to_crop, |x, y, rgb| {
        let column = if flip { ALIGNED_SIZE - 1 - x } else { x };
        let index = y * ALIGNED_SIZE + column;
        for c in 0..3 {
            out[c * plane + index] = normalisation.apply(c, rgb[c]);
        }
    })
}

/// Turns an aligned RGB u8 crop, [112, 112, 3], into model input, [3, 112, 112], normalised;
/// `flip` mirrors it left-right.
pub fn normalise_rgb(
    crop: &[u8],
    normalisation: &Normalisation,
    flip: bool,
    out: &mut [f32],
) -> Result<(), AlignError> {
    if crop.len() != ALIGNED_RGB_LEN {
        return Err(AlignError::BadImageSize);
    }
    if out.len() != ALIGNED_LEN {
        return Err(AlignError::BadOutputLength);
    }
    normalisation.validate()?;
    let plane = ALIGNED_SIZE * ALIGNED_SIZE;
    for y in 0..ALIGNED_SIZE {
        for x in 0..ALIGNED_SIZE {
            let source = (y * ALIGNED_SIZE + x) * 3;
            let column = if flip { ALIGNED_SIZE - 1 - x } else { x };
            let index = y * ALIGNED_SIZE + column;
            for c in 0..3 {
                out[c * plane + index] = normalisation.apply(c, crop[source + c] as f32);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    fn rotation(scale: f32, angle: f32, tx: f32, ty: f32) -> Similarity {
        Similarity {
            a: scale * angle.cos(),
            b: scale * angle.sin(),
            tx,
            ty,
        }
    }

    /// Independent reference: the 4-parameter linear least squares solved through its normal
    /// equations with Gaussian elimination (no centring, f64).
    #[allow(clippy::needless_range_loop)] // Matrix code reads clearer with indices.
    fn reference_fit(src: &[[f32; 2]], dst: &[[f32; 2]]) -> [f64; 4] {
        // Unknowns [a, b, tx, ty]; rows: x' = a x - b y + tx, y' = b x + a y + ty.
        let mut m = [[0.0f64; 5]; 4];
        for (p, q) in src.iter().zip(dst) {
            let (x, y) = (p[0] as f64, p[1] as f64);
            for (row, target) in [
                ([x, -y, 1.0, 0.0], q[0] as f64),
                ([y, x, 0.0, 1.0], q[1] as f64),
            ] {
                for i in 0..4 {
                    for j in 0..4 {
                        m[i][j] += row[i] * row[j];
                    }
                    m[i][4] += row[i] * target;
                }
            }
        }
        for col in 0..4 {
            let pivot = (col..4).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()));
            m.swap(col, pivot.unwrap());
            for row in 0..4 {
                if row != col {
                    let factor = m[row][col] / m[col][col];
                    for k in col..5 {
                        m[row][k] -= factor * m[col][k];
                    }
                }
            }
        }
        [
            m[0][4] / m[0][0],
            m[1][4] / m[1][1],
            m[2][4] / m[2][2],
            m[3][4] / m[3][3],
        ]
    }

    #[test]
    fn estimate_recovers_known_similarity() {
        let truth = rotation(1.37, 0.41, -12.5, 33.25);
        let src = [
            [10.0, 20.0],
            [80.0, 25.0],
            [47.0, 60.0],
            [20.0, 95.0],
            [77.0, 91.0],
        ];
        let dst = src.map(|p| truth.apply(p));
        let fit = estimate_similarity(&src, &dst).unwrap();
        assert!(close(fit.a, truth.a, 1e-4), "{fit:?} vs {truth:?}");
        assert!(close(fit.b, truth.b, 1e-4), "{fit:?} vs {truth:?}");
        assert!(close(fit.tx, truth.tx, 1e-3), "{fit:?} vs {truth:?}");
        assert!(close(fit.ty, truth.ty, 1e-3), "{fit:?} vs {truth:?}");
        assert!(close(fit.scale(), 1.37, 1e-4));
        assert!(close(fit.angle(), 0.41, 1e-4));
    }

    #[test]
    fn estimate_matches_normal_equations_on_noisy_points() {
        let truth = rotation(0.8, -0.2, 5.0, -7.0);
        let noise = [
            [0.7, -0.3],
            [-0.4, 0.9],
            [0.2, 0.1],
            [-0.8, -0.5],
            [0.3, 0.6],
        ];
        let src = [
            [60.0, 70.0],
            [90.0, 68.0],
            [75.0, 90.0],
            [62.0, 110.0],
            [88.0, 111.0],
        ];
        let mut dst = src.map(|p| truth.apply(p));
        for (q, e) in dst.iter_mut().zip(noise) {
            q[0] += e[0];
            q[1] += e[1];
        }
        let fit = estimate_similarity(&src, &dst).unwrap();
        let reference = reference_fit(&src, &dst);
        let got = [fit.a, fit.b, fit.tx, fit.ty];
        for (g, r) in got.iter().zip(reference) {
            assert!((*g as f64 - r).abs() < 1e-3, "{got:?} vs {reference:?}");
        }
    }

    #[test]
    fn inverse_round_trips() {
        let t = rotation(2.5, 1.1, 40.0, -3.0);
        let inv = t.inverse().unwrap();
        let p = [17.0, -4.5];
        let back = inv.apply(t.apply(p));
        assert!(
            close(back[0], p[0], 1e-4) && close(back[1], p[1], 1e-4),
            "{back:?}"
        );
        assert!(Similarity {
            a: 0.0,
            b: 0.0,
            tx: 1.0,
            ty: 1.0
        }
        .inverse()
        .is_none());
    }

    #[test]
    fn bad_landmarks_are_named_errors() {
        let same = [[5.0, 5.0]; 5];
        assert_eq!(
            landmark_transform(&same),
            Err(AlignError::DegenerateLandmarks)
        );
        let mut nan = TEMPLATE_112;
        nan[2][0] = f32::NAN;
        assert_eq!(
            landmark_transform(&nan),
            Err(AlignError::NonFiniteLandmarks)
        );
        assert_eq!(
            estimate_similarity(&TEMPLATE_112[..2], &TEMPLATE_112[..3]),
            Err(AlignError::PointCountMismatch)
        );
    }

    #[test]
    fn bad_buffers_are_named_errors() {
        let pixels = [0u8; 12];
        assert_eq!(
            ImageRef::new(&pixels, 2, 2, 2).unwrap_err(),
            AlignError::UnsupportedChannels
        );
        assert_eq!(
            ImageRef::new(&pixels, 3, 3, 1).unwrap_err(),
            AlignError::BadImageSize
        );
        assert_eq!(
            ImageRef::new(&[], 0, 0, 3).unwrap_err(),
            AlignError::BadImageSize
        );
        let image = ImageRef::new(&pixels, 2, 2, 3).unwrap();
        let t = center_crop_transform(2, 2, 1.0).unwrap();
        let mut short = [0.0f32; 10];
        let err = warp_normalised(&image, &t, &Normalisation::HALF, false, &mut short);
        assert_eq!(err, Err(AlignError::BadOutputLength));
        let mut out = [0.0f32; ALIGNED_LEN];
        let zero_std = Normalisation {
            mean: [0.5; 3],
            std: [0.5, 0.0, 0.5],
        };
        let err = warp_normalised(&image, &t, &zero_std, false, &mut out);
        assert_eq!(err, Err(AlignError::BadNormalisation));
        assert_eq!(
            center_crop_transform(10, 10, 0.0),
            Err(AlignError::BadCropFraction)
        );
        assert_eq!(
            center_crop_transform(10, 10, 1.5),
            Err(AlignError::BadCropFraction)
        );
    }

    /// A 112x112 RGB image whose pixel values encode position and channel.
    fn coded_image() -> std::vec::Vec<u8> {
        let mut pixels = std::vec![0u8; ALIGNED_RGB_LEN];
        for y in 0..ALIGNED_SIZE {
            for x in 0..ALIGNED_SIZE {
                let i = (y * ALIGNED_SIZE + x) * 3;
                pixels[i] = (x * 2) as u8;
                pixels[i + 1] = (y * 2) as u8;
                pixels[i + 2] = ((x + y) % 256) as u8;
            }
        }
        pixels
    }

    #[test]
    fn full_crop_of_a_112_image_copies_it_in_chw_order() {
        let pixels = coded_image();
        let image = ImageRef::new(&pixels, ALIGNED_SIZE, ALIGNED_SIZE, 3).unwrap();
        let t = center_crop_transform(ALIGNED_SIZE, ALIGNED_SIZE, 1.0).unwrap();
        let norm = Normalisation {
            mean: [0.1, 0.2, 0.3],
            std: [0.5, 0.25, 2.0],
        };
        let mut out = std::vec![0.0f32; ALIGNED_LEN];
        warp_normalised(&image, &t, &norm, false, &mut out).unwrap();
        let plane = ALIGNED_SIZE * ALIGNED_SIZE;
        for (x, y) in [(0, 0), (5, 9), (111, 0), (60, 111), (111, 111)] {
            for c in 0..3 {
                let raw = pixels[(y * ALIGNED_SIZE + x) * 3 + c] as f32;
                let expected = (raw / 255.0 - norm.mean[c]) / norm.std[c];
                let got = out[c * plane + y * ALIGNED_SIZE + x];
                assert!(
                    close(got, expected, 1e-5),
                    "({x},{y},{c}): {got} vs {expected}"
                );
                assert_eq!(norm.invert(c, got), raw as u8);
            }
        }
    }

    #[test]
    fn flip_mirrors_and_u8_path_matches_float_path() {
        let pixels = coded_image();
        let image = ImageRef::new(&pixels, ALIGNED_SIZE, ALIGNED_SIZE, 3).unwrap();
        let t = rotation(1.2, 0.1, -8.0, -3.0);
        let norm = Normalisation::HALF;
        let (mut plain, mut flipped) = (std::vec![0.0; ALIGNED_LEN], std::vec![0.0; ALIGNED_LEN]);
        warp_normalised(&image, &t, &norm, false, &mut plain).unwrap();
        warp_normalised(&image, &t, &norm, true, &mut flipped).unwrap();
        let mut crop = std::vec![0u8; ALIGNED_RGB_LEN];
        warp_rgb_u8(&image, &t, &mut crop).unwrap();
        let mut via_u8 = std::vec![0.0; ALIGNED_LEN];
        normalise_rgb(&crop, &norm, true, &mut via_u8).unwrap();
        for c in 0..3 {
            for y in 0..ALIGNED_SIZE {
                for x in 0..ALIGNED_SIZE {
                    let a = plain[(c * ALIGNED_SIZE + y) * ALIGNED_SIZE + x];
                    let m = (c * ALIGNED_SIZE + y) * ALIGNED_SIZE + ALIGNED_SIZE - 1 - x;
                    assert_eq!(a, flipped[m]);
                    // Rounding to u8 moves a value by at most half a level.
                    assert!(close(via_u8[m], a, 0.5 / 255.0 / 0.5 + 1e-6));
                }
            }
        }
    }

    #[test]
    fn grey_is_replicated_to_three_channels() {
        let grey: std::vec::Vec<u8> = (0..50 * 40).map(|i| (i * 7 % 251) as u8).collect();
        let rgb: std::vec::Vec<u8> = grey.iter().flat_map(|&v| [v, v, v]).collect();
        let t = center_crop_transform(50, 40, 0.9).unwrap();
        let (mut a, mut b) = (
            std::vec![0u8; ALIGNED_RGB_LEN],
            std::vec![0u8; ALIGNED_RGB_LEN],
        );
        warp_rgb_u8(&ImageRef::new(&grey, 50, 40, 1).unwrap(), &t, &mut a).unwrap();
        warp_rgb_u8(&ImageRef::new(&rgb, 50, 40, 3).unwrap(), &t, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    }

    #[test]
    fn center_crop_maps_centre_to_centre_and_fraction_to_full_width() {
        let t = center_crop_transform(150, 200, 0.8).unwrap();
        let centre = t.apply([74.5, 99.5]);
        assert!(close(centre[0], 55.5, 1e-4) && close(centre[1], 55.5, 1e-4));
        assert!(close(t.scale(), 112.0 / 120.0, 1e-6));
    }

    #[test]
    fn shrinking_averages_a_fine_checkerboard() {
        // 1-pixel checkerboard shrunk 4x: plain bilinear would alias to near 0 or 255 everywhere.
        let side = 448;
        let pixels: std::vec::Vec<u8> = (0..side * side)
            .map(|i| {
                if (i % side + i / side) % 2 == 0 {
                    255
                } else {
                    0
                }
            })
            .collect();
        let image = ImageRef::new(&pixels, side, side, 1).unwrap();
        let t = center_crop_transform(side, side, 1.0).unwrap();
        let mut out = std::vec![0u8; ALIGNED_RGB_LEN];
        warp_rgb_u8(&image, &t, &mut out).unwrap();
        for y in 1..ALIGNED_SIZE - 1 {
            for x in 1..ALIGNED_SIZE - 1 {
                let v = out[(y * ALIGNED_SIZE + x) * 3];
                assert!((100..=155).contains(&v), "({x},{y}) = {v}");
            }
        }
    }

    /// Darkness-weighted centroid of the crop's red channel within `radius` of `around`.
    fn dark_centroid(crop: &[u8], around: [f32; 2], radius: f32, background: f32) -> [f32; 2] {
        let (mut sx, mut sy, mut total) = (0.0, 0.0, 0.0);
        for y in 0..ALIGNED_SIZE {
            for x in 0..ALIGNED_SIZE {
                let (dx, dy) = (x as f32 - around[0], y as f32 - around[1]);
                if dx * dx + dy * dy > radius * radius {
                    continue;
                }
                let weight = (background - crop[(y * ALIGNED_SIZE + x) * 3] as f32).max(0.0);
                sx += weight * x as f32;
                sy += weight * y as f32;
                total += weight;
            }
        }
        assert!(
            total > 1000.0,
            "no dark disc near {around:?} (weight {total})"
        );
        [sx / total, sy / total]
    }

    #[test]
    fn aligned_eye_centres_land_on_the_template() {
        // Crop -> source: the face is smaller (0.62x), turned 17 degrees and shifted.
        let to_source = rotation(0.62, 0.3, 40.0, 22.0);
        let (width, height, background) = (180usize, 150usize, 210.0f32);
        let landmarks = TEMPLATE_112.map(|p| to_source.apply(p));

        // Draw two dark eye discs (radius 4 px, 4x4 supersampled coverage) on a light grey image.
        let radius = 4.0f32;
        let mut pixels = std::vec![background as u8; width * height];
        for y in 0..height {
            for x in 0..width {
                let mut coverage = 0.0;
                for s in 0..16 {
                    let px = x as f32 + ((s % 4) as f32 + 0.5) / 4.0 - 0.5;
                    let py = y as f32 + ((s / 4) as f32 + 0.5) / 4.0 - 0.5;
                    let inside = landmarks[..2]
                        .iter()
                        .any(|e| (px - e[0]).powi(2) + (py - e[1]).powi(2) <= radius * radius);
                    coverage += if inside { 1.0 / 16.0 } else { 0.0 };
                }
                pixels[y * width + x] = (background - coverage * (background - 20.0)) as u8;
            }
        }

        let image = ImageRef::new(&pixels, width, height, 1).unwrap();
        let t = landmark_transform(&landmarks).unwrap();
        assert!(close(t.scale(), 1.0 / 0.62, 1e-3), "scale {}", t.scale());
        let mut crop = std::vec![0u8; ALIGNED_RGB_LEN];
        warp_rgb_u8(&image, &t, &mut crop).unwrap();

        for eye in &TEMPLATE_112[..2] {
            let found = dark_centroid(&crop, *eye, 12.0, background);
            let error = ((found[0] - eye[0]).powi(2) + (found[1] - eye[1]).powi(2)).sqrt();
            assert!(
                error < 1.0,
                "eye at {found:?}, template {eye:?}, error {error} px"
            );
        }
    }
}
