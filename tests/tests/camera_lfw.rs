//! Camera unlocks on real faces (needs `FACELOCK_DATA`): a landmark cascade trained on LFW
//! dev-train images, `facelockd --camera dir:<folder>` with the shipped model, one dev-test
//! person enrolled from files, then `Unlock` requests answered from frames dropped in the folder:
//! the same person, someone else, no face, two faces, a face too small.
use std::path::{Path, PathBuf};
use std::time::Duration;

use facelock_e2e::{
    facelock, landmarks_row as landmarks_of, lfw_image as image, Board, ADMIN_KEY_HEX,
};
use facelock_shared::client::{EnrollImage, EnrollOutcome, ENROLL_CHUNK_LEN};
use facelock_shared::protocol::{ErrorCode, Request, Response};
use image::{imageops, RgbImage};

const USER: u32 = 42;
/// Dev-test people (pairsDevTest side), never in the landmark training set.
const ENROLLED: &str = "Abdullah_Gul";
const IMPOSTOR: &str = "Adrien_Brody";

/// What the board answered to an unlock: a score, or an error code.
fn unlock(
    client: &mut facelock_shared::client::Client<facelock_shared::serial::ControllerLink>,
) -> Result<(f32, bool), ErrorCode> {
    client
        .call(&Request::Unlock { user_id: USER }, |r| match r {
            Response::Verified {
                score, accepted, ..
            } => Ok((*score, *accepted)),
            Response::Error { code, .. } => Err(*code),
            other => panic!("unexpected answer {other:?}"),
        })
        .expect("the board answers")
}

#[test]
#[ignore = "needs FACELOCK_DATA"]
fn camera_frames_unlock_the_enrolled_person_only() -> anyhow::Result<()> {
    let data = PathBuf::from(std::env::var("FACELOCK_DATA").expect("FACELOCK_DATA is not set"));
    let dir = tempfile::tempdir()?;
    let work = dir.path();
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let lfw = data.join("lfw");
    let table = std::fs::read_to_string(data.join("lfw-landmarks.tsv"))?;

    // A small cascade: 400 dev-train images, a whole-face stage, then one on local gradient
    // histograms and one on local pixels (seconds).
    let cascade = work.join("landmarks.onnx");
    let report = facelock(&[
        "landmarks",
        "train",
        "--images",
        &path(&lfw),
        "--identities",
        &path(&data.join("lfw-protocol/peopleDevTrain.txt")),
        "--landmarks",
        &path(&data.join("lfw-landmarks.tsv")),
        "--out",
        &path(&cascade),
        "--inputs",
        "face,gradients,pixels",
        "--max-images",
        "400",
    ])?;
    println!("{report}");

    let frames = work.join("frames");
    std::fs::create_dir(&frames)?;
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/facelock-f32.onnx");
    let camera = format!("dir:{}", frames.display());
    let mut board = Board::boot_with_args(
        work,
        &model,
        None,
        &[
            "--camera",
            &camera,
            "--landmark-model",
            &path(&cascade),
            "--unlock-window-ms",
            "400",
            // LFW faces are ~50 px wide in 150x150 images.
            "--min-face",
            "40",
        ],
    )?;
    let mut client = board.client()?;
    board.wait_ready(&mut client)?;

    // No one enrolled yet: an unknown user, before any frame is read.
    assert_eq!(unlock(&mut client), Err(ErrorCode::UnknownUser));

    let key: Vec<u8> = (0..ADMIN_KEY_HEX.len() / 2)
        .map(|i| u8::from_str_radix(&ADMIN_KEY_HEX[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let enroll_files = [image(ENROLLED, 1), image(ENROLLED, 2), image(ENROLLED, 3)];
    let bytes: Vec<Vec<u8>> = enroll_files
        .iter()
        .map(|p| std::fs::read(lfw.join(p)))
        .collect::<Result<_, _>>()?;
    let images: Vec<EnrollImage<'_>> = enroll_files
        .iter()
        .zip(&bytes)
        .map(|(p, b)| EnrollImage {
            bytes: b,
            landmarks: landmarks_of(&table, p),
        })
        .collect();
    assert!(client.authenticate(&key, |r| matches!(r, Response::AuthOk))?);
    let outcome = client
        .enroll(
            USER,
            "abdullah",
            false,
            &images,
            ENROLL_CHUNK_LEN,
            |_, _| (),
        )
        .expect("enroll answered");
    assert!(
        matches!(outcome, EnrollOutcome::Enrolled { .. }),
        "{outcome:?}"
    );

    let decode = |relative: PathBuf| -> RgbImage {
        image::open(lfw.join(relative))
            .expect("lfw image")
            .to_rgb8()
    };
    let mut dropped = 0;
    let mut drop_frame = |frame: &RgbImage| {
        dropped += 1;
        frame
            .save(frames.join(format!("frame-{dropped:03}.png")))
            .expect("frame written");
    };

    // The enrolled person, an image not used for enrollment.
    drop_frame(&decode(image(ENROLLED, 4)));
    let (genuine, genuine_accepted) = unlock(&mut client).expect("a face in the genuine frame");
    // Someone else.
    drop_frame(&decode(image(IMPOSTOR, 1)));
    let (impostor, impostor_accepted) = unlock(&mut client).expect("a face in the impostor frame");
    println!(
        "genuine {genuine:.3} ({genuine_accepted}), impostor {impostor:.3} ({impostor_accepted})"
    );
    assert!(
        genuine > impostor + 0.1,
        "genuine {genuine}, impostor {impostor}"
    );
    assert!(genuine_accepted && !impostor_accepted);
    let pulses = std::fs::read_to_string(work.join("lock.log"))?;
    assert!(!pulses.is_empty(), "the accepted unlock pulsed the lock");

    // A flat frame: no face, and nothing counted against the user.
    drop_frame(&RgbImage::from_pixel(160, 120, image::Rgb([128, 128, 128])));
    assert_eq!(unlock(&mut client), Err(ErrorCode::NoFace));
    // Two people side by side.
    let (a, b) = (decode(image(ENROLLED, 5)), decode(image(IMPOSTOR, 2)));
    let mut pair = RgbImage::from_pixel(
        a.width() + b.width(),
        a.height().max(b.height()),
        image::Rgb([0, 0, 0]),
    );
    imageops::replace(&mut pair, &a, 0, 0);
    imageops::replace(&mut pair, &b, a.width() as i64, 0);
    drop_frame(&pair);
    assert_eq!(unlock(&mut client), Err(ErrorCode::SeveralFaces));
    // The enrolled person far away: a 150x150 image shrunk to 60x60 in a 200x200 frame.
    let small = imageops::resize(
        &decode(image(ENROLLED, 6)),
        60,
        60,
        imageops::FilterType::Triangle,
    );
    let mut far = RgbImage::from_pixel(200, 200, image::Rgb([90, 90, 90]));
    imageops::replace(&mut far, &small, 70, 70);
    drop_frame(&far);
    let answer = unlock(&mut client);
    assert!(
        matches!(
            answer,
            Err(ErrorCode::FaceTooSmall) | Err(ErrorCode::NoFace)
        ),
        "{answer:?}"
    );
    // No new frame at all within the window.
    assert_eq!(unlock(&mut client), Err(ErrorCode::NoFace));

    // Refused frames are not failures: the impostor's reject is the only one.
    let failures = client
        .call(&Request::Stats, |r| match r {
            Response::Stats(c) => c.failures,
            _ => 99,
        })
        .expect("stats");
    assert_eq!(
        failures, 1,
        "one reject; frames without a usable face count nothing"
    );
    drop(client);
    board.stop();
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
