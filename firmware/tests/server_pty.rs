//! `facelockd` end to end over a pseudo-terminal with the generated model and drawn faces.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use facelock_firmware::testing::{
    draw_face, open_pty, test_metadata, test_model_bytes, Client, Pty,
};
use facelock_shared::protocol::{ErrorCode, Request, Response};

const MODEL_ID: u64 = 0x0123_4567_89ab_cdef;
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Rig {
    dir: tempfile::TempDir,
    pty: Pty,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("model.onnx"),
            test_model_bytes(MODEL_ID, &test_metadata(MODEL_ID)),
        )
        .unwrap();
        let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(dir.path().join("admin.key"), hex + "\n").unwrap();
        Rig {
            dir,
            pty: open_pty().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self) -> Command {
        self.command_with(&[])
    }

    /// The daemon's command line, with `overrides` replacing the value of some flags.
    fn command_with(&self, overrides: &[(&str, PathBuf)]) -> Command {
        let lock = PathBuf::from(format!("file:{}", self.path("lock.log").display()));
        let flags = [
            ("--model", self.path("model.onnx")),
            ("--gallery", self.path("gallery.bin")),
            ("--serial", self.pty.path.clone()),
            ("--admin-key-file", self.path("admin.key")),
            ("--lock-gpio", lock),
            ("--pulse-ms", PathBuf::from("300")),
        ];
        let mut command = Command::new(env!("CARGO_BIN_EXE_facelockd"));
        for (flag, value) in flags {
            let value = overrides
                .iter()
                .find(|(f, _)| *f == flag)
                .map_or(value, |(_, v)| v.clone());
            command.arg(flag).arg(value);
        }
        command.env("RUST_LOG", "debug");
        command
    }

    /// Starts the daemon and waits until it serves.
    fn start(&self) -> Daemon {
        let log = self.path("daemon.log");
        let child = self
            .command()
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("serving") {
                break;
            }
            assert!(Instant::now() < deadline, "daemon did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, log }
    }

    fn client(&self) -> Client {
        Client::new(self.pty.controller.try_clone().unwrap())
    }

    fn lock_log(&self) -> String {
        std::fs::read_to_string(self.path("lock.log")).unwrap_or_default()
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn terminate(mut self) -> String {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "facelockd exited with {status}");
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn faces(person: u64, shots: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    shots.map(|shot| draw_face(person, shot).jpeg()).collect()
}

fn verify(client: &mut Client, user_id: u32, image: &[u8]) -> String {
    client.call(
        &Request::Verify {
            user_id,
            landmarks: None,
            image,
        },
        |r| format!("{r:?}"),
    )
}

fn error_code(text: &str) -> Option<ErrorCode> {
    // Debug of Response::Error { code: X, .. }
    let code = text.strip_prefix("Error { code: ")?.split(',').next()?;
    [
        ErrorCode::BadFrame,
        ErrorCode::AuthRequired,
        ErrorCode::AuthFailed,
        ErrorCode::RateLimited,
        ErrorCode::UnknownUser,
        ErrorCode::GalleryFull,
        ErrorCode::BadImage,
        ErrorCode::PayloadTooLarge,
        ErrorCode::StorageError,
        ErrorCode::LockedOut,
        ErrorCode::SequenceError,
        ErrorCode::NoCamera,
    ]
    .into_iter()
    .find(|c| format!("{c:?}") == code)
}

#[test]
fn hello_auth_enroll_verify_accept_and_reject() {
    let rig = Rig::new();
    let daemon = rig.start();
    let mut client = rig.client();

    let hello = client.call(&Request::Hello, |r| match r {
        Response::Hello {
            model_id,
            embedding_dim,
            enrolled,
            ..
        } => (*model_id, *embedding_dim, *enrolled),
        other => panic!("{other:?}"),
    });
    assert_eq!(hello, (MODEL_ID, 128, 0));

    // Enrolling needs authentication.
    let refused = client.enroll(1, "ada", &faces(1, 0..3), 4000);
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::AuthRequired),
        "{refused}"
    );
    assert_eq!(client.authenticate(KEY), "AuthOk");
    let enrolled = client.enroll(1, "ada", &faces(1, 0..3), 4000);
    assert!(
        enrolled.starts_with("Enrolled { user_id: 1, samples: 3"),
        "{enrolled}"
    );
    assert!(client
        .enroll(2, "bob", &faces(2, 0..2), 1500)
        .starts_with("Enrolled"));

    // Same person, new shot: accepted and the lock pulses; another person: rejected.
    let genuine = verify(&mut client, 1, &draw_face(1, 10).jpeg());
    assert!(genuine.contains("accepted: true"), "{genuine}");
    let impostor = verify(&mut client, 1, &draw_face(2, 10).jpeg());
    assert!(impostor.contains("accepted: false"), "{impostor}");
    assert!(
        rig.lock_log().contains("energised"),
        "lock log: {}",
        rig.lock_log()
    );

    let listed = client.call(&Request::List { start: 0 }, |r| format!("{r:?}"));
    assert!(
        listed.contains("total: 2") && listed.contains("\"bob\""),
        "{listed}"
    );
    assert!(client
        .call(&Request::Delete { user_id: 2 }, |r| format!("{r:?}"))
        .starts_with("Deleted"));
    let unknown = verify(&mut client, 2, &draw_face(2, 11).jpeg());
    assert_eq!(
        error_code(&unknown),
        Some(ErrorCode::UnknownUser),
        "{unknown}"
    );

    // An accept then SIGTERM at once: the last transition is a release.
    assert!(verify(&mut client, 1, &draw_face(1, 12).jpeg()).contains("accepted: true"));
    let log = daemon.terminate();
    assert!(
        !log.contains(std::str::from_utf8(KEY).unwrap()),
        "key material in the log"
    );
    let lock_log = rig.lock_log();
    assert!(
        lock_log.trim_end().ends_with("released"),
        "lock log: {lock_log}"
    );
}

