//! The user's journey on generated faces: train → evaluate → export → quantize → boot
//! `facelockd` on a pseudo-terminal → auth → enroll → verify → restart → lockout.
use facelock_e2e::{facelock, generate_faces, image_name, write_pairs, Board, ADMIN_KEY_HEX};
use facelock_shared::client::{EnrollImage, EnrollOutcome, ENROLL_CHUNK_LEN};
use facelock_shared::protocol::{ErrorCode, Request, Response};

/// Training identities and evaluation identities are disjoint, as on LFW.
const TRAIN_PERSONS: [u64; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const EVAL_PERSONS: [u64; 6] = [101, 102, 103, 104, 105, 106];
const SHOTS: u64 = 6;

/// The landmarks of a drawn face, in the wire layout.
fn wire_landmarks(person: u64, shot: u64) -> [f32; 10] {
    let face = facelock_firmware::testing::draw_face(person, shot);
    let mut flat = [0.0; 10];
    for (i, (x, y)) in face.landmarks.iter().enumerate() {
        flat[2 * i] = *x;
        flat[2 * i + 1] = *y;
    }
    flat
}

#[test]
fn train_export_quantize_enroll_verify_restart_lockout() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let work = dir.path();
    let train = generate_faces(&work.join("train"), &TRAIN_PERSONS, SHOTS)?;
    let eval = generate_faces(&work.join("eval"), &EVAL_PERSONS, SHOTS)?;
    let pairs = work.join("pairs.tsv");
    write_pairs(&pairs, &EVAL_PERSONS, SHOTS)?;
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 temp path").to_owned();
    let run = work.join("run");

    // Train a narrow backbone for a few epochs with AM-Softmax.
    facelock(&[
        "train",
        "--images",
        &path(&train.root),
        "--landmarks",
        &path(&train.landmarks),
        "--out",
        &path(&run),
        "--epochs",
        "12",
        "--batch",
        "16",
        "--width",
        "0.25",
        "--lr",
        "0.05",
        "--warmup-epochs",
        "0",
        "--seed",
        "3",
    ])?;
    let checkpoint = run.join("checkpoints/epoch-0012");
    assert!(checkpoint.join("model.safetensors").is_file());

    // Evaluate on unseen people, export with those thresholds, quantize to int8.
    let report_dir = work.join("eval-report");
    let report = report_dir.join("report.json");
    facelock(&[
        "eval",
        "--model",
        &path(&checkpoint),
        "--pairs",
        &path(&pairs),
        "--images",
        &path(&eval.root),
        "--landmarks",
        &path(&eval.landmarks),
        "--out",
        &path(&report_dir),
    ])?;
    let f32_model = work.join("model-f32.onnx");
    facelock(&[
        "export",
        "--checkpoint",
        &path(&checkpoint),
        "--eval-report",
        &path(&report),
        "--out",
        &path(&f32_model),
    ])?;
    let int8_model = work.join("model-int8.onnx");
    facelock(&[
        "quantize",
        "--model",
        &path(&f32_model),
        "--calib",
        &path(&eval.root),
        "--landmarks",
        &path(&eval.landmarks),
        "--count",
        "32",
        "--pairs",
        &path(&pairs),
        "--out",
        &path(&int8_model),
    ])?;

    // Boot the board with the int8 model.
    let board_dir = work.join("board");
    std::fs::create_dir_all(&board_dir)?;
    let mut board = Board::boot(&board_dir, &int8_model)?;
    let mut client = board.client()?;
    let (threshold, enrolled) = board.wait_ready(&mut client)?;
    assert_eq!(enrolled, 0);

    // A wrong admin key cannot enroll.
    let wrong = client.authenticate(b"not the admin key, but long enough", |r| {
        matches!(r, Response::AuthOk)
    })?;
    assert!(!wrong, "a wrong key was accepted");
    let begin = Request::EnrollBegin {
        user_id: 1,
        name: "p101",
        image_count: 2,
        replace: false,
    };
    let refused = client.call(&begin, |r| match r {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    })?;
    assert_eq!(refused, Some(ErrorCode::AuthRequired));

    // The right key enrolls two people from two images each.
    let key: Vec<u8> = (0..ADMIN_KEY_HEX.len() / 2)
        .map(|i| u8::from_str_radix(&ADMIN_KEY_HEX[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    // The failed attempt above rate-limits auth for a second.
    let answer = |r: &Response<'_>| match r {
        Response::AuthOk => None,
        Response::Error { code, .. } => Some(*code),
        _ => Some(ErrorCode::Internal),
    };
    let mut refusal = client.authenticate(&key, answer)?;
    if refusal == Some(ErrorCode::RateLimited) {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        refusal = client.authenticate(&key, answer)?;
    }
    assert_eq!(refusal, None, "the admin key was refused");
    for (user_id, person) in [(1u32, 101u64), (2, 102)] {
        let files: Vec<Vec<u8>> = (0..2)
            .map(|shot| std::fs::read(eval.root.join(image_name(person, shot))))
            .collect::<Result<_, _>>()?;
        let images: Vec<EnrollImage<'_>> = files
            .iter()
            .enumerate()
            .map(|(shot, bytes)| EnrollImage {
                bytes,
                landmarks: Some(wire_landmarks(person, shot as u64)),
            })
            .collect();
        let name = format!("person {person}");
        let outcome = client.enroll(user_id, &name, false, &images, ENROLL_CHUNK_LEN, |_, _| {})?;
        assert_eq!(
            outcome,
            EnrollOutcome::Enrolled {
                user_id,
                samples: 2
            },
            "{}",
            board.log()
        );
    }

    let verify = |client: &mut facelock_shared::client::Client<_>, user_id, person, shot| {
        let image = std::fs::read(eval.root.join(image_name(person, shot)))?;
        let request = Request::Verify {
            user_id,
            landmarks: Some(wire_landmarks(person, shot)),
            image: &image,
        };
        client
            .call(&request, |r| match r {
                Response::Verified {
                    score,
                    accepted,
                    locked_out_ms,
                    ..
                } => Ok((*score, *accepted, *locked_out_ms)),
                Response::Error { code, .. } => Err(*code),
                _ => Err(ErrorCode::Internal),
            })
            .map_err(|e| anyhow::anyhow!("verify failed: {e:?}"))
    };

    // Genuine probe accepted, impostor rejected, at the model's own threshold.
    let (genuine, accepted, _) = verify(&mut client, 1, 101, 4)?.expect("verified");
    assert!(
        accepted,
        "genuine score {genuine} below threshold {threshold}"
    );
    let (impostor, accepted, _) = verify(&mut client, 1, 103, 4)?.expect("verified");
    assert!(
        !accepted,
        "impostor score {impostor} above threshold {threshold}"
    );
    let lock_log = std::fs::read_to_string(board_dir.join("lock.log"))?;
    assert!(
        lock_log.contains("energised"),
        "no unlock pulse in {lock_log:?}"
    );

    // Restart: the gallery is intact and still recognises its users.
    board.stop();
    board.start()?;
    let (_, enrolled) = board.wait_ready(&mut client)?;
    assert_eq!(enrolled, 2);
    let (_, accepted, _) = verify(&mut client, 2, 102, 5)?.expect("verified");
    assert!(accepted, "user 2 not recognised after restart");

    // Five impostor attempts in a row lock verification out, genuine faces included.
    for attempt in 1..=5 {
        let answer = verify(&mut client, 2, 104, 3)?;
        assert!(
            matches!(answer, Ok((_, false, _))),
            "attempt {attempt}: {answer:?}"
        );
    }
    let locked = verify(&mut client, 2, 102, 4)?;
    let is_locked = match locked {
        Ok((_, accepted, locked_out_ms)) => !accepted && locked_out_ms > 0,
        Err(code) => code == ErrorCode::LockedOut,
    };
    assert!(is_locked, "not locked out after five failures: {locked:?}");
    Ok(())
}
