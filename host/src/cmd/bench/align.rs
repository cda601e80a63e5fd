//! `facelock bench align`: decode and 5-point alignment throughput on LFW images.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use facelock_host::data::{align_image, decode_file, AlignConfig, CropCache, Landmarks};
use facelock_shared::align::{normalise_rgb, ALIGNED_LEN};
use rayon::prelude::*;

/// Arguments of `facelock bench align`.
#[derive(Args)]
pub struct AlignBench {
    /// Data folder holding `lfw/` and `lfw-landmarks.tsv`.
    #[arg(long, env = "FACELOCK_DATA")]
    data: PathBuf,
    /// Number of images (the first landmark rows in path order).
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

impl AlignBench {
    pub fn run(self) -> anyhow::Result<()> {
        let root = self.data.join("lfw");
        let landmarks = Landmarks::load(&self.data.join("lfw-landmarks.tsv"))?;
        let mut rows: Vec<_> = landmarks
            .iter()
            .map(|(p, l)| (p.to_path_buf(), *l))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.truncate(self.count);
        let n = rows.len();
        let config = AlignConfig::default();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()?;
        let cache_dir =
            std::env::temp_dir().join(format!("facelock-bench-align-{}", std::process::id()));
        let cache = CropCache::open(&cache_dir)?;

        let rate = |label: &str, seconds: f64| {
            println!(
                "{label:<34} {:>9.0} img/s  ({n} images, {seconds:.2} s)",
                n as f64 / seconds
            );
        };
        println!("bench align: {n} LFW images, {} threads", self.threads);

        let start = Instant::now();
        pool.install(|| {
            rows.par_iter()
                .try_for_each(|(p, _)| decode_file(&root.join(p)).map(drop))
        })?;
        rate("decode only", start.elapsed().as_secs_f64());

        let start = Instant::now();
        pool.install(|| {
            rows.par_iter()
                .try_for_each(|(p, l)| align_image(&root.join(p), Some(l), &config).map(drop))
        })?;
        rate("decode + align (f32 CHW)", start.elapsed().as_secs_f64());

        let start = Instant::now();
        pool.install(|| {
            rows.par_iter().try_for_each(|(p, l)| {
                cache
                    .get_or_align(&root.join(p), Some(l), &config)
                    .map(drop)
            })
        })?;
        rate(
            "decode + align + cache write",
            start.elapsed().as_secs_f64(),
        );

        let start = Instant::now();
        pool.install(|| {
            rows.par_iter().try_for_each(|(p, l)| {
                let crop = cache.get_or_align(&root.join(p), Some(l), &config)?;
                let mut out = vec![0.0f32; ALIGNED_LEN];
                normalise_rgb(&crop, &config.normalisation, false, &mut out)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            })
        })?;
        rate("cache hit + normalise", start.elapsed().as_secs_f64());

        let (hits, misses) = cache.counts();
        std::fs::remove_dir_all(&cache_dir)
            .with_context(|| format!("removing {}", cache_dir.display()))?;
        println!("cache: {hits} hits, {misses} misses");
        Ok(())
    }
}