#[test]
fn lockout_after_five_failures_persists_across_restart() {
    let rig = Rig::new();
    let daemon = rig.start();
    let mut client = rig.client();
    assert_eq!(client.authenticate(KEY), "AuthOk");
    assert!(client
        .enroll(1, "ada", &faces(1, 0..2), 8000)
        .starts_with("Enrolled"));

    for attempt in 1..=5 {
        let answer = verify(&mut client, 1, &draw_face(3, attempt).jpeg());
        assert!(answer.contains("accepted: false"), "{answer}");
        assert!(
            answer.contains(&format!("failures: {attempt}")) || attempt == 5,
            "{answer}"
        );
    }
    let locked = verify(&mut client, 1, &draw_face(1, 20).jpeg());
    assert_eq!(error_code(&locked), Some(ErrorCode::LockedOut), "{locked}");
    daemon.terminate();

    let _daemon = rig.start();
    let mut client = rig.client();
    let still = verify(&mut client, 1, &draw_face(1, 21).jpeg());
    assert_eq!(
        error_code(&still),
        Some(ErrorCode::LockedOut),
        "after restart: {still}"
    );
}

#[test]
fn wrong_key_cannot_enroll_and_failed_auth_is_rate_limited() {
    let rig = Rig::new();
    let _daemon = rig.start();
    let mut client = rig.client();
    let wrong = client.authenticate(b"fedcba9876543210fedcba9876543210");
    assert_eq!(error_code(&wrong), Some(ErrorCode::AuthFailed), "{wrong}");
    let refused = client.enroll(1, "eve", &faces(4, 0..1), 8000);
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::AuthRequired),
        "{refused}"
    );
    // Right after a failure even the right key is turned away.
    let limited = client.authenticate(KEY);
    assert_eq!(
        error_code(&limited),
        Some(ErrorCode::RateLimited),
        "{limited}"
    );
}

#[test]
fn replayed_auth_response_is_rejected() {
    let rig = Rig::new();
    let _daemon = rig.start();
    let mut client = rig.client();
    let nonce = client.call(&Request::AuthChallenge, |r| match r {
        Response::Challenge { nonce } => *nonce,
        other => panic!("{other:?}"),
    });
    let mac = facelock_shared::auth::respond(KEY, &nonce, facelock_firmware::device::AUTH_CONTEXT)
        .unwrap();
    assert_eq!(
        client.call(&Request::AuthResponse { mac }, |r| format!("{r:?}")),
        "AuthOk"
    );
    let replay = client.call(&Request::AuthResponse { mac }, |r| format!("{r:?}"));
    assert_eq!(error_code(&replay), Some(ErrorCode::AuthFailed), "{replay}");
    // A new challenge has a new nonce, so the old MAC does not fit it either.
    let fresh = client.call(&Request::AuthChallenge, |r| match r {
        Response::Challenge { nonce } => *nonce,
        other => panic!("{other:?}"),
    });
    assert_ne!(fresh, nonce);
}

