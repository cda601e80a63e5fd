//! The ONNX model loader: metadata checks and embeddings of the generated test model.
use std::path::Path;

use facelock_firmware::model::FaceModel;
use facelock_firmware::testing::{test_metadata, test_model_bytes, TEST_DIM};
use facelock_firmware::Error;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn generated_model_loads_with_its_metadata() {
    let bytes = test_model_bytes(0xfeed, &test_metadata(0xfeed));
    let model = FaceModel::from_bytes(Path::new("test.onnx"), &bytes).unwrap();
    assert_eq!(model.meta().model_id, 0xfeed);
    assert_eq!(model.meta().embedding_dim, TEST_DIM);
    assert_eq!(model.meta().mean, [0.5; 3]);

    let a: Vec<f32> = (0..model.meta().input_len())
        .map(|i| ((i % 97) as f32 / 48.0) - 1.0)
        .collect();
    let b: Vec<f32> = (0..model.meta().input_len())
        .map(|i| ((i % 89) as f32 / 44.0) - 1.0)
        .collect();
    let ea = model.embed(&a).unwrap();
    let eb = model.embed(&b).unwrap();
    assert_eq!(ea.len(), TEST_DIM);
    assert!(
        cosine(&ea, &eb) < 0.9,
        "different inputs give different embeddings"
    );
    assert_eq!(ea, model.embed(&a).unwrap(), "inference is deterministic");

    // The net is linear without bias: embed(2a) = 2 embed(a), checked against the first run.
    let doubled: Vec<f32> = a.iter().map(|x| 2.0 * x).collect();
    for (x, y) in model.embed(&doubled).unwrap().iter().zip(&ea) {
        assert!(
            (x - 2.0 * y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{x} vs 2*{y}"
        );
    }
}

#[test]
fn model_without_metadata_is_refused_naming_the_key() {
    let bytes = test_model_bytes(1, &[]);
    let err = FaceModel::from_bytes(Path::new("plain.onnx"), &bytes)
        .err()
        .unwrap();
    assert!(matches!(err, Error::ModelMetadata { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("plain.onnx") && text.contains("facelock."),
        "{text}"
    );
}

#[test]
fn model_with_bad_metadata_value_is_refused() {
    let mut meta = test_metadata(1);
    for (key, value) in &mut meta {
        if key == facelock_shared::model_meta::MODEL_ID {
            *value = "xyz".into();
        }
    }
    let err = FaceModel::from_bytes(Path::new("m.onnx"), &test_model_bytes(1, &meta))
        .err()
        .unwrap();
    assert!(err.to_string().contains("xyz"), "{err}");
}

#[test]
fn garbage_file_is_a_model_error_not_a_panic() {
    let err = FaceModel::from_bytes(Path::new("junk.onnx"), b"not a model at all")
        .err()
        .unwrap();
    assert!(err.to_string().contains("junk.onnx"), "{err}");
}

#[test]
fn wrong_input_length_is_a_shape_error() {
    let bytes = test_model_bytes(2, &test_metadata(2));
    let model = FaceModel::from_bytes(Path::new("t.onnx"), &bytes).unwrap();
    assert!(matches!(model.embed(&[0.0; 10]), Err(Error::Shape { .. })));
}

#[test]
fn landmark_alignment_path_embeds_and_checks_bounds() {
    use facelock_firmware::pipeline::{embed_image, DEFAULT_CROP_FRACTION};
    use facelock_firmware::testing::draw_face;

    let model = FaceModel::from_bytes(Path::new("t.onnx"), &test_model_bytes(3, &test_metadata(3)))
        .unwrap();
    let face = draw_face(5, 0);
    let points = face.landmarks.map(|(x, y)| [x, y]);
    let aligned = embed_image(&model, &face.jpeg(), Some(&points), DEFAULT_CROP_FRACTION).unwrap();
    let cropped = embed_image(&model, &face.jpeg(), None, DEFAULT_CROP_FRACTION).unwrap();
    assert_eq!(aligned.len(), TEST_DIM);
    assert!(
        cosine(&aligned, &cropped) < 0.999,
        "landmarks change the crop"
    );

    // Two shots of one person aligned by their landmarks stay close.
    let other_shot = draw_face(5, 1);
    let other_points = other_shot.landmarks.map(|(x, y)| [x, y]);
    let again = embed_image(
        &model,
        &other_shot.jpeg(),
        Some(&other_points),
        DEFAULT_CROP_FRACTION,
    )
    .unwrap();
    assert!(
        cosine(&aligned, &again) > 0.9,
        "{}",
        cosine(&aligned, &again)
    );

    let mut outside = points;
    outside[0] = [500.0, 10.0];
    let err = embed_image(&model, &face.jpeg(), Some(&outside), DEFAULT_CROP_FRACTION).unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let err = embed_image(&model, b"not an image", None, DEFAULT_CROP_FRACTION).unwrap_err();
    assert!(matches!(err, Error::Image(_)), "{err}");
}
