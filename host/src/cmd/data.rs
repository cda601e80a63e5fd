//! `facelock data …`: inspect face data sets.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use facelock_host::data::{decode_file, Dataset};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Data set tools.
#[derive(Subcommand)]
pub enum Data {
    /// Identities, images, images-per-identity histogram and unreadable files of a folder tree.
    Stats(StatsArgs),
}

/// Arguments of `facelock data stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Root folder with one sub-folder per identity (e.g. .../lfw).
    root: PathBuf,
    /// Only these identities: LFW people file (peopleDevTrain.txt) or one name per line.
    #[arg(long)]
    people: Option<PathBuf>,
    /// Drop identities with fewer images.
    #[arg(long, default_value_t = 1)]
    min_images: usize,
    /// Skip decoding every image (no unreadable-file check).
    #[arg(long)]
    no_decode: bool,
}

impl Data {
    /// Runs the chosen data tool.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Data::Stats(args) => args.run(),
        }
    }
}

impl StatsArgs {
    fn run(self) -> anyhow::Result<()> {
        let dataset = Dataset::from_folder(&self.root, self.people.as_deref(), self.min_images)
            .with_context(|| format!("reading {}", self.root.display()))?;

        println!("root: {}", dataset.root.display());
        println!("identities: {}", dataset.identities.len());
        println!("images: {}", dataset.samples.len());
        if self.people.is_some() {
            println!(
                "listed identities without a folder (skipped): {}",
                dataset.missing_identities.len()
            );
        }
        println!(
            "identities below {} images (dropped): {}",
            self.min_images,
            dataset.too_few_images.len()
        );
        println!("non-image files (ignored): {}", dataset.ignored_files.len());

        println!("\nimages per identity   identities");
        let histogram = dataset.histogram();
        let buckets = [
            (1, 1),
            (2, 2),
            (3, 4),
            (5, 9),
            (10, 19),
            (20, 49),
            (50, 99),
            (100, usize::MAX),
        ];
        for (low, high) in buckets {
            let count: usize = histogram.range(low..=high).map(|(_, n)| n).sum();
            let label = match (low, high) {
                (l, h) if l == h => format!("{l}"),
                (l, usize::MAX) => format!("{l}+"),
                (l, h) => format!("{l}-{h}"),
            };
            println!("{label:>19}   {count}");
        }

        if !self.no_decode {
            let bar = ProgressBar::new(dataset.samples.len() as u64).with_style(
                ProgressStyle::with_template("decoding {bar:40} {pos}/{len} {per_sec} eta {eta}")?,
            );
            let unreadable: Vec<String> = dataset
                .samples
                .par_iter()
                .filter_map(|sample| {
                    let result = decode_file(&dataset.full_path(sample));
                    bar.inc(1);
                    result.err().map(|e| e.to_string())
                })
                .collect();
            bar.finish_and_clear();
            println!("\nunreadable images: {}", unreadable.len());
            for line in &unreadable {
                println!("  {line}");
            }
        }
        Ok(())
    }
}
