//! Landmark cascade tests on drawn faces: dark blobs at known points on a bright oval.
use facelock_shared::landmarks::{self, FaceBox, StageInput, PATCH_LEN};
use rand::{Rng, SeedableRng};

use super::*;
use crate::data::DecodedImage;

const SIDE: usize = 96;

/// A grey face with eyes, nose and mouth corners drawn as dark discs; the face is placed by a
/// random similarity. Returns the image, its true points and a noisy "detector" box.
fn drawn_face(rng: &mut impl Rng) -> FaceSample {
    let scale = rng.random_range(0.8..1.1f32);
    let angle = rng.random_range(-0.15..0.15f32);
    let (cx, cy) = (
        SIDE as f32 / 2.0 + rng.random_range(-6.0..6.0),
        SIDE as f32 / 2.0 + rng.random_range(-6.0..6.0),
    );
    let base = [
        [-14.0f32, -10.0],
        [14.0, -10.0],
        [0.0, 4.0],
        [-11.0, 17.0],
        [11.0, 17.0],
    ];
    let (sin, cos) = angle.sin_cos();
    let truth = base.map(|[x, y]| {
        [
            cx + scale * (cos * x - sin * y),
            cy + scale * (sin * x + cos * y),
        ]
    });
    let mut pixels = vec![40u8; SIDE * SIDE];
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let oval = (dx / (30.0 * scale)).powi(2) + (dy / (38.0 * scale)).powi(2);
            let mut value = if oval < 1.0 { 200.0 } else { 40.0 };
            for (i, p) in truth.iter().enumerate() {
                let radius = if i == 2 { 3.0 } else { 4.0 } * scale;
                if (x as f32 - p[0]).hypot(y as f32 - p[1]) < radius {
                    value = 30.0;
                }
            }
            pixels[y * SIDE + x] = value as u8;
        }
    }
    let side = 70.0 * scale;
    let face = FaceBox {
        x: cx - side / 2.0 + rng.random_range(-3.0..3.0),
        y: cy - side / 2.0 + rng.random_range(-3.0..3.0),
        width: side,
        height: side,
    };
    FaceSample {
        image: DecodedImage {
            pixels,
            width: SIDE,
            height: SIDE,
            channels: 1,
        },
        face,
        truth,
    }
}

fn faces(count: usize, seed: u64) -> Vec<FaceSample> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count).map(|_| drawn_face(&mut rng)).collect()
}

#[test]
fn the_cascade_learns_drawn_faces_and_each_stage_helps() {
    let samples = faces(300, 7);
    let config = TrainConfig {
        inputs: vec![StageInput::Face; 2],
        perturbations: 3,
        ..TrainConfig::default()
    };
    let (cascade, box_error, reports) = train(&samples, &config, |_| {}).unwrap();
    assert_eq!(reports.len(), 2);
    let last = reports.last().unwrap().validation_error;
    assert!(
        last < 0.6 * box_error && last < 0.08,
        "box {box_error}, stages {reports:?}"
    );

    // Faces never seen in training: the whole cascade through the Rust arithmetic.
    let fresh = faces(30, 99);
    let mut errors = Vec::new();
    for sample in &fresh {
        let image = sample.image.view().unwrap();
        let points = cascade
            .locate_with(&image, &sample.face, cascade.stages, |stage, patch| {
                Ok(cascade.regress(stage, patch))
            })
            .unwrap();
        errors.push(landmarks::interocular_error(&points, &sample.truth).unwrap());
    }
    let mean = errors.iter().sum::<f32>() / errors.len() as f32;
    assert!(mean < 0.1, "fresh faces: mean error {mean}");
}

#[test]
fn local_stages_refine_what_the_whole_face_stage_leaves() {
    let samples = faces(300, 7);
    for local in [StageInput::Gradients, StageInput::Pixels] {
        let config = TrainConfig {
            inputs: vec![StageInput::Face, local],
            perturbations: 3,
            ..TrainConfig::default()
        };
        let (cascade, box_error, reports) = train(&samples, &config, |_| {}).unwrap();
        assert_eq!(cascade.inputs, config.inputs);
        let (whole, refined) = (reports[0].validation_error, reports[1].validation_error);
        assert!(
            whole < 0.5 * box_error && refined < 0.6 * whole,
            "{local:?}: box {box_error}, whole-face stage {whole}, local stage {refined}"
        );
    }

    let bad = TrainConfig {
        inputs: vec![StageInput::Face, StageInput::Pixels],
        local_step: 0.0,
        ..TrainConfig::default()
    };
    assert!(train(&samples, &bad, |_| {}).is_err());
    let too_many = TrainConfig {
        inputs: vec![StageInput::Face; landmarks::MAX_STAGES + 1],
        ..TrainConfig::default()
    };
    assert!(train(&samples, &too_many, |_| {}).is_err());
}

