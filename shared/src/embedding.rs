//! Embedding arithmetic shared by host and board: L2 normalisation, int8 quantization, cosine
//! scores (f32 and int8 with i32 accumulation) and template averaging.

use crate::error::{Error, Result};

/// Largest int8 magnitude used by [`quantize`]; the range is symmetric, so -128 never occurs.
pub const QUANT_MAX: f32 = 127.0;

/// Scales `values` in place to unit L2 norm and returns the norm it had.
///
/// NaN or infinite input gives [`Error::NonFinite`]; an all-zero vector gives
/// [`Error::ZeroNorm`]. On error `values` is left unchanged. A norm above `f32::MAX` (huge
/// but finite input) is still normalised correctly and reported as `f32::MAX`.
pub fn l2_normalize(values: &mut [f32]) -> Result<f32> {
    let norm = norm_f64(values)?;
    for v in values.iter_mut() {
        *v = (f64::from(*v) / norm) as f32;
    }
    Ok(norm.min(f64::from(f32::MAX)) as f32)
}

/// L2 norm of `values`, rejecting non-finite input and zero vectors like [`l2_normalize`].
pub fn l2_norm(values: &[f32]) -> Result<f32> {
    norm_f64(values).map(|n| n.min(f64::from(f32::MAX)) as f32)
}

/// The norm in f64: exact enough for any dimension, and no finite f32 input overflows it.
fn norm_f64(values: &[f32]) -> Result<f64> {
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite);
    }
    let sum: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let norm = libm::sqrt(sum);
    if norm <= 0.0 {
        return Err(Error::ZeroNorm);
    }
    Ok(norm)
}

/// Quantizes a (normalised) embedding to symmetric int8 and returns the scale.
///
/// `scale = max|x| / 127` and `out[i] = round(x[i] / scale)`, so `x[i] ≈ out[i] * scale`.
/// `out` must have the length of `values`.
pub fn quantize(values: &[f32], out: &mut [i8]) -> Result<f32> {
    if values.len() != out.len() {
        return Err(Error::DimensionMismatch);
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite);
    }

    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        return Err(Error::ZeroNorm);
    }
    let scale = max / QUANT_MAX;
    for (q, &v) in out.iter_mut().zip(values) {
        *q = libm::roundf(v / scale).clamp(-QUANT_MAX, QUANT_MAX) as i8;
    }
    Ok(scale)
}

/// Writes `values[i] * scale` to `out`; the inverse of [`quantize`] up to rounding.
pub fn dequantize(values: &[i8], scale: f32, out: &mut [f32]) -> Result<()> {
    if values.len() != out.len() {
        return Err(Error::DimensionMismatch);
    }
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::BadScale);
    }
    for (o, &q) in out.iter_mut().zip(values) {
        *o = f32::from(q) * scale;
    }
    Ok(())
}

/// Cosine similarity of two f32 vectors, in [-1, 1]. They need not be normalised.
pub fn cosine_f32(a: &[f32], b: &[f32]) -> Result<f32> {
    if a.len() != b.len() {
        return Err(Error::DimensionMismatch);
    }
    let norm_a = norm_f64(a)?;
    let norm_b = norm_f64(b)?;
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    Ok(((dot / norm_a / norm_b) as f32).clamp(-1.0, 1.0))
}

/// Dot product of two int8 vectors, accumulated in i32 (in blocks, so no length overflows).
pub fn dot_i8(a: &[i8], b: &[i8]) -> Result<i64> {
    if a.len() != b.len() {
        return Err(Error::DimensionMismatch);
    }

    // 128 * 128 * 65_536 = 2^30 < i32::MAX, so one block never overflows its i32 accumulator.
    const BLOCK: usize = 1 << 16;
    let mut total = 0i64;
    for (block_a, block_b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let partial: i32 = block_a
            .iter()
            .zip(block_b)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum();
        total += i64::from(partial);
    }
    Ok(total)
}

