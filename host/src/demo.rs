//! The whole journey on one machine: a virtual board (`facelockd` on a pseudo-terminal),
//! admin provisioning, enrollment of LFW dev-test people over the serial protocol, genuine and
//! impostor unlock checks, a restart, and a lockout.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use facelock_shared::client::{Client, EnrollImage, EnrollOutcome, ENROLL_CHUNK_LEN};
use facelock_shared::protocol::{Request, Response};
use facelock_shared::serial::{open_pty, ControllerLink, Pty};

use crate::data::folder::Dataset;
use crate::data::landmarks::Landmarks;
use crate::device::{self, describe, link_error, wire_landmarks};
use crate::{Error, Result};

/// What the demo needs and how big it is.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Folder holding `lfw/`, `lfw-landmarks.tsv` and `lfw-protocol/`.
    pub data: PathBuf,
    /// The ONNX model the board runs (ours, with facelock metadata).
    pub model: PathBuf,
    /// The `facelockd` executable.
    pub facelockd: PathBuf,
    /// Scratch folder: admin key, gallery, lock log, daemon log.
    pub work: PathBuf,
    /// People to enroll.
    pub users: usize,
    /// Images per person used for enrollment (the rest are probes).
    pub enroll_images: usize,
    /// Genuine probes per person, at most.
    pub probes_per_user: usize,
    /// Impostor probes per enrolled person.
    pub impostors_per_user: usize,
    /// Seed for choosing people.
    pub seed: u64,
    /// Landmark cascade for the camera phase (`facelockd --camera dir:`); `None` skips it.
    pub landmark_model: Option<PathBuf>,
    /// People checked through the board's camera, with one genuine and one impostor frame.
    pub camera_users: usize,
}

/// One camera unlock: whose frame it was and what the board answered.
#[derive(Debug, Clone)]
pub struct CameraCheck {
    /// The frame shows the claimed person.
    pub genuine: bool,
    /// `Some((score, accepted))` for a decision, `None` with the board's refusal in `refusal`.
    pub decision: Option<(f32, bool)>,
    /// The error the board answered when it found no usable face.
    pub refusal: Option<String>,
}

/// One verify: who was claimed, whether it was really them, what the board said.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// The claimed user's id.
    pub user_id: u32,
    /// The probe shows the claimed person.
    pub genuine: bool,
    /// Cosine score reported by the board.
    pub score: f32,
    /// The board unlocked.
    pub accepted: bool,
    /// Time from sending the request to the decoded answer, ms.
    pub latency_ms: f64,
}

/// What the demo measured.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The board's threshold.
    pub threshold: f32,
    /// Users enrolled.
    pub enrolled: usize,
    /// Every verify made in the measurement phase.
    pub checks: Vec<Check>,
    /// The answers of the lockout phase, one line each.
    pub lockout_log: Vec<String>,
    /// Whether the lockout phase ended locked out.
    pub locked_out: bool,
    /// Users the board reported after its restart.
    pub enrolled_after_restart: u32,
    /// Unlocks from camera frames (empty without a landmark model).
    pub camera: Vec<CameraCheck>,
}

impl DemoReport {
    /// Fraction of genuine checks accepted.
    pub fn genuine_accept_rate(&self) -> f64 {
        rate(self.checks.iter().filter(|c| c.genuine))
    }

    /// Fraction of impostor checks accepted.
    pub fn false_accept_rate(&self) -> f64 {
        rate(self.checks.iter().filter(|c| !c.genuine))
    }

    /// Median verify latency, ms.
    pub fn median_latency_ms(&self) -> f64 {
        let mut latencies: Vec<f64> = self.checks.iter().map(|c| c.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

fn rate<'a>(checks: impl Iterator<Item = &'a Check>) -> f64 {
    let (mut accepted, mut total) = (0usize, 0usize);
    for check in checks {
        total += 1;
        accepted += usize::from(check.accepted);
    }
    accepted as f64 / total.max(1) as f64
}

/// Checks that `data` holds LFW as facelock expects, or says how to get it.
pub fn check_data(data: &Path) -> Result<()> {
    let needed = ["lfw", "lfw-landmarks.tsv", "lfw-protocol/peopleDevTest.txt"];
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|p| !data.join(p).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "face data not found in '{}' (missing: {}). The demo needs the LFW images \
         (lfw/<Name>/<Name>_NNNN.jpg, e.g. from http://vis-www.cs.umass.edu/lfw/, downscaled to \
         150x150), the 5-point landmarks file lfw-landmarks.tsv (as published with SphereFace, \
         in the images' pixel coordinates) and the LFW protocol files in lfw-protocol/. Point \
         FACELOCK_DATA or --data at that folder.",
        data.display(),
        missing.join(", ")
    )))
}