#[test]
fn bad_input_gets_error_codes_and_the_device_keeps_serving() {
    let rig = Rig::new();
    let _daemon = rig.start();
    let mut client = rig.client();
    assert_eq!(client.authenticate(KEY), "AuthOk");
    assert!(client
        .enroll(1, "ada", &faces(1, 0..1), 8000)
        .starts_with("Enrolled"));
    let gallery_before = std::fs::read(rig.path("gallery.bin")).unwrap();

    // Garbage between delimiters: a BadFrame error.
    client.send_raw(b"\x00this is not cobs or crc\x00");
    let bad = client.receive(Duration::from_secs(5), |_, r| format!("{r:?}"));
    assert_eq!(error_code(&bad), Some(ErrorCode::BadFrame), "{bad}");

    // A frame longer than the board's buffer: PayloadTooLarge.
    let mut long = vec![0x55u8; 40_000];
    long.push(0);
    client.send_raw(&long);
    let too_long = client.receive(Duration::from_secs(5), |_, r| format!("{r:?}"));
    assert_eq!(
        error_code(&too_long),
        Some(ErrorCode::PayloadTooLarge),
        "{too_long}"
    );

    // Not an image, a truncated PNG, an unknown user.
    let text = verify(&mut client, 1, b"GIF89a definitely not a face");
    assert_eq!(error_code(&text), Some(ErrorCode::BadImage), "{text}");
    let png = draw_face(1, 5).png();
    let cut = verify(&mut client, 1, &png[..1000]);
    assert_eq!(error_code(&cut), Some(ErrorCode::BadImage), "{cut}");
    let nobody = verify(&mut client, 99, &draw_face(1, 5).jpeg());
    assert_eq!(
        error_code(&nobody),
        Some(ErrorCode::UnknownUser),
        "{nobody}"
    );

    // A chunk without EnrollBegin, and a non-image enrollment.
    let chunk = Request::EnrollChunk {
        image_index: 0,
        offset: 0,
        last: true,
        landmarks: None,
        bytes: b"x",
    };
    let orphan = client.call(&chunk, |r| format!("{r:?}"));
    assert_eq!(
        error_code(&orphan),
        Some(ErrorCode::SequenceError),
        "{orphan}"
    );
    let junk = client.enroll(5, "junk", &[b"P5 garbage".to_vec()], 8000);
    assert_eq!(error_code(&junk), Some(ErrorCode::BadImage), "{junk}");

    // A disk write error: StorageError, gallery unchanged, still serving.
    std::fs::create_dir(rig.path("gallery.bin.tmp")).unwrap();
    let disk = client.enroll(6, "carol", &faces(6, 0..1), 8000);
    assert_eq!(error_code(&disk), Some(ErrorCode::StorageError), "{disk}");
    std::fs::remove_dir(rig.path("gallery.bin.tmp")).unwrap();

    assert_eq!(
        std::fs::read(rig.path("gallery.bin")).unwrap(),
        gallery_before
    );
    let listed = client.call(&Request::List { start: 0 }, |r| format!("{r:?}"));
    assert!(listed.contains("total: 1"), "{listed}");
    assert!(verify(&mut client, 1, &draw_face(1, 7).jpeg()).contains("accepted: true"));
    let stats = client.call(&Request::Stats, |r| format!("{r:?}"));
    assert!(stats.contains("bad_frames: 2"), "{stats}");
}