/// Cosine similarity of two int8 vectors, in [-1, 1], from i32 integer dot products.
///
/// Quantization scales cancel in a cosine, so none are needed: the result is the exact cosine
/// of the two quantized vectors. A zero vector gives [`Error::ZeroNorm`].
pub fn cosine_i8(a: &[i8], b: &[i8]) -> Result<f32> {
    let dot = dot_i8(a, b)?;
    let norm_a = dot_i8(a, a)?;
    let norm_b = dot_i8(b, b)?;
    if norm_a == 0 || norm_b == 0 {
        return Err(Error::ZeroNorm);
    }
    let denominator = libm::sqrt(norm_a as f64) * libm::sqrt(norm_b as f64);
    Ok(((dot as f64) / denominator).clamp(-1.0, 1.0) as f32)
}

/// An enrolled face: an L2-normalised embedding quantized to int8, with its scale.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Template<const DIM: usize> {
    /// Quantized values, `[DIM]`; `values[i] * scale` approximates the unit embedding.
    pub values: [i8; DIM],
    /// Dequantization scale, positive and finite.
    pub scale: f32,
}

impl<const DIM: usize> Template<DIM> {
    /// Normalises a raw f32 embedding of length `DIM` and quantizes it.
    pub fn from_embedding(embedding: &[f32]) -> Result<Self> {
        if embedding.len() != DIM {
            return Err(Error::DimensionMismatch);
        }
        let norm = norm_f64(embedding)?;
        let mut unit = [0.0f32; DIM];
        for (u, &e) in unit.iter_mut().zip(embedding) {
            *u = (f64::from(e) / norm) as f32;
        }
        let mut values = [0i8; DIM];
        let scale = quantize(&unit, &mut values)?;
        Ok(Self { values, scale })
    }

    /// Cosine similarity to another template, in [-1, 1].
    pub fn cosine(&self, other: &Self) -> Result<f32> {
        cosine_i8(&self.values, &other.values)
    }

    /// Writes the dequantized embedding (close to unit norm) to `out`, `[DIM]`.
    pub fn to_f32(&self, out: &mut [f32]) -> Result<()> {
        dequantize(&self.values, self.scale, out)
    }
}

/// Running mean of normalised samples, for building a template from several images.
///
/// Each added embedding is L2-normalised before it is summed, so every image weighs the same;
/// [`Accumulator::finish`] re-normalises the mean and quantizes it.
#[derive(Debug, Clone)]
pub struct Accumulator<const DIM: usize> {
    sum: [f32; DIM],
    count: u32,
}

impl<const DIM: usize> Default for Accumulator<DIM> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const DIM: usize> Accumulator<DIM> {
    /// An empty accumulator.
    pub const fn new() -> Self {
        Self {
            sum: [0.0; DIM],
            count: 0,
        }
    }

