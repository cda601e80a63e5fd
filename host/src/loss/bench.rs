//! Loss benchmark: fused vs naive AM-Softmax forward+backward time and measured peak memory.
//!
//! Memory is measured, not computed: on Linux the resident-set high-water mark is reset through
//! `/proc/self/clear_refs` before each run and read from `/proc/self/status` (VmHWM) after it;
//! the figure is the peak minus the resident size just before the run, so it includes the
//! gradients and every temporary, but not the inputs.
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{am_softmax_loss, fused_cpu, reference};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Batch size (rows of features).
    pub batch: usize,
    /// Embedding widths to try.
    pub dims: Vec<usize>,
    /// Class counts to try.
    pub classes: Vec<usize>,
    /// Timed repetitions per row (the median is reported).
    pub reps: usize,
    /// Where the tensors live.
    pub device: Device,
    /// Also time the three GEMMs of the same shape (X·Wᵀ, G·W, Gᵀ·X) as a speed-of-light row.
    pub gemm_baseline: bool,
    /// Skip the naive head when its estimated footprint exceeds this many bytes.
    pub naive_limit_bytes: u64,
}

/// One measured (or skipped) implementation at one shape.
#[derive(Clone, Debug)]
pub struct Row {
    /// `fused` (the op's kernels), `fused+candle` (through candle's autograd), `3 gemms` or
    /// `naive`.
    pub implementation: &'static str,
    /// Embedding width.
    pub dim: usize,
    /// Number of classes.
    pub classes: usize,
    /// Median forward+backward time, ms; `None` when skipped.
    pub median_ms: Option<f64>,
    /// Highest measured peak extra resident memory over the runs, MB (10⁶ bytes); `None` when
    /// skipped or not measurable (non-Linux, or GPU memory).
    pub peak_extra_mb: Option<f64>,
    /// Peak extra memory minus the gradients themselves (dX and dW, (batch + classes)·dim f32), MB.
    pub beyond_grads_mb: Option<f64>,
    /// Why a row was skipped, or a remark.
    pub note: String,
}

/// The scale and margin every benchmark row uses (the paper's defaults).
const SCALE: f32 = 30.0;
const MARGIN: f32 = 0.35;

/// Runs every (dim, classes) pair; `progress` is called after each timed run.
pub fn run(config: &Config, mut progress: impl FnMut(&str)) -> candle_core::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &dim in &config.dims {
        for &classes in &config.classes {
            let (x, w, y) = inputs(config.batch, dim, classes, &config.device)?;
            let shape = format!("D={dim} C={classes}");

            if config.device.is_cpu() {
                rows.push(measure(
                    "fused",
                    (config.batch, dim, classes),
                    config.reps,
                    || fused_direct(&x, &w, &y),
                    &mut progress,
                    &shape,
                )?);
            }
            rows.push(measure(
                "fused+candle",
                (config.batch, dim, classes),
                config.reps,
                || through_candle(&x, &w, &y, false),
                &mut progress,
                &shape,
            )?);

            if config.gemm_baseline {
                rows.push(measure(
                    "3 gemms",
                    (config.batch, dim, classes),
                    config.reps,
                    || three_gemms(&x, &w),
                    &mut progress,
                    &shape,
                )?);
            }

            let estimate = naive_estimate_bytes(config.batch, dim, classes);
            if estimate > config.naive_limit_bytes {
                let note = format!("skipped: needs ~{:.1} GB", estimate as f64 / 1e9);
                rows.push(Row {
                    implementation: "naive",
                    dim,
                    classes,
                    median_ms: None,
                    peak_extra_mb: None,
                    beyond_grads_mb: None,
                    note,
                });
            } else {
                rows.push(measure(
                    "naive",
                    (config.batch, dim, classes),
                    config.reps,
                    || through_candle(&x, &w, &y, true),
                    &mut progress,
                    &shape,
                )?);
            }
        }
    }
    if !config.device.is_cpu() {
        // Resident memory says nothing about GPU memory: do not report it.
        for row in &mut rows {
            row.peak_extra_mb = None;
            row.beyond_grads_mb = None;
            if row.note.is_empty() {
                row.note = "GPU memory not measured".into();
            }
        }
    }
    Ok(rows)
}

/// Rough footprint of the naive head: ~12 [batch, classes] f32 temporaries plus ~6 copies of W.
pub fn naive_estimate_bytes(batch: usize, dim: usize, classes: usize) -> u64 {
    (12 * batch * classes + 6 * classes * dim) as u64 * 4
}

