//! Launcher for the fused AM-Softmax CUDA kernels (`amsoftmax.cu`): NVRTC compilation cached by
//! source hash, cuBLAS for the three GEMMs, the same class tiling as the CPU op.
//!
//! Depends only on cudarc (loaded dynamically), so it compiles in the default build; the glue to
//! candle's CUDA storage is in `candle_glue` behind the `cuda` feature.
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::{Error, Result};

#[cfg(feature = "cuda")]
pub mod candle_glue;
#[cfg(test)]
mod tests;

/// The kernel source, compiled at run time.
pub const SOURCE: &str = include_str!("amsoftmax.cu");

/// Classes per tile on the GPU: the [batch, tile] scratch is batch · 32768 · 4 bytes.
pub const GPU_TILE: usize = 32768;

const KERNELS: [&str; 6] = [
    "row_inv_norms",
    "scale_rows",
    "tile_lse",
    "finish_loss",
    "tile_grad",
    "norm_backward",
];

/// Whether the NVRTC library can be loaded (set `LD_LIBRARY_PATH`; see `scripts/nvrtc-env.sh`).
///
/// The default build loads cudarc's libraries at run time (`fallback-dynamic-loading`); the
/// `cuda` feature turns on candle's `dynamic-linking`, where they are linked and always present.
pub fn nvrtc_available() -> bool {
    #[cfg(not(feature = "cuda"))]
    // SAFETY: only tries to dlopen the library under its candidate names.
    return unsafe { cudarc::nvrtc::sys::is_culib_present() };
    #[cfg(feature = "cuda")]
    true
}

/// Whether the CUDA driver library can be loaded (always true in a `cuda` build: it is linked).
pub fn driver_available() -> bool {
    #[cfg(not(feature = "cuda"))]
    // SAFETY: only tries to dlopen the library under its candidate names.
    return unsafe { cudarc::driver::sys::is_culib_present() };
    #[cfg(feature = "cuda")]
    true
}

/// The default stream of GPU `ordinal`, or a clear error when there is no driver or device.
pub fn device_stream(ordinal: usize) -> Result<Arc<CudaStream>> {
    if !driver_available() {
        return Err(Error::Cuda(
            "no CUDA driver (libcuda) on this machine: no CUDA device".into(),
        ));
    }
    let context = cudarc::driver::CudaContext::new(ordinal)
        .map_err(|e| Error::Cuda(format!("no usable CUDA device {ordinal}: {e:?}")))?;
    Ok(context.default_stream())
}

