//! `facelock bench loss`: fused vs naive AM-Softmax, time and measured peak memory.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use facelock_host::loss::bench;

/// Where the loss benchmark runs.
#[derive(Clone, Copy, ValueEnum)]
pub enum DeviceKind {
    /// The CPU (fused CPU op).
    Cpu,
    /// The first CUDA GPU (needs a `--features cuda` build).
    Cuda,
}

/// Arguments of `facelock bench loss`.
#[derive(Args)]
pub struct LossArgs {
    /// Embedding widths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,512")]
    dims: Vec<usize>,
    /// Class counts, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,10000,100000,1000000"
    )]
    classes: Vec<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Timed repetitions per row (median reported; one extra warm-up run).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Worker threads for the CPU (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Skip the naive head when it would need more than this many GB.
    #[arg(long, default_value_t = 8.0)]
    naive_limit_gb: f64,
    /// Also time the three plain GEMMs of the same shape (the speed-of-light row).
    #[arg(long)]
    gemms: bool,
    /// Also write the rows as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// cpu or cuda.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

pub fn run(args: LossArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.dims.contains(&0) || args.classes.contains(&0) {
        anyhow::bail!("--batch, --dims and --classes must all be > 0");
    }
    if let Some(threads) = args.threads {
        // candle's CPU matmul reads RAYON_NUM_THREADS; our fused op uses the global pool.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()?;
    }
    let (device, device_name) = match args.device {
        DeviceKind::Cpu => (candle_core::Device::Cpu, "cpu"),
        DeviceKind::Cuda if !cfg!(feature = "cuda") => {
            anyhow::bail!("facelock was built without CUDA; rebuild with `--features cuda`")
        }
        DeviceKind::Cuda => {
            let device = candle_core::Device::new_cuda(0).context("no usable CUDA device")?;
            (device, "cuda")
        }
    };
    let config = bench::Config {
        batch: args.batch,
        dims: args.dims,
        classes: args.classes,
        reps: args.reps,
        device,
        gemm_baseline: args.gemms,
        naive_limit_bytes: (args.naive_limit_gb * 1e9) as u64,
    };
    let runs_per_shape = usize::from(args.device.is_cpu()) + 2 + usize::from(args.gemms);
    let total = config.dims.len() * config.classes.len() * runs_per_shape * config.reps;
    let bar = indicatif::ProgressBar::new(total as u64);
    let rows = bench::run(&config, |what| {
        bar.set_message(what.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();

    println!(
        "AM-Softmax forward+backward, batch {}, {device_name}, {} threads",
        args.batch,
        rayon::current_num_threads()
    );
    print!("{}", bench::to_table(&rows));
    if let Some(path) = args.csv {
        let csv = bench::to_csv(args.batch, device_name, &rows);
        std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

impl DeviceKind {
    fn is_cpu(self) -> bool {
        matches!(self, DeviceKind::Cpu)
    }
}
