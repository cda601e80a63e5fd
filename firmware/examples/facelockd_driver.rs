//! Host side of a pty for `facelockd`: `smoke` (Hello, one enroll, one verify; used by
//! scripts/arm-smoke.sh under qemu) and `bench` (verify latency, peak RSS, gallery load time).
//!
//! Usage: `facelockd_driver smoke|bench <facelockd> [--wrap <program> <args>...] [--model <onnx>]`
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use facelock_firmware::device::{BoardGallery, CAPACITY, DIM};
use facelock_firmware::testing::{draw_face, open_pty, test_metadata, test_model_bytes, Client};
use facelock_shared::embedding::Template;
use facelock_shared::protocol::{Request, Response};

const KEY: &[u8] = b"facelock smoke test admin key 32";

struct Options {
    mode: String,
    daemon: PathBuf,
    wrap: Vec<String>,
    model: Option<PathBuf>,
}

fn parse() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().context("first argument: smoke or bench")?;
    let daemon = PathBuf::from(args.next().context("second argument: path to facelockd")?);
    let (mut wrap, mut model) = (Vec::new(), None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => model = Some(PathBuf::from(args.next().context("--model needs a path")?)),
            "--wrap" => wrap.extend(args.by_ref()),
            other => bail!("unknown argument '{other}'"),
        }
    }
    Ok(Options {
        mode,
        daemon,
        wrap,
        model,
    })
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let options = parse()?;
    let dir = tempfile::tempdir()?;
    let model_path = match &options.model {
        Some(path) => path.clone(),
        None => {
            let path = dir.path().join("model.onnx");
            std::fs::write(&path, test_model_bytes(0x5eed, &test_metadata(0x5eed)))?;
            path
        }
    };
    let key_path = dir.path().join("admin.key");
    std::fs::write(&key_path, KEY)?;
    let gallery = dir.path().join("gallery.bin");
    let pty = open_pty()?;
    let log_path = dir.path().join("daemon.log");

    let (program, prefix) = match options.wrap.split_first() {
        Some((program, rest)) => (PathBuf::from(program), rest.to_vec()),
        None => (options.daemon.clone(), Vec::new()),
    };
    let mut command = Command::new(program);
    command.args(&prefix);
    if !options.wrap.is_empty() {
        command.arg(&options.daemon);
    }
    let lock_log = dir.path().join("lock.log");
    command
        .arg("--model")
        .arg(&model_path)
        .arg("--gallery")
        .arg(&gallery)
        .arg("--serial")
        .arg(&pty.path)
        .arg("--admin-key-file")
        .arg(&key_path)
        .arg("--lock-gpio")
        .arg(format!("file:{}", lock_log.display()))
        .arg("--pulse-ms")
        .arg("200")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?);
    let started = Instant::now();
    let mut child = command.spawn().context("starting facelockd")?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("serving") {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!("facelockd exited with {status} before serving:\n{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("facelockd did not start within 10 minutes:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "facelockd serving after {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let mut client = Client::new(pty.controller.try_clone()?);
    let result = match options.mode.as_str() {
        "smoke" => smoke(&mut client, &lock_log),
        "bench" => bench(&mut client, child.id()),
        other => Err(anyhow::anyhow!("unknown mode '{other}' (smoke or bench)")),
    };
    // SAFETY: kill(2) with SIGTERM on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    if result.is_ok() && !status.success() {
        bail!("facelockd exited with {status} after SIGTERM");
    }
    if options.mode == "bench" {
        bench_gallery_load(dir.path())?;
    }
    result
}