fn inputs(
    b: usize,
    d: usize,
    c: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let mut rng = StdRng::seed_from_u64(42);
    let x: Vec<f32> = (0..b * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w: Vec<f32> = (0..c * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y: Vec<u32> = (0..b).map(|_| rng.random_range(0..c as u32)).collect();
    Ok((
        Tensor::from_vec(x, (b, d), device)?,
        Tensor::from_vec(w, (c, d), device)?,
        Tensor::from_vec(y, b, device)?,
    ))
}

/// The fused CPU kernels on the tensors' buffers: loss, then dX and dW into fresh buffers.
fn fused_direct(x: &Tensor, w: &Tensor, y: &Tensor) -> candle_core::Result<()> {
    let (b, d) = x.dims2()?;
    let c = w.dim(0)?;
    let (xs, ws, ys) = (
        x.flatten_all()?.to_vec1::<f32>()?,
        w.flatten_all()?,
        y.to_vec1::<u32>()?,
    );
    // The weights are large: borrow them through the storage instead of copying.
    let (storage, layout) = ws.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("fused_direct needs CPU tensors")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused_direct needs contiguous weights")
    };
    let weights = &cpu.as_slice::<f32>()?[start..end];
    let p = fused_cpu::Problem {
        features: &xs,
        weights,
        labels: &ys,
        batch: b,
        dim: d,
        classes: c,
        scale: SCALE,
        margin: MARGIN,
        tile: 0,
    };
    let fwd = fused_cpu::forward(&p).map_err(candle_core::Error::Msg)?;
    let (mut dx, mut dw) = (vec![0f32; b * d], vec![0f32; c * d]);
    fused_cpu::backward(&p, &fwd.lse, 1.0, &mut dx, &mut dw).map_err(candle_core::Error::Msg)?;
    std::hint::black_box((dx, dw));
    Ok(())
}

/// The three GEMMs a fused forward+backward cannot avoid, through candle's matmul.
fn three_gemms(x: &Tensor, w: &Tensor) -> candle_core::Result<()> {
    let g = x.matmul(&w.t()?)?; // [batch, classes], stands in for the softmax gradient
    let dx = g.matmul(w)?; // [batch, dim]
    let dw = g.t()?.matmul(x)?; // [classes, dim]
    dx.sum_all()?.to_scalar::<f32>()?;
    dw.sum_all()?.to_scalar::<f32>()?;
    x.device().synchronize()
}

/// Loss and backward through candle's autograd, with the fused op or the naive graph.
fn through_candle(x: &Tensor, w: &Tensor, y: &Tensor, naive: bool) -> candle_core::Result<()> {
    let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(w)?);
    let loss = if naive {
        reference::candle_graph_loss(&xv, &wv, y, SCALE.into(), MARGIN.into())?
    } else {
        am_softmax_loss(&xv, &wv, y, SCALE, MARGIN)?
    };
    let grads = loss.backward()?;
    let dw = grads.get(&wv).map(|g| g.sum_all()).transpose()?;
    if let Some(dw) = dw {
        dw.to_scalar::<f32>()?; // forces completion on asynchronous devices
    }
    x.device().synchronize()
}

fn measure(
    implementation: &'static str,
    (batch, dim, classes): (usize, usize, usize),
    reps: usize,
    mut f: impl FnMut() -> candle_core::Result<()>,
    progress: &mut impl FnMut(&str),
    shape: &str,
) -> candle_core::Result<Row> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(reps);
    let mut peak: Option<f64> = Some(0.0);
    for _ in 0..reps.max(1) {
        let before = memory::reset_peak();
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        peak = match (peak, before, memory::peak_kb()) {
            (Some(p), Some(before), Some(after)) => {
                Some(p.max(after.saturating_sub(before) as f64 * 1024.0 / 1e6))
            }
            _ => None,
        };
        progress(&format!("{implementation} {shape}"));
    }
    times.sort_by(f64::total_cmp);
    let grads_mb = ((batch + classes) * dim * 4) as f64 / 1e6;
    Ok(Row {
        implementation,
        dim,
        classes,
        median_ms: Some(times[times.len() / 2]),
        peak_extra_mb: peak,
        beyond_grads_mb: peak.map(|p| p - grads_mb),
        note: String::new(),
    })
}

/// The rows as CSV with a header line.
pub fn to_csv(batch: usize, device: &str, rows: &[Row]) -> String {
    let mut out = String::from(
        "implementation,device,batch,dim,classes,median_ms,peak_extra_mb,beyond_grads_mb,note\n",
    );
    for r in rows {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
        out += &format!(
            "{},{device},{batch},{},{},{},{},{},{}\n",
            r.implementation,
            r.dim,
            r.classes,
            opt(r.median_ms),
            opt(r.peak_extra_mb),
            opt(r.beyond_grads_mb),
            r.note
        );
    }
    out
}

/// The rows as an aligned text table.
pub fn to_table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<13} {:>5} {:>9} {:>10} {:>14} {:>13}  note\n",
        "impl", "D", "C", "median ms", "peak extra MB", "beyond grads"
    );
    for r in rows {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        out += &format!(
            "{:<13} {:>5} {:>9} {:>10} {:>14} {:>13}  {}\n",
            r.implementation,
            r.dim,
            r.classes,
            opt(r.median_ms),
            opt(r.peak_extra_mb),
            opt(r.beyond_grads_mb),
            r.note
        );
    }
    out
}

/// Resident-set measurements from procfs (Linux only; `None` elsewhere).
mod memory {
    /// Returns freed heap pages to the OS, resets the high-water mark and returns the resident
    /// size now, KiB. Trimming first makes memory cached by the allocator from earlier runs count
    /// again when it is reused.
    pub fn reset_peak() -> Option<u64> {
        trim_heap();
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        status_kb("VmRSS:")
    }

    /// The resident-set high-water mark since the last reset, KiB.
    pub fn peak_kb() -> Option<u64> {
        status_kb("VmHWM:")
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trim_heap() {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and only releases free heap pages.
        unsafe {
            malloc_trim(0);
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn trim_heap() {}

    fn status_kb(key: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }
}