/// A person chosen for the demo: enrollment images and probes (paths relative to `lfw/`).
struct Person {
    user_id: u32,
    name: String,
    enroll: Vec<PathBuf>,
    probes: Vec<PathBuf>,
}

fn choose_people(config: &DemoConfig) -> Result<Vec<Person>> {
    let root = config.data.join("lfw");
    let list = config.data.join("lfw-protocol/peopleDevTest.txt");
    let min_images = config.enroll_images + 1;
    let dataset = Dataset::from_folder(&root, Some(&list), min_images)?;
    if dataset.identities.len() < config.users + 1 {
        return Err(Error::InvalidInput(format!(
            "only {} dev-test people have {min_images}+ images; the demo needs {}",
            dataset.identities.len(),
            config.users + 1
        )));
    }

    // A seeded shuffle of the eligible people (xorshift; no dependence on rand's versions).
    let mut order: Vec<usize> = (0..dataset.identities.len()).collect();
    let mut state = config.seed | 1;
    for i in (1..order.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }

    let people = order
        .into_iter()
        .take(config.users)
        .enumerate()
        .map(|(n, label)| {
            let mut images: Vec<PathBuf> = dataset
                .samples
                .iter()
                .filter(|s| s.label as usize == label)
                .map(|s| s.path.clone())
                .collect();
            images.sort();
            let probes = images.split_off(config.enroll_images);
            Person {
                user_id: 1000 + n as u32,
                name: dataset.identities[label].clone(),
                enroll: images,
                probes: probes.into_iter().take(config.probes_per_user).collect(),
            }
        })
        .collect();
    Ok(people)
}

/// A running `facelockd` on a pseudo-terminal, stopped (SIGTERM) when dropped.
struct Board {
    child: Child,
}

impl Board {
    fn start(config: &DemoConfig, pty: &Pty, settings: Option<&Path>) -> Result<Board> {
        Self::start_with(config, pty, settings, &[])
    }