    /// Adds one raw embedding of length `DIM`; rejected samples leave the sum unchanged.
    pub fn add(&mut self, embedding: &[f32]) -> Result<()> {
        if embedding.len() != DIM {
            return Err(Error::DimensionMismatch);
        }
        let norm = norm_f64(embedding)?;
        for (s, &e) in self.sum.iter_mut().zip(embedding) {
            *s += (f64::from(e) / norm) as f32;
        }
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// Number of samples added so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Writes the re-normalised mean to `out`, `[DIM]`.
    ///
    /// No samples gives [`Error::NoSamples`]; samples that cancel out give [`Error::ZeroNorm`].
    pub fn mean(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != DIM {
            return Err(Error::DimensionMismatch);
        }
        if self.count == 0 {
            return Err(Error::NoSamples);
        }
        out.copy_from_slice(&self.sum);
        l2_normalize(out).map(|_| ())
    }

    /// The re-normalised mean as a quantized template.
    pub fn finish(&self) -> Result<Template<DIM>> {
        let mut mean = [0.0f32; DIM];
        self.mean(&mut mean)?;
        let mut values = [0i8; DIM];
        let scale = quantize(&mean, &mut values)?;
        Ok(Template { values, scale })
    }
}

/// Mean of several embeddings after normalising each, re-normalised, written to `out`.
///
/// All samples and `out` must have the same length.
pub fn average(samples: &[&[f32]], out: &mut [f32]) -> Result<()> {
    if samples.is_empty() {
        return Err(Error::NoSamples);
    }
    if samples.iter().any(|s| s.len() != out.len()) {
        return Err(Error::DimensionMismatch);
    }

    out.fill(0.0);
    for sample in samples {
        let norm = norm_f64(sample)?;
        for (o, &s) in out.iter_mut().zip(sample.iter()) {
            *o += (f64::from(s) / norm) as f32;
        }
    }
    l2_normalize(out).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unit_vector(dim: usize) -> impl Strategy<Value = Vec<f32>> {
        proptest::collection::vec(-1.0f32..1.0, dim)
            .prop_filter_map("zero vector", |mut v| l2_normalize(&mut v).ok().map(|_| v))
    }

    #[test]
    fn normalize_gives_unit_norm_and_returns_old_norm() {
        let mut v = [3.0f32, 4.0];
        assert_eq!(l2_normalize(&mut v), Ok(5.0));
        assert_eq!(v, [0.6, 0.8]);
    }

    #[test]
    fn normalize_rejects_zero_nan_and_infinity_without_touching_input() {
        let mut zero = [0.0f32; 4];
        assert_eq!(l2_normalize(&mut zero), Err(Error::ZeroNorm));
        let mut nan = [1.0, f32::NAN];
        assert_eq!(l2_normalize(&mut nan), Err(Error::NonFinite));
        assert_eq!(nan[0], 1.0);
        let mut inf = [f32::INFINITY, 1.0];
        assert_eq!(l2_normalize(&mut inf), Err(Error::NonFinite));
        let mut empty: [f32; 0] = [];
        assert_eq!(l2_normalize(&mut empty), Err(Error::ZeroNorm));
    }

    #[test]
    fn normalize_survives_tiny_and_huge_values() {
        let mut tiny = [1e-30f32, 1e-30];
        l2_normalize(&mut tiny).unwrap();
        assert!((tiny[0] - core::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        let mut huge = [3e38f32, 3e38];
        l2_normalize(&mut huge).unwrap();
        assert!((huge[1] - core::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn quantize_is_symmetric_with_max_at_127() {
        let mut q = [0i8; 3];
        let scale = quantize(&[0.5, -1.0, 0.25], &mut q).unwrap();
        assert_eq!(q, [64, -127, 32]);
        assert!((scale - 1.0 / 127.0).abs() < 1e-9);
    }

    #[test]
    fn quantize_error_paths() {
        let mut q = [0i8; 2];
        assert_eq!(quantize(&[1.0], &mut q), Err(Error::DimensionMismatch));
        assert_eq!(quantize(&[0.0, 0.0], &mut q), Err(Error::ZeroNorm));
        assert_eq!(quantize(&[f32::NAN, 0.0], &mut q), Err(Error::NonFinite));
        let mut out = [0.0f32; 2];
        assert_eq!(dequantize(&q, 0.0, &mut out), Err(Error::BadScale));
        assert_eq!(dequantize(&q, f32::NAN, &mut out), Err(Error::BadScale));
        assert_eq!(
            dequantize(&q, 1.0, &mut out[..1]),
            Err(Error::DimensionMismatch)
        );
    }

    #[test]
    fn cosine_error_paths() {
        assert_eq!(
            cosine_f32(&[1.0], &[1.0, 0.0]),
            Err(Error::DimensionMismatch)
        );
        assert_eq!(cosine_f32(&[0.0, 0.0], &[1.0, 0.0]), Err(Error::ZeroNorm));
        assert_eq!(cosine_i8(&[1], &[1, 0]), Err(Error::DimensionMismatch));
        assert_eq!(cosine_i8(&[0, 0], &[1, 0]), Err(Error::ZeroNorm));
    }

    #[test]
    fn cosine_known_values() {
        // cos 60° between (1, 0) and (1, sqrt 3) is 0.5.
        let c = cosine_f32(&[1.0, 0.0], &[1.0, 3f32.sqrt()]).unwrap();
        assert!((c - 0.5).abs() < 1e-6);
        assert_eq!(cosine_i8(&[3, 4], &[3, 4]), Ok(1.0));
        assert_eq!(cosine_i8(&[3, 4], &[-3, -4]), Ok(-1.0));
        assert_eq!(cosine_i8(&[1, 0], &[0, 1]), Ok(0.0));
    }

    #[test]
    fn dot_i8_does_not_overflow_on_long_vectors() {
        let a = vec![-128i8; 300_000];
        assert_eq!(dot_i8(&a, &a), Ok(300_000 * 128 * 128));
    }

    #[test]
    fn template_from_embedding_checks_dimension() {
        assert_eq!(
            Template::<4>::from_embedding(&[1.0; 3]),
            Err(Error::DimensionMismatch)
        );
        assert_eq!(
            Template::<2>::from_embedding(&[0.0; 2]),
            Err(Error::ZeroNorm)
        );
        let t = Template::<2>::from_embedding(&[3.0, 4.0]).unwrap();
        let mut back = [0.0; 2];
        t.to_f32(&mut back).unwrap();
        assert!((back[0] - 0.6).abs() < 0.01 && (back[1] - 0.8).abs() < 0.01);
    }

    #[test]
    fn average_is_mean_of_normalised_samples() {
        // (2, 0) and (0, 5) normalise to the axes; their mean points along the diagonal.
        let mut out = [0.0f32; 2];
        average(&[&[2.0, 0.0], &[0.0, 5.0]], &mut out).unwrap();
        let d = core::f32::consts::FRAC_1_SQRT_2;
        assert!((out[0] - d).abs() < 1e-6 && (out[1] - d).abs() < 1e-6);

        let mut acc = Accumulator::<2>::new();
        acc.add(&[2.0, 0.0]).unwrap();
        acc.add(&[0.0, 5.0]).unwrap();
        let mut mean = [0.0f32; 2];
        acc.mean(&mut mean).unwrap();
        assert_eq!(mean, out);
        assert_eq!(acc.count(), 2);
    }

    #[test]
    fn average_error_paths() {
        let mut out = [0.0f32; 2];
        assert_eq!(average(&[], &mut out), Err(Error::NoSamples));
        assert_eq!(average(&[&[1.0]], &mut out), Err(Error::DimensionMismatch));
        assert_eq!(average(&[&[0.0, 0.0]], &mut out), Err(Error::ZeroNorm));
        assert_eq!(
            average(&[&[1.0, 0.0], &[-1.0, 0.0]], &mut out),
            Err(Error::ZeroNorm)
        );

        let mut acc = Accumulator::<2>::new();
        assert_eq!(acc.finish(), Err(Error::NoSamples));
        assert_eq!(acc.add(&[1.0]), Err(Error::DimensionMismatch));
        assert_eq!(acc.add(&[f32::NAN, 1.0]), Err(Error::NonFinite));
        assert_eq!(acc.count(), 0);
        assert_eq!(acc.mean(&mut [0.0; 3]), Err(Error::DimensionMismatch));
    }

    fn check_int8_matches_f32(a: &[f32], b: &[f32]) -> core::result::Result<(), TestCaseError> {
        let mut qa = vec![0i8; a.len()];
        let mut qb = vec![0i8; b.len()];
        quantize(a, &mut qa).unwrap();
        quantize(b, &mut qb).unwrap();
        let exact = cosine_f32(a, b).unwrap();
        let approx = cosine_i8(&qa, &qb).unwrap();
        prop_assert!((exact - approx).abs() < 0.01, "f32 {exact} int8 {approx}");
        Ok(())
    }

    proptest! {
        #[test]
        fn int8_cosine_close_to_f32_dim128(a in unit_vector(128), b in unit_vector(128)) {
            check_int8_matches_f32(&a, &b)?;
        }

        #[test]
        fn int8_cosine_close_to_f32_dim512(a in unit_vector(512), b in unit_vector(512)) {
            check_int8_matches_f32(&a, &b)?;
        }

        #[test]
        fn int8_cosine_close_to_f32_for_near_duplicates(
            a in unit_vector(128),
            noise in proptest::collection::vec(-0.05f32..0.05, 128),
        ) {
            // Similar pairs are where a threshold decision happens; check them explicitly.
            let mut b: Vec<f32> = a.iter().zip(&noise).map(|(x, n)| x + n).collect();
            l2_normalize(&mut b).unwrap();
            check_int8_matches_f32(&a, &b)?;
        }

        #[test]
        fn normalized_vectors_have_unit_norm(v in proptest::collection::vec(-1e6f32..1e6, 1..600)) {
            let mut v = v;
            if l2_normalize(&mut v).is_ok() {
                let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                prop_assert!((n - 1.0).abs() < 1e-4);
            }
        }
    }
}