#[test]
fn stage_input_lists_are_parsed_with_repeats() {
    use StageInput::{Face, Gradients, Pixels};
    assert_eq!(
        parse_stage_inputs("2*face, 3*gradients,pixels").unwrap(),
        vec![Face, Face, Gradients, Gradients, Gradients, Pixels]
    );
    for bad in [
        "",
        "face,edges",
        "x*face",
        "0*face",
        "17*face",
        "face,,pixels",
    ] {
        assert!(parse_stage_inputs(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_mirrored_face_keeps_its_points_on_the_features() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let sample = drawn_face(&mut rng);
    let mirrored = super::train::mirror(&sample);
    let image = &mirrored.image;
    // Every point still sits on a dark disc, and the left eye is left of the right eye.
    for p in mirrored.truth {
        let (x, y) = (p[0].round() as usize, p[1].round() as usize);
        assert_eq!(image.pixels[y * image.width + x], 30, "{p:?}");
    }
    assert!(mirrored.truth[0][0] < mirrored.truth[1][0]);
    assert!(mirrored.truth[3][0] < mirrored.truth[4][0]);
    let back = super::train::mirror(&mirrored);
    assert_eq!(back.image.pixels, sample.image.pixels);
    assert!((back.face.x - sample.face.x).abs() < 1e-4 && back.face.width == sample.face.width);
    for (b, t) in back.truth.iter().zip(&sample.truth) {
        assert!((b[0] - t[0]).abs() < 1e-4 && (b[1] - t[1]).abs() < 1e-4);
    }

    let samples = faces(60, 3);
    let config = TrainConfig {
        inputs: vec![StageInput::Face; 1],
        perturbations: 1,
        mirror: true,
        ..TrainConfig::default()
    };
    let (_, box_error, reports) = train(&samples, &config, |_| {}).unwrap();
    assert!(reports[0].validation_error < 0.5 * box_error, "{reports:?}");
}

#[test]
fn tract_runs_the_exported_cascade_like_the_rust_arithmetic() {
    let samples = faces(60, 3);
    // Later stages read local patches: the model's metadata must say so for the two paths
    // below to agree.
    let config = TrainConfig {
        inputs: vec![StageInput::Face, StageInput::Gradients, StageInput::Pixels],
        perturbations: 1,
        local_step: 0.8,
        ..TrainConfig::default()
    };
    let (cascade, _, _) = train(&samples, &config, |_| {}).unwrap();
    let proto = cascade.to_onnx();
    let model = LandmarkModel::from_proto(&proto, std::path::Path::new("cascade.onnx")).unwrap();
    assert_eq!(model.stages(), 3);
    let info = model.info();
    assert_eq!(&info.inputs[..3], &config.inputs[..]);
    assert_eq!(info.local_step, 0.8);

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let patch: Vec<f32> = (0..PATCH_LEN)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    for stage in 0..3 {
        let ours = cascade.regress(stage, &patch);
        let theirs = model.regress(stage, &patch).unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + a.abs()),
                "{ours:?} vs {theirs:?}"
            );
        }
    }
    let sample = &samples[0];
    let image = sample.image.view().unwrap();
    let through_tract = model.locate(&image, &sample.face).unwrap();
    let through_rust = cascade
        .locate_with(&image, &sample.face, 3, |s, p| Ok(cascade.regress(s, p)))
        .unwrap();
    for (a, b) in through_tract.iter().zip(&through_rust) {
        assert!((a[0] - b[0]).abs() < 1e-2 && (a[1] - b[1]).abs() < 1e-2);
    }
    assert!(model.regress(3, &patch).is_err());
    assert!(model.regress(0, &patch[..10]).is_err());
}

#[test]
fn models_that_are_not_landmark_models_are_refused() {
    let samples = faces(40, 11);
    let config = TrainConfig {
        inputs: vec![StageInput::Face; 1],
        perturbations: 1,
        ..TrainConfig::default()
    };
    let (cascade, _, _) = train(&samples, &config, |_| {}).unwrap();
    let mut proto = cascade.to_onnx();
    proto
        .metadata_props
        .retain(|p| p.key != facelock_shared::model_meta::KIND);
    let error = LandmarkModel::from_proto(&proto, std::path::Path::new("x.onnx"))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("not a facelock landmark model"), "{error}");

    let mut proto = cascade.to_onnx();
    for p in proto.metadata_props.iter_mut() {
        if p.key == facelock_shared::model_meta::LANDMARK_BOX_SHAPE {
            p.value = "1,2,3".into();
        }
    }
    assert!(LandmarkModel::from_proto(&proto, std::path::Path::new("x.onnx")).is_err());
}

#[test]
fn too_few_faces_or_no_stages_are_errors() {
    let samples = faces(10, 1);
    assert!(train(&samples, &TrainConfig::default(), |_| {}).is_err());
    let samples = faces(25, 1);
    let config = TrainConfig {
        inputs: vec![StageInput::Face; 0],
        ..TrainConfig::default()
    };
    assert!(train(&samples, &config, |_| {}).is_err());
}

#[test]
fn the_detection_for_known_points_must_hold_the_face() {
    use facelock_shared::detect::Detection;
    let truth = [
        [40.0, 50.0],
        [70.0, 50.0],
        [55.0, 65.0],
        [45.0, 80.0],
        [65.0, 80.0],
    ];
    let other = Detection {
        face: FaceBox {
            x: 0.0,
            y: 0.0,
            width: 30.0,
            height: 30.0,
        },
        score: 5.0,
    };
    let right = Detection {
        face: FaceBox {
            x: 30.0,
            y: 35.0,
            width: 50.0,
            height: 55.0,
        },
        score: 3.0,
    };
    assert_eq!(detection_for(&[other, right], &truth), Some(right.face));
    assert_eq!(detection_for(&[other], &truth), None);
}