    fn start_with(
        config: &DemoConfig,
        pty: &Pty,
        settings: Option<&Path>,
        extra: &[std::ffi::OsString],
    ) -> Result<Board> {
        let log_path = config.work.join("facelockd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?;
        let mut command = Command::new(&config.facelockd);
        command
            .arg("--model")
            .arg(&config.model)
            .arg("--gallery")
            .arg(config.work.join("gallery.bin"))
            .arg("--serial")
            .arg(&pty.path)
            .arg("--admin-key-file")
            .arg(config.work.join("admin.key"))
            .arg("--lock-gpio")
            .arg(format!("file:{}", config.work.join("lock.log").display()))
            .arg("--pulse-ms")
            .arg("50")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(settings) = settings {
            command.arg("--config").arg(settings);
        }
        let child = command
            .spawn()
            .map_err(|e| Error::io(&config.facelockd, e))?;
        Ok(Board { child })
    }

    fn stop(mut self) -> Result<()> {
        self.terminate();
        Ok(())
    }

    fn terminate(&mut self) {
        // SAFETY: kill(2) with a pid we spawned and have not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Waits until the board answers Hello (model loading takes a while), returning the threshold
/// and the number of enrolled users.
fn wait_for_hello(client: &mut Client<ControllerLink>, board: &mut Board) -> Result<(f32, u32)> {
    let start = Instant::now();
    loop {
        let answer = client.call(&Request::Hello, |r| match r {
            Response::Hello {
                threshold,
                enrolled,
                ..
            } => Some((*threshold, *enrolled)),
            _ => None,
        });
        match answer {
            Ok(Some(hello)) => return Ok(hello),
            Ok(None) => return Err(Error::Device("unexpected answer to Hello".into())),
            Err(_) if start.elapsed() < Duration::from_secs(120) => {
                if let Ok(Some(status)) = board.child.try_wait() {
                    return Err(Error::Device(format!(
                        "facelockd exited ({status}) before answering; see its log"
                    )));
                }
            }
            Err(error) => return Err(link_error(error)),
        }
    }
}

/// The board's score and decision, or its refusal as text.
type VerifyAnswer = std::result::Result<(f32, bool), String>;

fn read_probe(config: &DemoConfig, rel: &Path) -> Result<Vec<u8>> {
    let path = config.data.join("lfw").join(rel);
    std::fs::read(&path).map_err(|e| Error::io(path, e))
}

fn verify(
    client: &mut Client<ControllerLink>,
    config: &DemoConfig,
    landmarks: &Landmarks,
    user_id: u32,
    probe: &Path,
) -> Result<(VerifyAnswer, f64)> {
    let image = read_probe(config, probe)?;
    let request = Request::Verify {
        user_id,
        landmarks: landmarks.get(probe).as_ref().map(wire_landmarks),
        image: &image,
    };
    let start = Instant::now();
    let answer = client
        .call(&request, |r| match r {
            Response::Verified {
                score, accepted, ..
            } => Ok((*score, *accepted)),
            other => Err(describe(other)),
        })
        .map_err(link_error)?;
    Ok((answer, start.elapsed().as_secs_f64() * 1e3))
}

/// Runs the demo; `progress(done, total, what)` reports each step.
pub fn run(
    config: &DemoConfig,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<DemoReport> {
    check_data(&config.data)?;
    if !config.model.is_file() {
        return Err(Error::InvalidInput(format!(
            "model '{}' not found; pass --model (see models/README.md)",
            config.model.display()
        )));
    }
    std::fs::create_dir_all(&config.work).map_err(|e| Error::io(&config.work, e))?;
    for stale in [
        "gallery.bin",
        "gallery.bin.lockout",
        "lock.log",
        "facelockd.log",
    ] {
        let _ = std::fs::remove_file(config.work.join(stale));
    }
    let key_path = config.work.join("admin.key");
    device::write_new_admin_key(&key_path)?;
    let key = device::read_admin_key(&key_path)?;
    // Measurement phase: no lockout, so impostor checks cannot block genuine ones.
    let measuring = config.work.join("measure.toml");
    std::fs::write(&measuring, "max_failures = 255\nlockout_ms = 1\n")
        .map_err(|e| Error::io(&measuring, e))?;

    let landmarks = Landmarks::load(&config.data.join("lfw-landmarks.tsv"))?;
    let people = choose_people(config)?;
    let genuine_total: usize = people.iter().map(|p| p.probes.len()).sum();
    let total = people.len() + genuine_total + people.len() * config.impostors_per_user + 8;
    let mut done = 0;

    let pty = open_pty().map_err(|e| Error::io("/dev/ptmx", e))?;
    let controller = pty
        .controller
        .try_clone()
        .map_err(|e| Error::io(&pty.path, e))?;
    let mut client = Client::new(
        ControllerLink::new(controller, Duration::from_millis(100)),
        50,
    );
    let frames = config.work.join("frames");
    let mut camera_args = Vec::new();
    if let Some(model) = &config.landmark_model {
        let _ = std::fs::remove_dir_all(&frames);
        std::fs::create_dir_all(&frames).map_err(|e| Error::io(&frames, e))?;
        let mut camera = std::ffi::OsString::from("dir:");
        camera.push(&frames);
        camera_args.extend([
            "--camera".into(),
            camera,
            "--landmark-model".into(),
            model.clone().into_os_string(),
            // LFW faces are ~50 px wide in their 150x150 frames.
            "--min-face".into(),
            "40".into(),
            "--unlock-window-ms".into(),
            "500".into(),
        ]);
    }
    let camera_users = if config.landmark_model.is_some() {
        config.camera_users.min(people.len())
    } else {
        0
    };
    let total = total + 2 * camera_users;
    let mut board = Board::start_with(config, &pty, Some(&measuring), &camera_args)?;
    progress(done, total, "starting facelockd");
    let (threshold, _) = wait_for_hello(&mut client, &mut board)?;
    tracing::info!(threshold, model = %config.model.display(), "virtual board is up");
    device::authenticate(&mut client, &key)?;

    for person in &people {
        let files: Vec<Vec<u8>> = person
            .enroll
            .iter()
            .map(|p| read_probe(config, p))
            .collect::<Result<_>>()?;
        let images: Vec<EnrollImage<'_>> = files
            .iter()
            .zip(&person.enroll)
            .map(|(bytes, rel)| EnrollImage {
                bytes,
                landmarks: landmarks.get(rel).as_ref().map(wire_landmarks),
            })
            .collect();
        let outcome = client
            .enroll(
                person.user_id,
                &person.name,
                false,
                &images,
                ENROLL_CHUNK_LEN,
                |_, _| {},
            )
            .map_err(link_error)?;
        if let EnrollOutcome::Refused(refusal) = outcome {
            return Err(Error::Device(format!(
                "enrolling {}: {} ({})",
                person.name,
                refusal.code.meaning(),
                refusal.detail
            )));
        }
        done += 1;
        progress(done, total, "enrolling");
    }

    let mut checks = Vec::new();
    let mut record =
        |user_id, genuine, outcome: (std::result::Result<(f32, bool), String>, f64)| match outcome.0
        {
            Ok((score, accepted)) => {
                checks.push(Check {
                    user_id,
                    genuine,
                    score,
                    accepted,
                    latency_ms: outcome.1,
                });
                Ok(())
            }
            Err(text) => Err(Error::Device(format!("verify of user {user_id}: {text}"))),
        };
    for person in &people {
        for probe in &person.probes {
            record(
                person.user_id,
                true,
                verify(&mut client, config, &landmarks, person.user_id, probe)?,
            )?;
            done += 1;
            progress(done, total, "genuine checks");
        }
    }
    for (n, person) in people.iter().enumerate() {
        let others = people
            .iter()
            .cycle()
            .skip(n + 1)
            .take(config.impostors_per_user);
        for other in others {
            let probe = other.probes.first().unwrap_or(&other.enroll[0]);
            record(
                person.user_id,
                false,
                verify(&mut client, config, &landmarks, person.user_id, probe)?,
            )?;
            done += 1;
            progress(done, total, "impostor checks");
        }
    }

    // The board's own camera: frames dropped into its folder, faces found by its detector and
    // landmark cascade (no landmarks sent), one genuine and one impostor frame per person.
    let mut camera = Vec::new();
    for (n, person) in people.iter().take(camera_users).enumerate() {
        let other = &people[(n + 1) % people.len()];
        for (genuine, frame) in [
            (true, person.probes.first().unwrap_or(&person.enroll[0])),
            (false, other.probes.first().unwrap_or(&other.enroll[0])),
        ] {
            let target = frames.join(format!("frame-{:04}.jpg", camera.len()));
            std::fs::copy(config.data.join("lfw").join(frame), &target)
                .map_err(|e| Error::io(&target, e))?;
            let request = Request::Unlock {
                user_id: person.user_id,
            };
            let check = client
                .call(&request, |r| match r {
                    Response::Verified {
                        score, accepted, ..
                    } => CameraCheck {
                        genuine,
                        decision: Some((*score, *accepted)),
                        refusal: None,
                    },
                    other => CameraCheck {
                        genuine,
                        decision: None,
                        refusal: Some(describe(other)),
                    },
                })
                .map_err(link_error)?;
            camera.push(check);
            done += 1;
            progress(done, total, "camera unlocks");
        }
    }

    // Restart with the default policy: the gallery must still be there, and five failures in a
    // row lock the board.
    board.stop()?;
    // The measurement phase counted failures under its own policy; start the default policy
    // from a clean lockout state so the demonstration shows five failures in a row.
    let lockout_state = config.work.join("gallery.bin.lockout");
    if let Err(error) = std::fs::remove_file(&lockout_state) {
        if error.kind() != std::io::ErrorKind::NotFound {
            return Err(Error::io(lockout_state, error));
        }
    }
    let mut board = Board::start(config, &pty, None)?;
    let (_, enrolled_after_restart) = wait_for_hello(&mut client, &mut board)?;
    let victim = &people[0];
    let impostor_probe = people[1].probes.first().unwrap_or(&people[1].enroll[0]);
    let mut lockout_log = Vec::new();
    let mut locked_out = false;
    for attempt in 1..=6 {
        let image = read_probe(config, impostor_probe)?;
        let request = Request::Verify {
            user_id: victim.user_id,
            landmarks: landmarks.get(impostor_probe).as_ref().map(wire_landmarks),
            image: &image,
        };
        let (line, locked) = client
            .call(&request, |r| {
                let locked = match r {
                    Response::Verified { locked_out_ms, .. } => *locked_out_ms > 0,
                    Response::Error { code, .. } => {
                        *code == facelock_shared::protocol::ErrorCode::LockedOut
                    }
                    _ => false,
                };
                (describe(r), locked)
            })
            .map_err(link_error)?;
        lockout_log.push(format!("impostor attempt {attempt}: {line}"));
        locked_out = locked;
        done += 1;
        progress(done, total, "lockout");
    }
    let genuine_probe = victim.probes.first().unwrap_or(&victim.enroll[0]);
    let (answer, _) = verify(
        &mut client,
        config,
        &landmarks,
        victim.user_id,
        genuine_probe,
    )?;
    lockout_log.push(match answer {
        Ok((score, accepted)) => {
            format!("genuine attempt while locked out: accepted {accepted}, score {score:.4}")
        }
        Err(text) => format!("genuine attempt while locked out: {text}"),
    });
    board.stop()?;
    progress(total, total, "done");

    Ok(DemoReport {
        threshold,
        enrolled: people.len(),
        checks,
        lockout_log,
        locked_out,
        enrolled_after_restart,
        camera,
    })
}
