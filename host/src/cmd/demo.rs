//! `facelock demo`: a virtual board on a pseudo-terminal, enrolled and unlocked over serial.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use facelock_host::demo::{self, DemoConfig};

/// Shipped default model, relative to the workspace root.
const DEFAULT_MODEL: &str = "models/facelock-f32.onnx";
/// Shipped landmark cascade for the camera phase, relative to the workspace root.
const DEFAULT_LANDMARKS: &str = "models/facelock-landmarks.onnx";

/// Arguments of `facelock demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Folder with lfw/, lfw-landmarks.tsv and lfw-protocol/.
    #[arg(long, env = "FACELOCK_DATA")]
    data: Option<PathBuf>,
    /// The model the virtual board runs [default: models/facelock-f32.onnx].
    #[arg(long)]
    model: Option<PathBuf>,
    /// The facelockd executable [default: next to this one, built with cargo if missing].
    #[arg(long, env = "FACELOCKD")]
    facelockd: Option<PathBuf>,
    /// Scratch folder for the board's files and the plots.
    #[arg(long, default_value = "runs/demo")]
    work: PathBuf,
    /// People to enroll.
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Images per person for enrollment.
    #[arg(long, default_value_t = 2)]
    enroll_images: usize,
    /// Seed for choosing people.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Landmark cascade for the camera phase [default: models/facelock-landmarks.onnx].
    #[arg(long)]
    landmark_model: Option<PathBuf>,
    /// People unlocked through the board's camera (0 skips the camera phase).
    #[arg(long, default_value_t = 5)]
    camera_users: usize,
}

impl DemoArgs {
    /// Runs the demo and prints its summary.
    pub fn run(self) -> anyhow::Result<()> {
        let Some(data) = self.data else {
            bail!(
                "no face data: set FACELOCK_DATA or pass --data (a folder with the LFW images in \
                 lfw/, the landmarks file lfw-landmarks.tsv and the protocol files in \
                 lfw-protocol/; see ../shared/data/README.md for the layout)"
            );
        };
        demo::check_data(&data)?;
        let model = match self.model {
            Some(model) => model,
            None => workspace_file(DEFAULT_MODEL),
        };
        let facelockd = match self.facelockd {
            Some(path) => path,
            None => find_or_build_facelockd()?,
        };
        let config = DemoConfig {
            data,
            model,
            facelockd,
            work: self.work.clone(),
            users: self.users,
            enroll_images: self.enroll_images,
            probes_per_user: 3,
            impostors_per_user: 3,
            seed: self.seed,
            landmark_model: (self.camera_users > 0).then(|| {
                self.landmark_model
                    .clone()
                    .unwrap_or_else(|| workspace_file(DEFAULT_LANDMARKS))
            }),
            camera_users: self.camera_users,
        };

        let bar = indicatif::ProgressBar::new(1);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .context("progress template")?,
        );
        let report = demo::run(&config, |done, total, what| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(what.to_string());
        })?;
        bar.finish_and_clear();

        let genuine = report.checks.iter().filter(|c| c.genuine).count();
        let impostor = report.checks.len() - genuine;
        println!(
            "facelock demo: {} users enrolled over the serial protocol",
            report.enrolled
        );
        println!("  model                 {}", config.model.display());
        println!("  threshold             {:.4}", report.threshold);
        println!(
            "  genuine accept rate   {:.1} % ({genuine} checks)",
            100.0 * report.genuine_accept_rate()
        );
        println!(
            "  false accept rate     {:.1} % ({impostor} checks)",
            100.0 * report.false_accept_rate()
        );
        println!(
            "  median verify latency {:.1} ms",
            report.median_latency_ms()
        );
        println!(
            "  after restart         {} users still enrolled",
            report.enrolled_after_restart
        );
        if !report.camera.is_empty() {
            let line = |genuine: bool| {
                let checks: Vec<_> = report
                    .camera
                    .iter()
                    .filter(|c| c.genuine == genuine)
                    .collect();
                let accepted = checks
                    .iter()
                    .filter(|c| matches!(c.decision, Some((_, true))))
                    .count();
                let refused = checks.iter().filter(|c| c.refusal.is_some()).count();
                format!(
                    "{accepted} of {} accepted, {refused} without a usable face",
                    checks.len()
                )
            };
            println!("  camera unlocks        genuine: {}", line(true));
            println!("                        impostor: {}", line(false));
            for refusal in report.camera.iter().filter_map(|c| c.refusal.as_ref()) {
                println!("    refused: {refusal}");
            }
        }
        for line in &report.lockout_log {
            println!("  {line}");
        }
        println!("  locked out            {}", report.locked_out);

        let plot = self.work.join("demo-scores.png");
        let scores = |genuine: bool| -> Vec<f64> {
            report
                .checks
                .iter()
                .filter(|c| c.genuine == genuine)
                .map(|c| c.score as f64)
                .collect()
        };
        let (same, other) = (scores(true), scores(false));
        facelock_host::plot::histogram(
            &plot,
            &format!("verify scores (threshold {:.3})", report.threshold),
            "cosine score",
            &[("genuine", &same), ("impostor", &other)],
            30,
        )?;
        println!("  score histogram       {}", plot.display());
        Ok(())
    }
}

/// A path under the workspace root: relative to the current folder if it exists there, else
/// to the source checkout this binary was built from.
fn workspace_file(relative: &str) -> PathBuf {
    let here = PathBuf::from(relative);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// `facelockd` next to this executable; when missing and run through cargo, builds it.
fn find_or_build_facelockd() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the facelock executable")?;
    let dir = exe.parent().context("executable without a folder")?;
    let sibling = dir.join("facelockd");
    if sibling.is_file() {
        return Ok(sibling);
    }
    let Ok(cargo) = std::env::var("CARGO") else {
        bail!("facelockd not found next to {}; build it with `cargo build -p facelock-firmware` or pass --facelockd", exe.display());
    };
    tracing::info!("building facelockd (cargo build -p facelock-firmware)");
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "-p", "facelock-firmware", "--bin", "facelockd"]);
    if dir.ends_with("release") {
        command.arg("--release");
    }
    let status = command.status().context("running cargo")?;
    if !status.success() || !sibling.is_file() {
        bail!("building facelockd failed ({status})");
    }
    Ok(sibling)
}
