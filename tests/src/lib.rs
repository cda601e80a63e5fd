//! Whole-system tests for facelock: the real `facelock` and `facelockd` executables, run the
//! way a user runs them, from training to a lockout on a virtual board.
//!
//! This library holds what the tests share: finding the executables, generated face data,
//! and a virtual board on a pseudo-terminal.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use facelock_firmware::testing::draw_face;
use facelock_shared::client::Client;
use facelock_shared::protocol::{Request, Response};
use facelock_shared::serial::{open_pty, ControllerLink, Pty};

/// The folder cargo put this test's executables in (`target/<profile>`).
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary outside target/")?;
    Ok(dir.to_path_buf())
}

/// Path of a workspace executable (`facelock`, `facelockd`), built with cargo if missing.
pub fn executable(name: &str) -> anyhow::Result<PathBuf> {
    let path = profile_dir()?.join(name);
    if path.is_file() {
        return Ok(path);
    }
    let package = match name {
        "facelock" => "facelock-host",
        "facelockd" => "facelock-firmware",
        other => bail!("unknown executable {other}"),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", name])
        .status()
        .context("running cargo build")?;
    if !status.success() || !path.is_file() {
        bail!("{name} is not built and `cargo build -p {package}` failed");
    }
    Ok(path)
}

/// Relative path of LFW image `number` of `name`: `Name/Name_0001.jpg`.
pub fn lfw_image(name: &str, number: usize) -> PathBuf {
    PathBuf::from(format!("{name}/{name}_{number:04}.jpg"))
}

/// The row of `relative` in a landmarks TSV's text, in wire layout (x0, y0, .., x4, y4).
pub fn landmarks_row(table: &str, relative: &Path) -> Option<[f32; 10]> {
    let key = relative.to_str()?;
    let line = table.lines().find(|l| l.split('\t').next() == Some(key))?;
    let values: Vec<f32> = line
        .split('\t')
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    values.try_into().ok()
}

/// Runs `facelock` with `args`; fails with its output when it exits non-zero.
pub fn facelock(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(executable("facelock")?)
        .args(args)
        .output()
        .context("starting facelock")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!(
            "facelock {} failed ({}):\n{text}",
            args.join(" "),
            output.status
        );
    }
    Ok(text)
}

/// A generated face data set: `<root>/person_PPP/shot_SS.jpg` and a landmarks TSV.
pub struct FaceSet {
    /// Folder of identity folders.
    pub root: PathBuf,
    /// Landmarks TSV covering every image.
    pub landmarks: PathBuf,
}

/// Relative path of a generated image.
pub fn image_name(person: u64, shot: u64) -> String {
    format!("person_{person:03}/shot_{shot:02}.jpg")
}

/// Draws `shots` images for each of `persons` into `dir`.
pub fn generate_faces(dir: &Path, persons: &[u64], shots: u64) -> anyhow::Result<FaceSet> {
    let root = dir.join("faces");
    let mut tsv = String::from("# path\tlex\tley\trex\trey\tnx\tny\tlmx\tlmy\trmx\trmy\n");
    for &person in persons {
        std::fs::create_dir_all(root.join(format!("person_{person:03}")))?;
        for shot in 0..shots {
            let face = draw_face(person, shot);
            let name = image_name(person, shot);
            std::fs::write(root.join(&name), face.jpeg())?;
            tsv.push_str(&name);
            for (x, y) in face.landmarks {
                tsv.push_str(&format!("\t{x:.2}\t{y:.2}"));
            }
            tsv.push('\n');
        }
    }
    let landmarks = dir.join("landmarks.tsv");
    std::fs::write(&landmarks, tsv)?;
    Ok(FaceSet { root, landmarks })
}

