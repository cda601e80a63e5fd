//! The journey on real faces (needs `FACELOCK_DATA`): a few-minute training run on LFW
//! dev-train people, evaluation on `pairsDevTest`, export, int8 quantization, then LFW dev-test
//! people enrolled on `facelockd` over a pseudo-terminal and checked.
use std::path::{Path, PathBuf};

use facelock_e2e::{
    facelock, landmarks_row as landmarks_of, lfw_image as image, Board, ADMIN_KEY_HEX,
};
use facelock_shared::client::{EnrollImage, EnrollOutcome, ENROLL_CHUNK_LEN};
use facelock_shared::protocol::{ErrorCode, Request, Response};

/// People per side and images per person used here: small enough for a few minutes on 2 cores.
const TRAIN_PEOPLE: usize = 60;
const BOARD_PEOPLE: usize = 6;

/// The LFW people of `list` (LFW people-file format) with at least `min` images, first `n`.
fn people_with_images(data: &Path, list: &str, min: usize, n: usize) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(data.join("lfw-protocol").join(list)).expect("people file");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let name = line.split('\t').next()?.to_string();
            let count = std::fs::read_dir(data.join("lfw").join(&name))
                .ok()?
                .count();
            (count >= min).then_some((name, count))
        })
        .take(n)
        .collect()
}

#[test]
#[ignore = "needs FACELOCK_DATA"]
fn lfw_train_export_quantize_enroll_verify() -> anyhow::Result<()> {
    let data = PathBuf::from(std::env::var("FACELOCK_DATA").expect("FACELOCK_DATA is not set"));
    let dir = tempfile::tempdir()?;
    let work = dir.path();
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let lfw = data.join("lfw");
    let landmarks = data.join("lfw-landmarks.tsv");
    let pairs = data.join("lfw-protocol/pairsDevTest.txt");

    // A few minutes of training on dev-train people only.
    let train_people = people_with_images(&data, "peopleDevTrain.txt", 5, TRAIN_PEOPLE);
    let list = work.join("train-people.txt");
    let names: Vec<&str> = train_people.iter().map(|(n, _)| n.as_str()).collect();
    std::fs::write(&list, names.join("\n"))?;
    let run = work.join("run");
    facelock(&[
        "train",
        "--images",
        &path(&lfw),
        "--identities",
        &path(&list),
        "--landmarks",
        &path(&landmarks),
        "--out",
        &path(&run),
        "--epochs",
        "3",
        "--batch",
        "32",
        "--width",
        "0.25",
        "--lr",
        "0.05",
        "--warmup-epochs",
        "0.2",
        "--seed",
        "5",
    ])?;
    let checkpoint = run.join("checkpoints/epoch-0003");

    // Evaluate on pairsDevTest, export with its thresholds, quantize with 64 faces.
    let report_dir = work.join("eval");
    let summary = facelock(&[
        "eval",
        "--model",
        &path(&checkpoint),
        "--pairs",
        &path(&pairs),
        "--images",
        &path(&lfw),
        "--landmarks",
        &path(&landmarks),
        "--out",
        &path(&report_dir),
    ])?;
    let f32_model = work.join("f32.onnx");
    facelock(&[
        "export",
        "--checkpoint",
        &path(&checkpoint),
        "--eval-report",
        &path(&report_dir.join("report.json")),
        "--out",
        &path(&f32_model),
    ])?;
    let int8_model = work.join("int8.onnx");
    facelock(&[
        "quantize",
        "--model",
        &path(&f32_model),
        "--calib",
        &path(&lfw),
        "--landmarks",
        &path(&landmarks),
        "--count",
        "64",
        "--pairs",
        &path(&pairs),
        "--out",
        &path(&int8_model),
    ])?;

    // The board: dev-test people (never trained on), two images enrolled, the rest probed.
    let board_dir = work.join("board");
    std::fs::create_dir_all(&board_dir)?;
    // Weak few-minute models reject many genuine probes: no lockout while measuring.
    let settings = "max_failures = 255\nlockout_ms = 1\n";
    let mut board = Board::boot_with(&board_dir, &int8_model, Some(settings))?;
    let mut client = board.client()?;
    let (threshold, _) = board.wait_ready(&mut client)?;
    let key: Vec<u8> = (0..ADMIN_KEY_HEX.len() / 2)
        .map(|i| u8::from_str_radix(&ADMIN_KEY_HEX[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    assert!(client.authenticate(&key, |r| matches!(r, Response::AuthOk))?);

    let table = std::fs::read_to_string(&landmarks)?;
    let people = people_with_images(&data, "peopleDevTest.txt", 4, BOARD_PEOPLE);
    for (index, (name, _)) in people.iter().enumerate() {
        let files: Vec<(Vec<u8>, PathBuf)> = (1..=2)
            .map(|n| image(name, n))
            .map(|rel| Ok((std::fs::read(lfw.join(&rel))?, rel)))
            .collect::<std::io::Result<_>>()?;
        let images: Vec<EnrollImage<'_>> = files
            .iter()
            .map(|(bytes, rel)| EnrollImage {
                bytes,
                landmarks: landmarks_of(&table, rel),
            })
            .collect();
        let outcome = client.enroll(
            index as u32 + 1,
            name,
            false,
            &images,
            ENROLL_CHUNK_LEN,
            |_, _| {},
        )?;
        assert!(
            matches!(outcome, EnrollOutcome::Enrolled { samples: 2, .. }),
            "{outcome:?}"
        );
    }

    // Probe every enrolled user with their own third image and with the next person's.
    let mut genuine = Vec::new();
    let mut impostor = Vec::new();
    for (index, (name, _)) in people.iter().enumerate() {
        let other = &people[(index + 1) % people.len()].0;
        for (probe, same) in [(image(name, 3), true), (image(other, 3), false)] {
            let bytes = std::fs::read(lfw.join(&probe))?;
            let request = Request::Verify {
                user_id: index as u32 + 1,
                landmarks: landmarks_of(&table, &probe),
                image: &bytes,
            };
            let answer = client.call(&request, |r| match r {
                Response::Verified {
                    score, accepted, ..
                } => Ok((*score, *accepted)),
                Response::Error { code, .. } => Err(*code),
                _ => Err(ErrorCode::Internal),
            })?;
            let (score, accepted) = answer.map_err(|c| anyhow::anyhow!("verify refused: {c}"))?;
            assert_eq!(
                accepted,
                score >= threshold,
                "decision disagrees with the threshold"
            );
            if same {
                genuine.push(score)
            } else {
                impostor.push(score)
            }
        }
    }

    // Identity survives the whole chain: own faces score higher than other people's.
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    println!("threshold {threshold}: genuine {genuine:?}, impostor {impostor:?}");
    assert!(
        mean(&genuine) > mean(&impostor),
        "genuine {genuine:?} vs impostor {impostor:?}; eval said:\n{summary}"
    );
    Ok(())
}
