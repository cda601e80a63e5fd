//! `facelockd`: the board daemon. Parses arguments, checks everything at start, serves.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use facelock_firmware::camera::{self, CameraSpec};
use facelock_firmware::config::{AdminKey, FileConfig};
use facelock_firmware::device::Device;
use facelock_firmware::finder::{FaceFinder, LandmarkModel};
use facelock_firmware::lock::{self, BoardPin, Lock, LockSpec};
use facelock_firmware::model::FaceModel;
use facelock_firmware::pipeline::DEFAULT_CROP_FRACTION;
use facelock_firmware::server::{Server, Unlocker};
use facelock_firmware::Error;
use facelock_shared::decision::Policy;
use facelock_shared::serial::SerialLink;

/// Offline face unlock daemon: verifies faces sent over a serial link and pulses the lock.
#[derive(Debug, Parser)]
#[command(name = "facelockd", version)]
struct Args {
    /// ONNX embedding model with facelock metadata.
    #[arg(long, env = "FACELOCK_MODEL")]
    model: PathBuf,
    /// Gallery file (created on first enrollment); lockout state lives next to it.
    #[arg(long, env = "FACELOCK_GALLERY")]
    gallery: PathBuf,
    /// Serial device to serve, e.g. /dev/ttyS1 or a pseudo-terminal.
    #[arg(long, env = "FACELOCK_SERIAL")]
    serial: String,
    /// Baud rate [default: 115200, or `baud` from the config file].
    #[arg(long)]
    baud: Option<u32>,
    /// File holding the admin key (hex text or raw bytes, at least 16 bytes).
    #[arg(long, env = "FACELOCK_ADMIN_KEY_FILE")]
    admin_key_file: PathBuf,
    /// Lock output: `<gpiochip>:<line>`, `file:<path>` or `none`.
    #[arg(long)]
    lock_gpio: LockSpec,
    /// How long the lock stays energised after an accept, ms [default: 3000, or config].
    #[arg(long)]
    pulse_ms: Option<u64>,
    /// Optional TOML settings: threshold, pulse_ms, baud.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Camera for `Unlock` requests: `dir:<folder>` (image files as frames) or `/dev/videoN`.
    #[arg(long, requires = "landmark_model")]
    camera: Option<CameraSpec>,
    /// Landmark model (ONNX from `facelock landmarks train`), needed with --camera.
    #[arg(long)]
    landmark_model: Option<PathBuf>,
    /// Smallest face width accepted in a camera frame, pixels.
    #[arg(long, default_value_t = 60)]
    min_face: u32,
    /// Most frames examined per unlock.
    #[arg(long, default_value_t = 10)]
    unlock_frames: usize,
    /// Longest capture time per unlock, ms.
    #[arg(long, default_value_t = 2000)]
    unlock_window_ms: u64,
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let admin_key = AdminKey::load(&args.admin_key_file)?;
    let model = FaceModel::load(&args.model)?;
    let threshold = config
        .threshold
        .or(model.meta().threshold_far_1e3)
        .context(
            "no threshold: the model has no facelock.threshold.far_1e-3 and the config none",
        )?;
    let mut policy = Policy::new(threshold);
    policy.max_failures = config.max_failures.unwrap_or(policy.max_failures);
    policy.lockout_ms = config.lockout_ms.unwrap_or(policy.lockout_ms);
    policy.max_lockout_ms = policy.max_lockout_ms.max(policy.lockout_ms);
    let crop_fraction = config.crop_fraction.unwrap_or(DEFAULT_CROP_FRACTION);
    let device = Device::open(model, policy, crop_fraction, &args.gallery, admin_key)?;
    let unlocker = match (&args.camera, &args.landmark_model) {
        (Some(spec), Some(landmarks)) => {
            let finder = FaceFinder::new(LandmarkModel::load(landmarks)?, args.min_face)?;
            Some(Unlocker {
                camera: camera::open(spec)?,
                finder,
                max_frames: args.unlock_frames.max(1),
                window: Duration::from_millis(args.unlock_window_ms),
            })
        }
        _ => None,
    };

    let pulse = Duration::from_millis(args.pulse_ms.or(config.pulse_ms).unwrap_or(3000));
    let pin = BoardPin::open(&args.lock_gpio)?;
    let lock = Lock::new(pin, pulse);
    lock::install_stop_handlers().context("installing SIGTERM handler")?;

    let baud = args.baud.or(config.baud).unwrap_or(115_200);
    let mut link = SerialLink::open(&args.serial, baud).map_err(|e| Error::Serial {
        path: args.serial.clone(),
        message: e.to_string(),
    })?;
    tracing::info!(serial = %args.serial, threshold, "serving");
    let mut server = Server::new(device, lock);
    if let Some(unlocker) = unlocker {
        tracing::info!(camera = ?args.camera, "camera unlocks enabled");
        server = server.with_camera(unlocker);
    }
    server
        .serve(&mut link, lock::stop_requested)
        .context("serial link failed")?;
    tracing::info!("stopped; lock released");
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("facelockd: {e:#}");
            ExitCode::from(2)
        }
    }
}