/// Writes a TSV pairs file (`fold label a b`): consecutive shots of each person as genuine
/// pairs, and each person's shots against every other person's as impostor pairs.
pub fn write_pairs(path: &Path, persons: &[u64], shots: u64) -> anyhow::Result<()> {
    let mut text = String::new();
    let mut line = |fold: u64, same: bool, a: String, b: String| {
        text.push_str(&format!("{}\t{}\t{a}\t{b}\n", fold % 10, u8::from(same)));
    };
    for &person in persons {
        for shot in 0..shots.saturating_sub(1) {
            line(
                shot,
                true,
                image_name(person, shot),
                image_name(person, shot + 1),
            );
        }
        for &other in persons.iter().filter(|&&other| other > person) {
            for shot in 0..shots {
                line(
                    shot,
                    false,
                    image_name(person, shot),
                    image_name(other, shot),
                );
            }
        }
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// A `facelockd` process on a pseudo-terminal, with its files in one folder.
pub struct Board {
    child: Option<Child>,
    pty: Pty,
    dir: PathBuf,
    model: PathBuf,
    settings: Option<PathBuf>,
    extra_args: Vec<String>,
}

/// The admin key the tests provision (hex, 32 bytes).
pub const ADMIN_KEY_HEX: &str =
    "6661636c6f636b2d6532652d61646d696e2d6b65792d3332627974657321212121";

impl Board {
    /// Provisions a key and boots `facelockd` with `model`; files live in `dir`.
    pub fn boot(dir: &Path, model: &Path) -> anyhow::Result<Board> {
        Self::boot_with(dir, model, None)
    }

    /// Like [`Board::boot`], with a `facelock.toml` holding `settings`.
    pub fn boot_with(dir: &Path, model: &Path, settings: Option<&str>) -> anyhow::Result<Board> {
        Self::boot_with_args(dir, model, settings, &[])
    }

    /// Like [`Board::boot_with`], passing `extra_args` to `facelockd` (e.g. `--camera`).
    pub fn boot_with_args(
        dir: &Path,
        model: &Path,
        settings: Option<&str>,
        extra_args: &[&str],
    ) -> anyhow::Result<Board> {
        std::fs::write(dir.join("admin.key"), ADMIN_KEY_HEX)?;
        let settings = match settings {
            Some(text) => {
                let path = dir.join("facelock.toml");
                std::fs::write(&path, text)?;
                Some(path)
            }
            None => None,
        };
        let pty = open_pty().context("opening a pseudo-terminal")?;
        let mut board = Board {
            child: None,
            pty,
            dir: dir.to_path_buf(),
            model: model.to_path_buf(),
            settings,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        board.start()?;
        Ok(board)
    }

    /// Starts (or restarts) the daemon on the same line and files.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("facelockd.log"))?;
        let mut command = Command::new(executable("facelockd")?);
        if let Some(settings) = &self.settings {
            command.arg("--config").arg(settings);
        }
        let child = command
            .arg("--model")
            .arg(&self.model)
            .arg("--gallery")
            .arg(self.dir.join("gallery.bin"))
            .arg("--serial")
            .arg(&self.pty.path)
            .arg("--admin-key-file")
            .arg(self.dir.join("admin.key"))
            .arg("--lock-gpio")
            .arg(format!("file:{}", self.dir.join("lock.log").display()))
            .arg("--pulse-ms")
            .arg("20")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting facelockd")?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on a child we spawned and have not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// A protocol client on the host end of the line.
    pub fn client(&self) -> anyhow::Result<Client<ControllerLink>> {
        let controller = self.pty.controller.try_clone()?;
        Ok(Client::new(
            ControllerLink::new(controller, Duration::from_millis(100)),
            50,
        ))
    }

    /// Waits for the daemon to answer Hello; returns (threshold, enrolled users).
    pub fn wait_ready(
        &mut self,
        client: &mut Client<ControllerLink>,
    ) -> anyhow::Result<(f32, u32)> {
        let start = Instant::now();
        loop {
            let hello = client.call(&Request::Hello, |r| match r {
                Response::Hello {
                    threshold,
                    enrolled,
                    ..
                } => Some((*threshold, *enrolled)),
                _ => None,
            });
            if let Ok(Some(hello)) = hello {
                return Ok(hello);
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                bail!("facelockd exited ({status}):\n{}", self.log());
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("facelockd did not answer within 120 s:\n{}", self.log());
            }
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("facelockd.log")).unwrap_or_default()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.stop();
    }
}
