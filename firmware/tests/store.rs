//! The file store: atomic replace under SIGKILL, corrupt files kept aside, write errors.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use facelock_firmware::store::{FileStore, Loaded};
use facelock_firmware::testing::Xorshift;
use facelock_shared::embedding::Template;
use facelock_shared::gallery::Gallery;

const CHILD_ENV: &str = "FACELOCK_STORE_KILL_CHILD";
const MODEL_ID: u64 = 0xabc;

/// The shared gallery type, sized so 200 rounds of enrollments never fill it.
type TestGallery = Gallery<8192, 32>;

/// User `i`'s template: a deterministic embedding that differs per user.
fn template(i: u32) -> Template<32> {
    let embedding: Vec<f32> = (0..32)
        .map(|d| ((i as usize * 7 + d * 13) % 29) as f32 - 14.0)
        .collect();
    Template::from_embedding(&embedding).unwrap()
}

/// Serialises a gallery holding users 0..count (named after their index).
fn encode(count: u32) -> Vec<u8> {
    let mut gallery = Box::new(TestGallery::new(MODEL_ID));
    for i in 0..count {
        gallery
            .enroll(i, &format!("user {i}"), 1, template(i))
            .unwrap();
    }
    let mut bytes = vec![0u8; gallery.serialized_len()];
    let len = gallery.to_bytes(&mut bytes).unwrap();
    bytes.truncate(len);
    bytes
}

/// Parses a gallery file (CRC and all) and checks it holds users 0..n in order: a prefix.
fn decode(bytes: &[u8]) -> Result<usize, String> {
    let mut gallery = Box::new(TestGallery::new(MODEL_ID));
    gallery
        .load_into(bytes, Some(MODEL_ID))
        .map_err(|e| e.to_string())?;
    for (i, record) in gallery.iter().enumerate() {
        let i = i as u32;
        if record.user_id != i
            || record.name.as_str() != format!("user {i}")
            || record.template != template(i)
        {
            return Err(format!("record {i} is not user {i}"));
        }
    }
    Ok(gallery.len())
}

/// Helper process for `sigkill_during_saves_keeps_a_committed_prefix`: appends enrollments
/// to the store forever, printing each one after its save returned.
#[test]
#[ignore = "helper process, spawned by sigkill_during_saves_keeps_a_committed_prefix"]
fn store_kill_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = FileStore::new(std::path::Path::new(&dir).join("gallery.bin"), "gallery");
    let mut count = match store.load(decode).unwrap() {
        Loaded::Found(count) => count,
        Loaded::Missing => 0,
        Loaded::Corrupt { reason, .. } => panic!("child found a corrupt store: {reason}"),
    };
    loop {
        count += 1;
        store.save(&encode(count as u32)).unwrap();
        println!("committed {count}");
    }
}

#[test]
fn sigkill_during_saves_keeps_a_committed_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("gallery.bin"), "gallery");
    let mut rng = Xorshift::new(42);
    let mut committed = 0usize;
    let started = Instant::now();
    let kills = 200;

    for round in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store_kill_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();

        // Let it commit at least one enrollment, then kill at a random moment.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = loop {
            let line = lines
                .next()
                .expect("child exited before committing")
                .unwrap();
            if let Some(n) = line.strip_prefix("committed ") {
                break n.parse::<usize>().unwrap();
            }
        };
        assert!(
            first > committed,
            "round {round}: child restarted below {committed}"
        );
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        committed = first;
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("committed ") {
                committed = n.parse().unwrap();
            }
        }

        // The file loads and holds every committed enrollment, plus at most the one in flight.
        let found = match store.load(decode).unwrap() {
            Loaded::Found(count) => count,
            other => panic!("round {round}: after SIGKILL the store is {other:?}"),
        };
        assert!(
            found == committed || found == committed + 1,
            "round {round}: file holds {found} enrollments, {committed} were committed"
        );
        committed = found;
    }
    eprintln!(
        "{kills} kills, {committed} enrollments, {:?}",
        started.elapsed()
    );
}

#[test]
fn corrupt_file_is_kept_aside_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("gallery.bin"), "gallery");
    let mut bytes = encode(3);
    bytes[10] ^= 0x55;
    std::fs::write(store.path(), &bytes).unwrap();

    let kept_as = match store.load(decode).unwrap() {
        Loaded::Corrupt { reason, kept_as } => {
            assert!(reason.to_lowercase().contains("crc"), "{reason}");
            kept_as
        }
        other => panic!("expected corrupt, got {other:?}"),
    };
    let name = kept_as.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("gallery.bin.corrupt-"), "{name}");
    assert_eq!(
        std::fs::read(&kept_as).unwrap(),
        bytes,
        "the corrupt bytes are kept intact"
    );
    assert!(!store.path().exists());

    // A new save does not touch the kept file; a second corruption gets its own name.
    store.save(&encode(1)).unwrap();
    std::fs::write(store.path(), b"garbage").unwrap();
    let Loaded::Corrupt {
        kept_as: second, ..
    } = store.load(decode).unwrap()
    else {
        panic!("expected corrupt")
    };
    assert_ne!(second, kept_as);
    assert_eq!(std::fs::read(&kept_as).unwrap(), bytes);
}

#[test]
fn failed_save_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("gallery.bin"), "gallery");
    store.save(&encode(2)).unwrap();

    // A directory where the temp file goes makes the write fail (root ignores permissions).
    std::fs::create_dir(store.temp_path()).unwrap();
    let err = store.save(&encode(3)).unwrap_err();
    assert!(err.to_string().contains("gallery.bin.tmp"), "{err}");
    assert!(matches!(store.load(decode).unwrap(), Loaded::Found(2)));
}
