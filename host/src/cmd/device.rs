//! `facelock device …`: talk to a board over its serial port.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use facelock_host::data::landmarks::Landmarks;
use facelock_host::device::{self, describe, link_error};
use facelock_shared::client::{EnrollImage, EnrollOutcome, ENROLL_CHUNK_LEN};
use facelock_shared::protocol::{Request, Response};

/// Where the board is and how long to wait for it.
#[derive(Args)]
pub struct DeviceArgs {
    /// Serial port of the board (a UART, or the /dev/pts/N of a virtual board).
    #[arg(long, env = "FACELOCK_PORT")]
    port: String,
    /// Line speed.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    #[command(subcommand)]
    command: DeviceCommand,
}

/// What to ask the board.
#[derive(Subcommand)]
enum DeviceCommand {
    /// Versions, model id, threshold, capacity.
    Hello,
    /// Checks an admin key against the board.
    Auth(KeyArg),
    /// Enrolls a user from several face images (admin).
    Enroll(EnrollArgs),
    /// 1:1 check of a probe image against a user's template.
    Verify(VerifyArgs),
    /// Asks the board to unlock for a user from its own camera (as a keypad would).
    Unlock {
        /// The claimed user.
        #[arg(long)]
        user_id: u32,
    },
    /// Enrolled users.
    List,
    /// Removes a user (admin).
    Delete {
        /// The user to remove.
        #[arg(long)]
        user_id: u32,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Counters: verifies, accepts, lockouts, bad frames.
    Stats,
}

/// The admin key.
#[derive(Args)]
struct KeyArg {
    /// File holding the admin key provisioned on the board (at least 16 bytes).
    #[arg(long, env = "FACELOCK_ADMIN_KEY_FILE")]
    admin_key_file: PathBuf,
}

/// Landmarks for the images, when known.
#[derive(Args)]
struct LandmarkArgs {
    /// Landmarks TSV (relative path + 10 numbers); an image matches the row whose path it ends
    /// with. Images without a row are centre-cropped by the board.
    #[arg(long)]
    landmarks: Option<PathBuf>,
}

#[derive(Args)]
struct EnrollArgs {
    /// Numeric user id.
    #[arg(long)]
    user_id: u32,
    /// Display name (up to 32 bytes of UTF-8).
    #[arg(long)]
    name: String,
    /// Replace an existing user with this id.
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    key: KeyArg,
    #[command(flatten)]
    landmarks: LandmarkArgs,
    /// Face images (JPEG, PNG or PGM), two or three of the same person work well.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// The claimed user.
    #[arg(long)]
    user_id: u32,
    #[command(flatten)]
    landmarks: LandmarkArgs,
    /// The probe image.
    image: PathBuf,
}

impl DeviceArgs {
    /// Runs the request and prints the board's answer.
    pub fn run(self) -> anyhow::Result<()> {
        let timeout = Duration::from_secs_f64(self.timeout.max(0.1));
        let mut client = device::open_serial(&self.port, self.baud, timeout)?;
        let show = |r: &Response<'_>| (describe(r), matches!(r, Response::Error { .. }));

        let (text, refused) = match self.command {
            DeviceCommand::Hello => client.call(&Request::Hello, show).map_err(link_error)?,
            DeviceCommand::Auth(key) => {
                device::authenticate(&mut client, &device::read_admin_key(&key.admin_key_file)?)?;
                ("admin key accepted".to_string(), false)
            }
            DeviceCommand::Enroll(args) => {
                let key = device::read_admin_key(&args.key.admin_key_file)?;
                let images = read_images(&args.images, args.landmarks.landmarks.as_deref())?;
                let wire: Vec<EnrollImage<'_>> = images
                    .iter()
                    .map(|(bytes, landmarks)| EnrollImage {
                        bytes,
                        landmarks: *landmarks,
                    })
                    .collect();
                device::authenticate(&mut client, &key)?;

                let total: usize = images.iter().map(|(bytes, _)| bytes.len()).sum();
                let bar = indicatif::ProgressBar::new(total as u64)
                    .with_message(format!("enrolling user {}", args.user_id));
                let outcome = client
                    .enroll(
                        args.user_id,
                        &args.name,
                        args.replace,
                        &wire,
                        ENROLL_CHUNK_LEN,
                        |sent, _| bar.set_position(sent as u64),
                    )
                    .map_err(link_error)?;
                bar.finish_and_clear();
                match outcome {
                    EnrollOutcome::Enrolled { user_id, samples } => (
                        format!("user {user_id} enrolled from {samples} images"),
                        false,
                    ),
                    EnrollOutcome::Refused(refusal) => (
                        format!(
                            "error {} ({:?}): {}: {}",
                            refusal.code.number(),
                            refusal.code,
                            refusal.code.meaning(),
                            refusal.detail
                        ),
                        true,
                    ),
                }
            }
            DeviceCommand::Verify(args) => {
                let mut images = read_images(&[args.image], args.landmarks.landmarks.as_deref())?;
                let (image, landmarks) = images.remove(0);
                let request = Request::Verify {
                    user_id: args.user_id,
                    landmarks,
                    image: &image,
                };
                client.call(&request, show).map_err(link_error)?
            }
            DeviceCommand::Unlock { user_id } => client
                .call(&Request::Unlock { user_id }, show)
                .map_err(link_error)?,
            DeviceCommand::List => list_all(&mut client)?,
            DeviceCommand::Delete { user_id, key } => {
                device::authenticate(&mut client, &device::read_admin_key(&key.admin_key_file)?)?;
                client
                    .call(&Request::Delete { user_id }, show)
                    .map_err(link_error)?
            }
            DeviceCommand::Stats => client.call(&Request::Stats, show).map_err(link_error)?,
        };
        println!("{text}");
        if refused {
            bail!("the board refused the request");
        }
        Ok(())
    }
}

/// Pages through `List` until the board says there is no more.
fn list_all(
    client: &mut facelock_shared::client::Client<facelock_shared::serial::SerialLink>,
) -> anyhow::Result<(String, bool)> {
    let mut lines = Vec::new();
    let mut start = 0u32;
    loop {
        let page = client
            .call(&Request::List { start }, |r| match r {
                Response::UserList {
                    total,
                    entries,
                    more,
                } => Ok((
                    *total,
                    entries
                        .iter()
                        .map(|e| format!("{:>6}  {:<32}  {} samples", e.user_id, e.name, e.samples))
                        .collect::<Vec<_>>(),
                    *more,
                )),
                other => Err(describe(other)),
            })
            .map_err(link_error)?;
        let (total, entries, more) = match page {
            Ok(page) => page,
            Err(text) => return Ok((text, true)),
        };
        start += entries.len() as u32;
        lines.extend(entries);
        if !more || start >= total {
            lines.insert(0, format!("{total} users"));
            return Ok((lines.join("\n"), false));
        }
    }
}

/// Reads image files and finds their landmarks in the optional TSV.
fn read_images(
    paths: &[PathBuf],
    landmarks: Option<&Path>,
) -> anyhow::Result<Vec<(Vec<u8>, Option<facelock_shared::protocol::Landmarks>)>> {
    let table = landmarks.map(Landmarks::load).transpose()?;
    paths
        .iter()
        .map(|path| {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let points = table.as_ref().and_then(|table| {
                table.iter().find(|(rel, _)| path.ends_with(rel)).map(|(_, p)| *p)
            });
            if table.is_some() && points.is_none() {
                tracing::warn!(image = %path.display(), "no landmarks row; the board will crop the centre");
            }
            Ok((bytes, points.as_ref().map(device::wire_landmarks)))
        })
        .collect()
}
