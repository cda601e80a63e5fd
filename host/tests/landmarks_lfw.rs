//! The shipped landmark cascade on real faces (`FACELOCK_DATA`): its error on LFW dev-test
//! images, and `facelock align --detect` on ORL, which comes without landmarks.
use std::path::{Path, PathBuf};
use std::process::Command;

use facelock_host::data::{decode_file, Dataset, Landmarks};
use facelock_host::landmarks::{detection_for, LandmarkModel};
use facelock_shared::detect::{DetectorConfig, FaceDetector};
use facelock_shared::landmarks::interocular_error;

fn data_root() -> PathBuf {
    PathBuf::from(std::env::var("FACELOCK_DATA").expect("FACELOCK_DATA must point to the data"))
}

fn shipped_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/facelock-landmarks.onnx")
}

/// 200 dev-test images (identities never trained on): the detector finds the labelled face and
/// the cascade lands within the error the model card states (mean 3.9 %, here ≤ 5 %).
#[test]
#[ignore = "needs FACELOCK_DATA"]
fn the_shipped_cascade_locates_dev_test_faces() {
    let data = data_root();
    let dataset = Dataset::from_folder(
        &data.join("lfw"),
        Some(&data.join("lfw-protocol/peopleDevTest.txt")),
        1,
    )
    .unwrap();
    let truth = Landmarks::load(&data.join("lfw-landmarks.tsv")).unwrap();
    let model = LandmarkModel::load(&shipped_model()).unwrap();
    let mut detector = FaceDetector::embedded(&DetectorConfig::default()).unwrap();

    let (mut found, mut errors) = (0, Vec::new());
    for sample in dataset.samples.iter().step_by(16).take(200) {
        let points = truth.get(&sample.path).unwrap();
        let image = decode_file(&dataset.root.join(&sample.path)).unwrap();
        let view = image.view().unwrap();
        let Some(face) = detection_for(&detector.detect(&view), &points) else {
            continue;
        };
        found += 1;
        let predicted = model.locate(&view, &face).unwrap();
        errors.push(interocular_error(&predicted, &points).unwrap());
    }
    let mean = errors.iter().sum::<f32>() / errors.len() as f32;
    println!("found {found} of 200, mean error {:.2} %", mean * 100.0);
    assert!(found >= 196, "{found}");
    assert!(mean < 0.05, "mean error {mean}");
}

/// ORL has no landmarks: `align --detect` finds faces, writes crops and a landmarks file whose
/// points are ordered like a face (eyes above the mouth, left eye left of the right one).
#[test]
#[ignore = "needs FACELOCK_DATA"]
fn align_detect_gives_orl_landmarks() {
    let data = data_root();
    let out = tempfile::tempdir().unwrap();
    let table = out.path().join("orl-landmarks.tsv");
    let output = Command::new(env!("CARGO_BIN_EXE_facelock"))
        .arg("align")
        .arg("--data")
        .arg(data.join("orl"))
        .arg("--detect")
        .arg("--landmark-model")
        .arg(shipped_model())
        .arg("--limit")
        .arg("40")
        .arg("--out")
        .arg(out.path().join("crops"))
        .arg("--write-landmarks")
        .arg(&table)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("aligned 40 images"), "{text}");

    let landmarks = Landmarks::load(&table).unwrap();
    assert!(landmarks.len() >= 38, "{} of 40 located", landmarks.len());
    for (path, p) in landmarks.iter() {
        assert!(p[0][0] < p[1][0], "{}: eyes swapped", path.display());
        assert!(
            p[0][1] < p[3][1] && p[1][1] < p[4][1],
            "{}: mouth above eyes",
            path.display()
        );
        assert!(out
            .path()
            .join("crops")
            .join(path)
            .with_extension("png")
            .is_file());
    }
}