fn start_fails(mut command: Command) -> String {
    let output = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "facelockd started but should have refused"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn refuses_to_start_with_clear_messages() {
    let rig = Rig::new();

    std::fs::write(rig.path("plain.onnx"), test_model_bytes(1, &[])).unwrap();
    let text = start_fails(rig.command_with(&[("--model", rig.path("plain.onnx"))]));
    assert!(
        text.contains("plain.onnx") && text.contains("not a facelock model"),
        "{text}"
    );

    std::fs::write(rig.path("short.key"), b"0011").unwrap();
    let text = start_fails(rig.command_with(&[("--admin-key-file", rig.path("short.key"))]));
    assert!(
        text.contains("short.key") && text.contains("shorter"),
        "{text}"
    );

    let missing = start_fails(rig.command_with(&[("--admin-key-file", rig.path("missing.key"))]));
    assert!(missing.contains("missing.key"), "{missing}");

    // A gallery written under another model id.
    let other = 0xdead_beef_dead_beef_u64;
    std::fs::write(
        rig.path("other.onnx"),
        test_model_bytes(other, &test_metadata(other)),
    )
    .unwrap();
    let mut command = rig.command_with(&[("--model", rig.path("other.onnx"))]);
    let daemon_other = {
        let log = rig.path("other.log");
        let child = command
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&daemon.log)
            .unwrap()
            .contains("serving")
        {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut client = rig.client();
        assert_eq!(client.authenticate(KEY), "AuthOk");
        assert!(client
            .enroll(1, "ada", &faces(1, 0..1), 8000)
            .starts_with("Enrolled"));
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        daemon
    };
    drop(daemon_other);
    let text = start_fails(rig.command());
    assert!(
        text.contains("deadbeefdeadbeef")
            && text.contains("0123456789abcdef")
            && text.contains("gallery.bin"),
        "{text}"
    );
}

#[test]
fn full_gallery_refuses_enrollment_and_corrupt_gallery_is_kept_aside() {
    use facelock_firmware::device::{BoardGallery, CAPACITY, DIM};
    use facelock_shared::embedding::Template;

    let rig = Rig::new();
    let mut gallery = Box::new(BoardGallery::new(MODEL_ID));
    for user in 0..CAPACITY as u32 {
        let embedding: Vec<f32> = (0..DIM)
            .map(|d| ((user as usize + d * 7) % 11) as f32 - 5.0)
            .collect();
        let template = Template::<DIM>::from_embedding(&embedding).unwrap();
        gallery.enroll(user, "filler", 1, template).unwrap();
    }
    let mut bytes = vec![0u8; gallery.serialized_len()];
    let len = gallery.to_bytes(&mut bytes).unwrap();
    std::fs::write(rig.path("gallery.bin"), &bytes[..len]).unwrap();

    let daemon = rig.start();
    let mut client = rig.client();
    assert_eq!(client.authenticate(KEY), "AuthOk");
    let full = client.enroll(5000, "late", &faces(1, 0..1), 8000);
    assert_eq!(error_code(&full), Some(ErrorCode::GalleryFull), "{full}");
    daemon.terminate();

    // Flip one byte: the daemon keeps the file aside, starts empty and says so.
    bytes[100] ^= 0x01;
    std::fs::write(rig.path("gallery.bin"), &bytes[..len]).unwrap();
    let daemon = rig.start();
    let mut client = rig.client();
    let hello = client.call(&Request::Hello, |r| format!("{r:?}"));
    assert!(hello.contains("enrolled: 0"), "{hello}");
    let log = daemon.terminate();
    assert!(log.contains("corrupt"), "{log}");
    let kept: Vec<_> = std::fs::read_dir(rig.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("gallery.bin.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(rig.path(&kept[0])).unwrap(), &bytes[..len]);
}

#[test]
fn unlock_without_a_camera_is_a_named_refusal() {
    let rig = Rig::new();
    let daemon = rig.start();
    let mut client = rig.client();
    let unlock = |client: &mut Client, user_id: u32| {
        client.call(&Request::Unlock { user_id }, |r| format!("{r:?}"))
    };
    assert_eq!(
        error_code(&unlock(&mut client, 9)),
        Some(ErrorCode::UnknownUser)
    );
    assert_eq!(client.authenticate(KEY), "AuthOk");
    assert!(client
        .enroll(9, "cam", &faces(9, 0..2), 8000)
        .starts_with("Enrolled"));
    let answer = unlock(&mut client, 9);
    assert_eq!(error_code(&answer), Some(ErrorCode::NoCamera), "{answer}");
    assert!(answer.contains("--camera"), "{answer}");
    // The board keeps serving.
    assert!(verify(&mut client, 9, &faces(9, 3..4)[0]).starts_with("Verified"));
    drop(daemon);
}

#[test]
fn camera_options_are_checked_at_start() {
    let rig = Rig::new();
    let mut command = rig.command();
    command.args(["--camera", "/dev/video0", "--landmark-model"]);
    command.arg(rig.path("model.onnx"));
    let text = start_fails(command);
    assert!(text.contains("landmark model"), "{text}");

    let mut command = rig.command();
    command.args(["--camera", "dir:/nonexistent/frames"]);
    let text = start_fails(command);
    assert!(
        text.contains("landmark-model") || text.contains("landmark_model"),
        "{text}"
    );
}
