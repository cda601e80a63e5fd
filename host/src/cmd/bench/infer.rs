//! `facelock bench infer`: single-image latency of ONNX models in tract, file sizes, and the
//! same models in onnxruntime (through `bench/ort_check.py`) when it is installed.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use facelock_host::onnx::Embedder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Arguments of `bench infer`.
#[derive(clap::Args)]
pub struct Args {
    /// ONNX model(s) to measure (repeat the flag).
    #[arg(long = "model", required = true)]
    models: Vec<PathBuf>,
    /// Threads (tract runs single-threaded; onnxruntime gets this many intra-op threads).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed runs per model (after 5 warm-ups); the median is reported.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// The onnxruntime script.
    #[arg(long, default_value = "bench/ort_check.py")]
    ort_script: PathBuf,
    /// Python interpreter for the onnxruntime script.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Also score this pairs file with every model: best-threshold accuracy, and the cosine
    /// of each model's embeddings to the first model's (mean, 1st percentile).
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Image root for --pairs.
    #[arg(long, env = "FACELOCK_LFW")]
    images: Option<PathBuf>,
    /// Landmarks TSV for --pairs.
    #[arg(long)]
    landmarks: Option<PathBuf>,
    /// Also print where tract spends its time: milliseconds per run by op kind.
    #[arg(long)]
    profile: bool,
}

struct Row {
    model: PathBuf,
    size: u64,
    tract_ms: f64,
}

/// Runs the benchmark and prints a table.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.threads != 1 {
        bail!("tract is measured single-threaded here; pass --threads 1");
    }
    if args.runs < 1 {
        bail!("--runs must be at least 1");
    }
    let check_dir = tempfile::tempdir().context("temporary directory")?;
    let mut rows = Vec::new();
    for path in &args.models {
        let size = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        let embedder = Embedder::load(path, 1)?;
        let mut rng = StdRng::seed_from_u64(0);
        let image: Vec<f32> = (0..embedder.image_len())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        for _ in 0..5 {
            embedder.embed(&image)?;
        }
        let progress = facelock_host::progress::bar(args.runs as u64, "tract");
        let mut times = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let start = Instant::now();
            std::hint::black_box(embedder.embed(&image)?);
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            progress.inc(1);
        }
        progress.finish_and_clear();
        times.sort_by(f64::total_cmp);
        rows.push(Row {
            model: path.clone(),
            size,
            tract_ms: times[times.len() / 2],
        });
        write_check_files(&embedder, rows.len() - 1, check_dir.path())?;
        if args.profile {
            print_profile(&embedder, &image, path, args.runs)?;
        }
    }

    let ort = ort_results(&args, check_dir.path());
    println!(
        "model\tbytes\ttract_1t_ms\tort_{}t_ms\tort_vs_tract_max_abs\tort_vs_tract_min_cos",
        args.threads
    );
    for row in &rows {
        let found = ort.as_ref().ok().and_then(|list| {
            list.iter()
                .find(|v| v["model"].as_str() == Some(&row.model.display().to_string()))
        });
        let field = |key: &str, digits: usize| {
            found
                .and_then(|v| v[key].as_f64())
                .map(|x| {
                    if digits == 0 {
                        format!("{x:.2e}")
                    } else {
                        format!("{x:.digits$}")
                    }
                })
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{}\t{}\t{:.2}\t{}\t{}\t{}",
            row.model.display(),
            row.size,
            row.tract_ms,
            field("ort_median_ms", 2),
            field("max_abs_diff", 0),
            field("min_cosine", 6)
        );
    }
    if let Err(reason) = ort {
        tracing::warn!("onnxruntime not measured: {reason}");
    }
    if let Some(pairs) = &args.pairs {
        compare_on_pairs(&args, pairs)?;
    }
    Ok(())
}