fn smoke(client: &mut Client, lock_log: &Path) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(300);
    let seq = client.send(&Request::Hello);
    let hello = client.receive(timeout, |got, r| (got == seq, format!("{r:?}")));
    println!("hello: {}", hello.1);
    anyhow::ensure!(hello.0 && hello.1.starts_with("Hello"), "bad hello");
    let auth = client.authenticate(KEY);
    anyhow::ensure!(auth == "AuthOk", "auth: {auth}");
    let images: Vec<Vec<u8>> = (0..2).map(|shot| draw_face(1, shot).jpeg()).collect();
    let enrolled = client.enroll(1, "smoke", &images, 16_000);
    println!("enroll: {enrolled}");
    anyhow::ensure!(enrolled.starts_with("Enrolled"), "enroll failed");
    let probe = draw_face(1, 9).jpeg();
    let started = Instant::now();
    let seq = client.send(&Request::Verify {
        user_id: 1,
        landmarks: None,
        image: &probe,
    });
    let verified = client.receive(timeout, |got, r| (got == seq, format!("{r:?}")));
    println!(
        "verify: {} ({:.2} s)",
        verified.1,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        verified.0 && verified.1.contains("accepted: true"),
        "verify not accepted"
    );
    let log = std::fs::read_to_string(lock_log).unwrap_or_default();
    anyhow::ensure!(log.contains("energised"), "lock never energised");
    println!("arm smoke: OK");
    Ok(())
}

fn bench(client: &mut Client, pid: u32) -> anyhow::Result<()> {
    anyhow::ensure!(client.authenticate(KEY) == "AuthOk", "auth failed");
    let images: Vec<Vec<u8>> = (0..3).map(|shot| draw_face(1, shot).jpeg()).collect();
    anyhow::ensure!(
        client
            .enroll(1, "bench", &images, 16_000)
            .starts_with("Enrolled"),
        "enroll"
    );
    let probe = draw_face(1, 9).jpeg();
    let mut samples = Vec::new();
    for round in 0..60 {
        let accepted = client.call(
            &Request::Verify {
                user_id: 1,
                landmarks: None,
                image: &probe,
            },
            |r| matches!(r, Response::Verified { accepted: true, .. }),
        );
        anyhow::ensure!(accepted, "verify {round} not accepted");
        if round >= 10 {
            samples.push(client.last_round_trip.as_secs_f64() * 1e3);
        }
    }
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "verify latency over pty (last request byte -> last response byte), {} runs, {} byte JPEG: \
         median {:.2} ms, p90 {:.2} ms, min {:.2} ms, max {:.2} ms",
        samples.len(),
        probe.len(),
        pick(0.5),
        pick(0.9),
        samples[0],
        samples[samples.len() - 1]
    );
    match peak_rss_kib(pid) {
        Some(kib) => println!("facelockd peak RSS (VmHWM): {:.1} MB", kib as f64 / 1024.0),
        None => println!("facelockd peak RSS: /proc unavailable"),
    }
    Ok(())
}

fn bench_gallery_load(dir: &Path) -> anyhow::Result<()> {
    let mut gallery = Box::new(BoardGallery::new(0x5eed));
    let mut embedding = vec![0.0f32; DIM];
    for user in 0..CAPACITY as u32 {
        for (i, v) in embedding.iter_mut().enumerate() {
            *v = ((user as usize * 31 + i * 17) % 97) as f32 - 48.0;
        }
        gallery.enroll(
            user,
            &format!("user {user}"),
            3,
            Template::<DIM>::from_embedding(&embedding)?,
        )?;
    }
    let mut bytes = vec![0u8; gallery.serialized_len()];
    let len = gallery.to_bytes(&mut bytes)?;
    let path = dir.join("gallery-1000.bin");
    std::fs::write(&path, &bytes[..len])?;

    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let read = std::fs::read(&path)?;
        let mut loaded = Box::new(BoardGallery::new(0x5eed));
        loaded.load_into(&read, Some(0x5eed))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(loaded.len() == CAPACITY, "loaded {} users", loaded.len());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "gallery load, {CAPACITY} users, {len} bytes (read + CRC + parse), 20 runs: median {:.3} ms, max {:.3} ms",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}
