//! `facelock bench detect`: face detector recall on LFW and ORL, and time per 640x480 frame.
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use facelock_host::data::{decode_file, Dataset, Landmarks};
use facelock_host::landmarks::detection_for;
use facelock_shared::align::ImageRef;
use facelock_shared::detect::{DetectorConfig, FaceDetector};
use rand::{Rng, SeedableRng};

/// Arguments of `facelock bench detect`.
#[derive(Args)]
pub struct DetectBench {
    /// Data folder holding `lfw/`, `lfw-landmarks.tsv`, `lfw-protocol/` and `orl/`.
    #[arg(long, env = "FACELOCK_DATA")]
    data: PathBuf,
    /// LFW images to test (the first of peopleDevTest in path order).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// 640x480 frames to time (LFW faces pasted at 2x at random places).
    #[arg(long, default_value_t = 50)]
    frames: usize,
}

impl DetectBench {
    /// Runs the three measurements and prints them.
    pub fn run(self) -> anyhow::Result<()> {
        let config = DetectorConfig::default();
        let mut detector = FaceDetector::embedded(&config)?;
        let dataset = Dataset::from_folder(
            &self.data.join("lfw"),
            Some(&self.data.join("lfw-protocol/peopleDevTest.txt")),
            1,
        )?;
        let truth = Landmarks::load(&self.data.join("lfw-landmarks.tsv"))?;
        let samples: Vec<_> = dataset
            .samples
            .iter()
            .filter_map(|s| truth.get(&s.path).map(|t| (s.path.clone(), t)))
            .take(self.count)
            .collect();
        println!(
            "bench detect: rustface SeetaFace frontal, min face {} px, pyramid {}, step {}, \
             threshold {}",
            config.min_face, config.pyramid_scale, config.step, config.score_threshold
        );

        let bar = facelock_host::progress::bar(samples.len() as u64, "LFW dev-test");
        let (mut any, mut largest_right, mut seconds) = (0, 0, 0.0);
        for (relative, points) in &samples {
            let image = decode_file(&dataset.root.join(relative))?;
            let start = Instant::now();
            let detections = detector.detect(&image.view()?);
            seconds += start.elapsed().as_secs_f64();
            any += usize::from(detection_for(&detections, points).is_some());
            largest_right += usize::from(
                detection_for(&detections[..detections.len().min(1)], points).is_some(),
            );
            bar.inc(1);
        }
        bar.finish_and_clear();
        let n = samples.len().max(1) as f64;
        println!(
            "LFW dev-test ({} images, 150x150): labelled face found {:.1} %, largest box is it \
             {:.1} %, {:.1} ms/image",
            samples.len(),
            100.0 * any as f64 / n,
            100.0 * largest_right as f64 / n,
            1e3 * seconds / n
        );

        let orl = self.data.join("orl");
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&orl)? {
            let folder = entry?.path();
            if folder.is_dir() {
                for file in std::fs::read_dir(&folder)? {
                    paths.push(file?.path());
                }
            }
        }
        paths.sort();
        let mut found = 0;
        for path in &paths {
            let image = decode_file(path)?;
            found += usize::from(!detector.detect(&image.view()?).is_empty());
        }
        println!(
            "ORL ({} images, 92x112 grey): a face found in {:.1} %",
            paths.len(),
            100.0 * found as f64 / paths.len().max(1) as f64
        );

        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (width, height) = (640usize, 480usize);
        let mut times = Vec::new();
        let mut hits = 0;
        for (relative, points) in samples.iter().take(self.frames) {
            let face = decode_file(&dataset.root.join(relative))?;
            let mut frame = vec![90u8; width * height];
            let (ox, oy) = (
                rng.random_range(0..width - 2 * face.width),
                rng.random_range(0..height - 2 * face.height),
            );
            let view = face.view()?;
            let mut grey = Vec::new();
            view.grey_into(&mut grey);
            for y in 0..2 * face.height {
                for x in 0..2 * face.width {
                    frame[(oy + y) * width + ox + x] = grey[(y / 2) * face.width + x / 2];
                }
            }
            let frame_view = ImageRef::new(&frame, width, height, 1)?;
            let start = Instant::now();
            let detections = detector.detect(&frame_view);
            times.push(start.elapsed().as_secs_f64() * 1e3);
            let moved = points.map(|p| [ox as f32 + 2.0 * p[0], oy as f32 + 2.0 * p[1]]);
            hits += usize::from(detection_for(&detections, &moved).is_some());
        }
        times.sort_by(f64::total_cmp);
        if let Some(median) = times.get(times.len() / 2) {
            println!(
                "640x480 grey frames ({} frames, one LFW face at 2x): median {median:.1} ms, \
                 p90 {:.1} ms, face found in {hits}",
                times.len(),
                times[times.len() * 9 / 10]
            );
        }
        Ok(())
    }
}