/// Milliseconds per run by tract op kind (timed node by node, so the sum is a little above the
/// end-to-end median).
fn print_profile(
    embedder: &Embedder,
    image: &[f32],
    path: &Path,
    runs: usize,
) -> anyhow::Result<()> {
    let meta = embedder.meta();
    let shape = [1, 3, meta.input_height, meta.input_width];
    let input = tract_onnx::prelude::Tensor::from_shape(&shape, image)?;
    let rows = facelock_host::onnx::runner::profile_ops(embedder.plan(), &input, runs)?;
    let total: f64 = rows.iter().map(|r| r.1).sum();
    println!(
        "{}: tract time by op kind ({total:.2} ms per run in all)",
        path.display()
    );
    println!("op	nodes	ms_per_run	share");
    for (op, ms, nodes) in rows {
        println!("{op}	{nodes}	{ms:.3}	{:.1}%", 100.0 * ms / total.max(1e-12));
    }
    Ok(())
}

/// Accuracy of each model on `pairs` and the cosine of its embeddings to the first model's.
fn compare_on_pairs(args: &Args, pairs_path: &Path) -> anyhow::Result<()> {
    use facelock_host::data::{Landmarks, Pairs};
    use facelock_host::eval::verification::{best_threshold, ScoredPairs};
    use facelock_host::quantize::images::score_pairs;

    let root = args.images.as_ref().context("--pairs needs --images")?;
    let landmarks = Landmarks::load(
        args.landmarks
            .as_ref()
            .context("--pairs needs --landmarks")?,
    )?;
    let pairs = Pairs::load(pairs_path)?;
    let mut first: Option<Vec<f32>> = None;
    println!("model\tpairs\tbest_threshold_accuracy\tcosine_to_first_mean\tcosine_to_first_p1");
    for path in &args.models {
        let embedder = Embedder::load(path, 32)?;
        let dim = embedder.meta().embedding_dim;
        let scored = score_pairs(&embedder, root, &landmarks, &pairs)?;
        let all: Vec<usize> = (0..scored.scores.len()).collect();
        let view = ScoredPairs {
            scores: &scored.scores,
            same: &scored.same,
        };
        let (_, accuracy) = best_threshold(&view, &all);
        let (mean, p1) = match &first {
            None => (1.0, 1.0),
            Some(reference) => {
                let mut cosines: Vec<f64> = scored
                    .embeddings
                    .chunks(dim)
                    .zip(reference.chunks(dim))
                    .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum())
                    .collect();
                cosines.sort_by(f64::total_cmp);
                let mean = cosines.iter().sum::<f64>() / cosines.len().max(1) as f64;
                (mean, cosines[cosines.len() / 100])
            }
        };
        println!(
            "{}\t{}\t{:.2}%\t{mean:.5}\t{p1:.5}",
            path.display(),
            scored.scores.len(),
            100.0 * accuracy
        );
        first.get_or_insert(scored.embeddings);
    }
    Ok(())
}

/// Writes 8 seeded images and tract's embeddings of them for `ort_check.py --check`, named
/// after the model's position on the command line (`model-<index>`), not its file name,
/// which may repeat.
fn write_check_files(embedder: &Embedder, index: usize, dir: &Path) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(1);
    let images: Vec<f32> = (0..8 * embedder.image_len())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let embeddings = embedder.embed(&images)?;
    let name = format!("model-{index}");
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.join(format!("{name}.input.f32")), bytes(&images))?;
    std::fs::write(dir.join(format!("{name}.tract.f32")), bytes(&embeddings))?;
    Ok(())
}

/// The JSON lines of `ort_check.py --bench --check`, or why there are none.
fn ort_results(args: &Args, check_dir: &Path) -> Result<Vec<serde_json::Value>, String> {
    let output = Command::new(&args.python)
        .arg(&args.ort_script)
        .args(&args.models)
        .args([
            "--bench",
            "--threads",
            &args.threads.to_string(),
            "--runs",
            &args.runs.to_string(),
        ])
        .arg("--check")
        .arg(check_dir)
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} {}: {e}",
                args.python,
                args.ort_script.display()
            )
        })?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).map_err(|e| format!("bad line from ort_check.py: {e}"))
        })
        .collect()
}