/// PTX for [`SOURCE`], compiled by NVRTC for `arch` (e.g. `"sm_80"`; `None` = NVRTC's default)
/// once per process and cached by source hash.
pub fn compile_ptx(arch: Option<&'static str>) -> Result<String> {
    /// PTX text by (source hash, target architecture).
    type PtxCache = Mutex<HashMap<(u64, Option<&'static str>), String>>;
    static CACHE: OnceLock<PtxCache> = OnceLock::new();
    if !nvrtc_available() {
        return Err(Error::Cuda(
            "cannot load libnvrtc (install nvidia-cuda-nvrtc-cu12, source scripts/nvrtc-env.sh)"
                .into(),
        ));
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    SOURCE.hash(&mut hasher);
    let key = (hasher.finish(), arch);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(ptx) = cache
        .lock()
        .map_err(|_| Error::Cuda("ptx cache poisoned".into()))?
        .get(&key)
    {
        return Ok(ptx.clone());
    }
    let options = CompileOptions {
        arch,
        name: Some("amsoftmax.cu".into()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(SOURCE, options)
        .map_err(|e| Error::Cuda(format!("nvrtc could not compile amsoftmax.cu: {e:?}")))?
        .to_src();
    cache
        .lock()
        .map_err(|_| Error::Cuda("ptx cache poisoned".into()))?
        .insert(key, ptx.clone());
    Ok(ptx)
}

/// Problem sizes and hyper-parameters of one AM-Softmax evaluation on the GPU.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Rows of features.
    pub batch: usize,
    /// Embedding width.
    pub dim: usize,
    /// Rows of weights.
    pub classes: usize,
    /// Logit scale s.
    pub scale: f32,
    /// Cosine margin m.
    pub margin: f32,
}

/// The loaded kernels and a cuBLAS handle, bound to one stream.
pub struct Kernels {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    functions: HashMap<&'static str, CudaFunction>,
}

fn driver(e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("{e:?}"))
}

fn int(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Unsupported(format!("{what} = {v} exceeds i32 on the GPU")))
}

/// A launch configuration covering `items` with 256-thread blocks (grid capped for grid-stride).
fn blocks_for(items: usize) -> LaunchConfig {
    let blocks = items.div_ceil(256).clamp(1, 65535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Kernels {
    /// Compiles (or reuses) the PTX and loads it into the stream's context.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        let ptx = compile_ptx(None)?;
        let module = stream
            .context()
            .load_module(Ptx::from_src(ptx))
            .map_err(driver)?;
        let mut functions = HashMap::new();
        for name in KERNELS {
            functions.insert(name, module.load_function(name).map_err(driver)?);
        }
        let blas = CudaBlas::new(stream.clone()).map_err(driver)?;
        Ok(Self {
            stream,
            blas,
            functions,
        })
    }

    /// Kernels for `stream`, loaded once per stream and kept for the process.
    pub fn for_stream(stream: &Arc<CudaStream>) -> Result<Arc<Self>> {
        static LOADED: OnceLock<Mutex<HashMap<usize, Arc<Kernels>>>> = OnceLock::new();
        let key = Arc::as_ptr(stream) as usize;
        let loaded = LOADED.get_or_init(Default::default);
        let mut map = loaded
            .lock()
            .map_err(|_| Error::Cuda("kernel cache poisoned".into()))?;
        if let Some(k) = map.get(&key) {
            return Ok(k.clone());
        }
        let kernels = Arc::new(Self::new(stream.clone())?);
        map.insert(key, kernels.clone());
        Ok(kernels)
    }

    fn function(&self, name: &str) -> &CudaFunction {
        &self.functions[name]
    }

    /// Inverse row norms of `v` [rows, dim]; errors naming the first zero row.
    fn inverse_norms(
        &self,
        v: &CudaView<f32>,
        rows: usize,
        dim: usize,
        what: &str,
    ) -> Result<CudaSlice<f32>> {
        let mut inv = self.stream.alloc_zeros::<f32>(rows).map_err(driver)?;
        let (rows_i, dim_i) = (int(rows, what)?, int(dim, "dim")?);
        let cfg = LaunchConfig {
            grid_dim: (rows.div_ceil(8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream.launch_builder(self.function("row_inv_norms"));
        launch.arg(v).arg(&rows_i).arg(&dim_i).arg(&mut inv);
        // SAFETY: one warp per row, rows.div_ceil(8) blocks of 8 warps; the kernel returns for
        // row >= rows, reads v[rows·dim] (checked by the caller) and writes inv[rows].
        unsafe { launch.launch(cfg) }.map_err(driver)?;
        let host = self.stream.clone_dtoh(&inv).map_err(driver)?;
        if let Some(row) = host.iter().position(|v| !v.is_finite() || *v == 0.0) {
            return Err(Error::InvalidInput(format!(
                "am-softmax: row {row} of {what} has zero or non-finite norm"
            )));
        }
        Ok(inv)
    }

    /// Checks buffer lengths against `p` and returns (x̂ [batch, dim], 1/‖x‖, 1/‖w‖).
    fn prepare(
        &self,
        x: &CudaView<f32>,
        w: &CudaView<f32>,
        labels: &CudaView<u32>,
        p: &Params,
    ) -> Result<(CudaSlice<f32>, CudaSlice<f32>, CudaSlice<f32>)> {
        if x.len() != p.batch * p.dim || w.len() != p.classes * p.dim || labels.len() != p.batch {
            return Err(Error::InvalidInput(format!(
                "am-softmax (cuda): buffers of {}, {} and {} values do not fit {p:?}",
                x.len(),
                w.len(),
                labels.len()
            )));
        }
        let inv_x = self.inverse_norms(x, p.batch, p.dim, "features")?;
        let inv_w = self.inverse_norms(w, p.classes, p.dim, "weights")?;
        let mut xhat = self
            .stream
            .alloc_zeros::<f32>(p.batch * p.dim)
            .map_err(driver)?;
        let (b, d) = (int(p.batch, "batch")?, int(p.dim, "dim")?);
        let mut launch = self.stream.launch_builder(self.function("scale_rows"));
        launch.arg(x).arg(&inv_x).arg(&b).arg(&d).arg(&mut xhat);
        // SAFETY: grid-stride loop over batch·dim elements of x and xhat (both that long, checked
        // above); inv_x has batch entries.
        unsafe { launch.launch(blocks_for(p.batch * p.dim)) }.map_err(driver)?;
        Ok((xhat, inv_x, inv_w))
    }

    /// Raw dot products of x̂ [batch, dim] with weight rows [c0, c0+n): `dots` [batch, n].
    fn tile_dots(
        &self,
        xhat: &CudaSlice<f32>,
        w: &CudaView<f32>,
        c0: usize,
        n: usize,
        p: &Params,
        dots: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let w_tile = w.slice(c0 * p.dim..(c0 + n) * p.dim);
        // Column-major view: dotsᵀ [n, batch] = W_tile [n, dim] · X̂ᵀ [dim, batch].
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: int(n, "tile")?,
            n: int(p.batch, "batch")?,
            k: int(p.dim, "dim")?,
            alpha: 1.0f32,
            lda: int(p.dim, "dim")?,
            ldb: int(p.dim, "dim")?,
            beta: 0.0f32,
            ldc: int(n, "tile")?,
        };
        // SAFETY: w_tile holds n·dim, xhat batch·dim and dots ≥ batch·n values, matching the
        // m, n, k and leading dimensions above.
        unsafe { self.blas.gemm(cfg, &w_tile, xhat, dots) }.map_err(driver)
    }

    /// Loss (a 1-element device buffer) and per-row log-sum-exp (host, [batch]).
    pub fn forward(
        &self,
        x: &CudaView<f32>,
        w: &CudaView<f32>,
        labels: &CudaView<u32>,
        p: Params,
    ) -> Result<(CudaSlice<f32>, Vec<f32>)> {
        let (xhat, _inv_x, inv_w) = self.prepare(x, w, labels, &p)?;
        let tile = GPU_TILE.min(p.classes);
        let mut dots = self
            .stream
            .alloc_zeros::<f32>(p.batch * tile)
            .map_err(driver)?;
        let mut run_max = self
            .stream
            .clone_htod(&vec![f32::NEG_INFINITY; p.batch])
            .map_err(driver)?;
        let mut run_sum = self.stream.alloc_zeros::<f32>(p.batch).map_err(driver)?;
        let mut target = self.stream.alloc_zeros::<f32>(p.batch).map_err(driver)?;
        let b = int(p.batch, "batch")?;

        for c0 in (0..p.classes).step_by(tile) {
            let n = tile.min(p.classes - c0);
            self.tile_dots(&xhat, w, c0, n, &p, &mut dots)?;
            let inv_tile = inv_w.slice(c0..c0 + n);
            let (n_i, c0_i) = (int(n, "tile")?, int(c0, "classes")?);
            let mut launch = self.stream.launch_builder(self.function("tile_lse"));
            launch
                .arg(&dots)
                .arg(&inv_tile)
                .arg(labels)
                .arg(&b)
                .arg(&n_i)
                .arg(&c0_i);
            launch
                .arg(&p.scale)
                .arg(&p.margin)
                .arg(&mut run_max)
                .arg(&mut run_sum)
                .arg(&mut target);
            let cfg = LaunchConfig {
                grid_dim: (p.batch as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: one 256-thread block per row (the kernel's shared arrays hold 256); dots has
            // ≥ batch·n values, inv_tile n, labels/run_max/run_sum/target batch.
            unsafe { launch.launch(cfg) }.map_err(driver)?;
        }

        let mut lse = self.stream.alloc_zeros::<f32>(p.batch).map_err(driver)?;
        let mut loss = self.stream.alloc_zeros::<f32>(1).map_err(driver)?;
        let mut launch = self.stream.launch_builder(self.function("finish_loss"));
        launch
            .arg(&run_max)
            .arg(&run_sum)
            .arg(&target)
            .arg(&b)
            .arg(&p.scale)
            .arg(&p.margin);
        launch.arg(&mut lse).arg(&mut loss);
        let one_block = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: a single 256-thread block (shared array of 256) striding over batch rows; all
        // arrays have batch entries, loss has 1.
        unsafe { launch.launch(one_block) }.map_err(driver)?;
        let lse = self.stream.clone_dtoh(&lse).map_err(driver)?;
        Ok((loss, lse))
    }

    /// Gradients of `grad · loss`, flattened: [batch·dim] dX then [classes·dim] dW.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &CudaView<f32>,
        w: &CudaView<f32>,
        labels: &CudaView<u32>,
        p: Params,
        lse: &[f32],
        grad: f32,
    ) -> Result<CudaSlice<f32>> {
        if lse.len() != p.batch {
            return Err(Error::InvalidInput(format!(
                "am-softmax (cuda): {} lse values for batch {}",
                lse.len(),
                p.batch
            )));
        }
        let (xhat, inv_x, inv_w) = self.prepare(x, w, labels, &p)?;
        let lse = self.stream.clone_htod(lse).map_err(driver)?;
        let (bd, cd) = (p.batch * p.dim, p.classes * p.dim);
        let mut flat = self.stream.alloc_zeros::<f32>(bd + cd).map_err(driver)?;
        let mut d_xhat = self.stream.alloc_zeros::<f32>(bd).map_err(driver)?;
        let tile = GPU_TILE.min(p.classes);
        let mut g = self
            .stream
            .alloc_zeros::<f32>(p.batch * tile)
            .map_err(driver)?;
        let (b, d) = (int(p.batch, "batch")?, int(p.dim, "dim")?);
        let coef = grad * p.scale / p.batch as f32;
        let (mut d_x, mut d_w) = flat.split_at_mut(bd);

        for c0 in (0..p.classes).step_by(tile) {
            let n = tile.min(p.classes - c0);
            let (n_i, c0_i) = (int(n, "tile")?, int(c0, "classes")?);
            self.tile_dots(&xhat, w, c0, n, &p, &mut g)?;
            let inv_tile = inv_w.slice(c0..c0 + n);
            let mut launch = self.stream.launch_builder(self.function("tile_grad"));
            launch
                .arg(&mut g)
                .arg(&inv_tile)
                .arg(labels)
                .arg(&lse)
                .arg(&b)
                .arg(&n_i)
                .arg(&c0_i);
            launch.arg(&p.scale).arg(&p.margin).arg(&coef);
            // SAFETY: grid-stride over batch·n entries of g (≥ batch·n long); inv_tile has n,
            // labels and lse batch entries.
            unsafe { launch.launch(blocks_for(p.batch * n)) }.map_err(driver)?;

            let w_tile = w.slice(c0 * p.dim..(c0 + n) * p.dim);
            // dX̂ [batch, dim] += G' [batch, n] · W_tile [n, dim]; column-major:
            // dX̂ᵀ [dim, batch] += W_tileᵀ [dim, n] · G'ᵀ [n, batch].
            let acc = GemmConfig {
                transa: cublasOperation_t::CUBLAS_OP_N,
                transb: cublasOperation_t::CUBLAS_OP_N,
                m: d,
                n: b,
                k: n_i,
                alpha: 1.0f32,
                lda: d,
                ldb: n_i,
                beta: 1.0f32,
                ldc: d,
            };
            // SAFETY: w_tile is n·dim, g ≥ batch·n, d_xhat batch·dim, matching the config.
            unsafe { self.blas.gemm(acc, &w_tile, &g, &mut d_xhat) }.map_err(driver)?;

            // dW'_tile [n, dim] = G'ᵀ [n, batch] · X̂ [batch, dim]; column-major:
            // dW'ᵀ [dim, n] = X̂ᵀ [dim, batch] · G' [batch, n] (G' stored as [n, batch] col-major).
            let mut dw_tile = d_w.slice_mut(c0 * p.dim..(c0 + n) * p.dim);
            let tile_cfg = GemmConfig {
                transa: cublasOperation_t::CUBLAS_OP_N,
                transb: cublasOperation_t::CUBLAS_OP_T,
                m: d,
                n: n_i,
                k: b,
                alpha: 1.0f32,
                lda: d,
                ldb: n_i,
                beta: 0.0f32,
                ldc: d,
            };
            // SAFETY: xhat is batch·dim, g ≥ batch·n, dw_tile exactly n·dim.
            unsafe { self.blas.gemm(tile_cfg, &xhat, &g, &mut dw_tile) }.map_err(driver)?;
        }

        self.stream.memcpy_dtod(&d_xhat, &mut d_x).map_err(driver)?;
        self.norm_backward(x, &inv_x, &mut d_x, p.batch, p.dim, false)?;
        self.norm_backward(w, &inv_w, &mut d_w, p.classes, p.dim, true)?;
        Ok(flat)
    }

    fn norm_backward(
        &self,
        v: &CudaView<f32>,
        inv: &CudaSlice<f32>,
        grad: &mut cudarc::driver::CudaViewMut<f32>,
        rows: usize,
        dim: usize,
        scaled: bool,
    ) -> Result<()> {
        let (rows_i, dim_i, scaled) = (int(rows, "rows")?, int(dim, "dim")?, i32::from(scaled));
        let mut launch = self.stream.launch_builder(self.function("norm_backward"));
        launch
            .arg(v)
            .arg(inv)
            .arg(grad)
            .arg(&rows_i)
            .arg(&dim_i)
            .arg(&scaled);
        let cfg = LaunchConfig {
            grid_dim: (rows.div_ceil(8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: one warp per row over rows.div_ceil(8) blocks of 8 warps; v and grad hold
        // rows·dim values, inv rows; rows beyond `rows` return early.
        unsafe { launch.launch(cfg) }.map_err(driver)?;
        Ok(())
    }
}
