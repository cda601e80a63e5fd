//! With the `detect` feature, finds the SeetaFace model file inside rustface's crates.io package
//! so `detect` can embed it (the repository never holds a copy). `FACELOCK_DETECTOR_MODEL`
//! overrides the search, e.g. for vendored sources.
use std::path::PathBuf;

const RUSTFACE_PACKAGE: &str = "rustface-0.1.7";
const MODEL_FILE: &str = "model/seeta_fd_frontal_v1.0.bin";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(facelock_embedded_detector)");
    println!("cargo:rerun-if-env-changed=FACELOCK_DETECTOR_MODEL");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");
    if std::env::var_os("CARGO_FEATURE_DETECT").is_none() {
        return;
    }
    match find_model() {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.display());
            println!(
                "cargo:rustc-env=FACELOCK_DETECTOR_MODEL_PATH={}",
                path.display()
            );
            println!("cargo:rustc-cfg=facelock_embedded_detector");
        }
        None => println!(
            "cargo:warning=rustface's model file was not found in the cargo registry; \
             FaceDetector::embedded() will return DetectError::NoEmbeddedModel \
             (set FACELOCK_DETECTOR_MODEL to the .bin file)"
        ),
    }
}

fn find_model() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FACELOCK_DETECTOR_MODEL") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
    let registries = std::fs::read_dir(cargo_home.join("registry").join("src")).ok()?;
    let mut found: Vec<PathBuf> = registries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join(RUSTFACE_PACKAGE).join(MODEL_FILE))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}
