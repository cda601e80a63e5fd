//! The README's main command, `facelock demo`, on the shipped models (needs `FACELOCK_DATA`).
use facelock_e2e::{executable, facelock};

#[test]
#[ignore = "needs FACELOCK_DATA"]
fn the_demo_enrolls_unlocks_restarts_and_locks_out() -> anyhow::Result<()> {
    let data = std::env::var("FACELOCK_DATA").expect("FACELOCK_DATA is not set");
    let work = tempfile::tempdir()?;
    let facelockd = executable("facelockd")?;
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let model = models.join("facelock-f32.onnx");
    let landmarks = models.join("facelock-landmarks.onnx");
    let text = facelock(&[
        "demo",
        "--data",
        &data,
        "--facelockd",
        facelockd.to_str().expect("utf-8 path"),
        "--model",
        model.to_str().expect("utf-8 path"),
        "--landmark-model",
        landmarks.to_str().expect("utf-8 path"),
        "--work",
        work.path().to_str().expect("utf-8 path"),
    ])?;
    println!("{text}");
    for expected in [
        "20 users enrolled over the serial protocol",
        "after restart         20 users still enrolled",
        "camera unlocks        genuine:",
        "locked out for 30.0 s",
        "locked out            true",
    ] {
        assert!(text.contains(expected), "missing '{expected}' in:\n{text}");
    }
    assert!(work.path().join("demo-scores.png").is_file());

    // Without data the demo says where to get it and fails.
    let missing = facelock(&["demo", "--data", "/nonexistent/face-data"]);
    let error = missing.expect_err("no data is an error").to_string();
    assert!(error.contains("lfw"), "{error}");
    Ok(())
}
