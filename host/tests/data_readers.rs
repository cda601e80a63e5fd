//! Readers, alignment, cache and loader on small fixtures generated in a temporary folder.
use std::path::{Path, PathBuf};

use facelock_host::data::{
    align_image, align_image_rgb, align_many, decode_file, jitter_landmarks, pairs::lfw_image_path,
    AlignConfig, BatchLoader, CropCache, Dataset, Landmarks, LoaderConfig, Pairs,
};
use facelock_host::Error;
use facelock_shared::align::{ALIGNED_LEN, ALIGNED_SIZE};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A face-ish test image: gradient background, two dark eye blobs, size w x h.
fn face_rgb(width: u32, height: u32, tint: u8) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let eye = |cx: f32, cy: f32| (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < 9.0;
        let w = width as f32;
        if eye(0.35 * w, 0.4 * height as f32) || eye(0.65 * w, 0.4 * height as f32) {
            image::Rgb([10, 10, 10])
        } else {
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, tint])
        }
    })
}

/// Writes the fixture tree and returns (tempdir, root).
///
/// root/alice: a1.png (RGB 40x30), a2.pgm (grey 30x40), a3.gif
/// root/bob:   b1.png, b2.png, notes.txt
/// root/carol: c1.png
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("faces");
    for name in ["alice", "bob", "carol"] {
        std::fs::create_dir_all(root.join(name)).unwrap();
    }
    face_rgb(40, 30, 50)
        .save(root.join("alice/a1.png"))
        .unwrap();
    let grey = image::GrayImage::from_fn(30, 40, |x, y| image::Luma([(x * 5 + y * 3) as u8]));
    grey.save(root.join("alice/a2.pgm")).unwrap();
    face_rgb(24, 24, 90)
        .save(root.join("alice/a3.gif"))
        .unwrap();
    face_rgb(40, 40, 120).save(root.join("bob/b1.png")).unwrap();
    face_rgb(50, 40, 200).save(root.join("bob/b2.png")).unwrap();
    std::fs::write(root.join("bob/notes.txt"), "not an image").unwrap();
    face_rgb(32, 32, 0).save(root.join("carol/c1.png")).unwrap();
    (dir, root)
}

fn rel(path: &str) -> PathBuf {
    PathBuf::from(path)
}

#[test]
fn folder_reader_labels_sorted_identities_and_ignores_other_files() {
    let (_dir, root) = fixture();
    let data = Dataset::from_folder(&root, None, 1).unwrap();
    assert_eq!(data.identities, ["alice", "bob", "carol"]);
    assert_eq!(data.samples.len(), 6);
    assert_eq!(data.samples[0].path, rel("alice/a1.png"));
    assert_eq!(data.samples[5].label, 2);
    assert_eq!(data.images_per_identity(), [3, 2, 1]);
    assert_eq!(data.ignored_files, [rel("bob/notes.txt")]);
    assert_eq!(
        data.histogram().into_iter().collect::<Vec<_>>(),
        [(1, 1), (2, 1), (3, 1)]
    );
}

#[test]
fn identity_list_filters_skips_missing_and_min_images_drops() {
    let (dir, root) = fixture();
    let list = dir.path().join("people.txt");
    std::fs::write(&list, "3\nbob\t2\ncarol\t1\nzed\t4\n").unwrap();
    let data = Dataset::from_folder(&root, Some(&list), 2).unwrap();
    assert_eq!(data.identities, ["bob"]);
    assert!(data.samples.iter().all(|s| s.label == 0));
    assert_eq!(data.missing_identities, ["zed"]);
    assert_eq!(data.too_few_images, ["carol"]);

    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "# people\ncarol\n\nalice\n").unwrap();
    let data = Dataset::from_folder(&root, Some(&plain), 1).unwrap();
    assert_eq!(data.identities, ["alice", "carol"]);

    std::fs::write(&plain, "alice 3 extra\n").unwrap();
    let err = Dataset::from_folder(&root, Some(&plain), 1).unwrap_err();
    assert!(matches!(err, Error::Parse { line: 1, .. }), "{err}");
}

#[test]
fn decoding_keeps_grey_as_one_channel_and_names_unreadable_files() {
    let (_dir, root) = fixture();
    let png = decode_file(&root.join("alice/a1.png")).unwrap();
    assert_eq!((png.width, png.height, png.channels), (40, 30, 3));
    let pgm = decode_file(&root.join("alice/a2.pgm")).unwrap();
    assert_eq!((pgm.width, pgm.height, pgm.channels), (30, 40, 1));
    assert_eq!(pgm.pixels[31], 5 + 3);
    let gif = decode_file(&root.join("alice/a3.gif")).unwrap();
    assert_eq!((gif.width, gif.height), (24, 24));

    let broken = root.join("alice/broken.jpg");
    std::fs::write(&broken, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let err = decode_file(&broken).unwrap_err();
    assert!(matches!(err, Error::Image { .. }), "{err}");
    assert!(err.to_string().contains("broken.jpg"), "{err}");
    let err = decode_file(&root.join("alice/absent.png")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("absent.png"));
}

const LANDMARKS: &str = "# path\tle_x\tle_y\tre_x\tre_y\tn_x\tn_y\tml_x\tml_y\tmr_x\tmr_y\n\
alice/a1.png\t14\t12\t26\t12\t20\t17\t15\t22\t25\t22\n\
bob/b1.png\t14\t16\t26\t16\t20\t22\t15\t28\t25\t28\n";

#[test]
fn landmarks_parse_and_reject_bad_rows() {
    let source = Path::new("lm.tsv");
    let landmarks = Landmarks::parse(LANDMARKS, source).unwrap();
    assert_eq!(landmarks.len(), 2);
    assert_eq!(
        landmarks.get(Path::new("bob/b1.png")).unwrap()[2],
        [20.0, 22.0]
    );
    assert!(landmarks.get(Path::new("bob/b2.png")).is_none());

    let short = "a.png\t1\t2\t3\n";
    let err = Landmarks::parse(short, source).unwrap_err();
    assert!(matches!(err, Error::Parse { line: 1, .. }), "{err}");
    let nan = "x\n".replace('x', "a.png\t1\t2\t3\t4\t5\t6\t7\t8\t9\tNaN");
    assert!(matches!(
        Landmarks::parse(&nan, source),
        Err(Error::Parse { line: 1, .. })
    ));
    let twice = format!("{LANDMARKS}alice/a1.png\t1\t2\t3\t4\t5\t6\t7\t8\t9\t10\n");
    assert!(matches!(
        Landmarks::parse(&twice, source),
        Err(Error::Parse { line: 4, .. })
    ));
}

#[test]
fn pairs_read_all_three_formats() {
    let source = Path::new("pairs.txt");
    let view2 = "2\t1\nAna\t1\t2\nAna\t1\tBo\t3\nCy\t2\t4\nCy\t1\tDi\t1\n";
    let pairs = Pairs::parse(view2, source).unwrap();
    assert_eq!((pairs.folds, pairs.len()), (2, 4));
    assert_eq!(pairs.pairs[1].b, rel("Bo/Bo_0003.jpg"));
    assert!(pairs.pairs[0].same && !pairs.pairs[1].same);
    assert_eq!(
        pairs.pairs.iter().map(|p| p.fold).collect::<Vec<_>>(),
        [0, 0, 1, 1]
    );

    let dev = "2\nAna 1 2\nCy 2 4\nAna 1 Bo 3\nCy 1 Di 1\n";
    let pairs = Pairs::parse(dev, source).unwrap();
    assert_eq!((pairs.folds, pairs.len()), (1, 4));
    assert_eq!(pairs.pairs.iter().filter(|p| p.same).count(), 2);

    let tsv = "# fold\tlabel\ta\tb\n0\t1\tx/1.png\tx/2 b.png\n3\t0\tx/1.png\ty/1.png\n";
    let pairs = Pairs::parse(tsv, source).unwrap();
    assert_eq!((pairs.folds, pairs.len()), (4, 2));
    assert_eq!(pairs.pairs[0].b, rel("x/2 b.png"));
    assert!(pairs.pairs[0].same && !pairs.pairs[1].same);

    let short = "3\nAna 1 2\nAna 1 Bo 3\n";
    assert!(matches!(
        Pairs::parse(short, source),
        Err(Error::Parse { .. })
    ));
    let bad_label = "0\t2\ta.png\tb.png\n";
    assert!(matches!(
        Pairs::parse(bad_label, source),
        Err(Error::Parse { line: 1, .. })
    ));
    let zero = "1\nAna 0 2\nAna 1 Bo 3\n";
    assert!(matches!(
        Pairs::parse(zero, source),
        Err(Error::Parse { line: 2, .. })
    ));
    assert_eq!(lfw_image_path("Ana", 12), rel("Ana/Ana_0012.jpg"));
}

#[test]
fn resolving_pairs_skips_and_counts_missing_images() {
    let (_dir, root) = fixture();
    let tsv = "0\t1\talice/a1.png\talice/a2.pgm\n0\t0\talice/a1.png\tzed/z1.png\n\
               1\t0\tbob/b9.png\tzed/z1.png\n1\t0\tbob/b1.png\tcarol/c1.png\n";
    let pairs = Pairs::parse(tsv, Path::new("p.tsv")).unwrap();
    let resolved = pairs.resolve(&root);
    assert_eq!(resolved.pairs.len(), 2);
    assert_eq!(resolved.skipped.len(), 2);
    let missing: Vec<_> = resolved.missing_images.iter().cloned().collect();
    assert_eq!(missing, [rel("bob/b9.png"), rel("zed/z1.png")]);
}

#[test]
fn align_image_gives_finite_chw_input_and_replicates_grey() {
    let (_dir, root) = fixture();
    let landmarks = Landmarks::parse(LANDMARKS, Path::new("lm.tsv")).unwrap();
    let config = AlignConfig::default();
    let points = landmarks.get(Path::new("alice/a1.png"));
    let with = align_image(&root.join("alice/a1.png"), points.as_ref(), &config).unwrap();
    assert_eq!(with.len(), ALIGNED_LEN);
    assert!(with
        .iter()
        .all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));

    let grey = align_image(&root.join("alice/a2.pgm"), None, &config).unwrap();
    let plane = ALIGNED_SIZE * ALIGNED_SIZE;
    assert_eq!(grey[..plane], grey[plane..2 * plane]);
    assert_eq!(grey[..plane], grey[2 * plane..]);

    let paths = [rel("alice/a1.png"), rel("bob/b2.png"), rel("alice/a2.pgm")];
    let many = align_many(&root, &paths, Some(&landmarks), &config).unwrap();
    assert_eq!(many.len(), 3 * ALIGNED_LEN);
    assert_eq!(many[..ALIGNED_LEN], with[..]);
    assert_eq!(many[2 * ALIGNED_LEN..], grey[..]);
}

#[test]
fn crop_cache_hits_on_second_use_and_misses_on_new_landmarks() {
    let (dir, root) = fixture();
    let cache = CropCache::open(&dir.path().join("cache")).unwrap();
    let config = AlignConfig::default();
    let source = root.join("alice/a1.png");
    let landmarks = Landmarks::parse(LANDMARKS, Path::new("lm.tsv")).unwrap();
    let mut points = landmarks.get(Path::new("alice/a1.png")).unwrap();

    let first = cache.get_or_align(&source, Some(&points), &config).unwrap();
    let second = cache.get_or_align(&source, Some(&points), &config).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        first,
        align_image_rgb(&source, Some(&points), &config).unwrap()
    );
    assert_eq!(cache.counts(), (1, 1));

    points[0][0] += 1.0;
    cache.get_or_align(&source, Some(&points), &config).unwrap();
    cache.get_or_align(&source, None, &config).unwrap();
    assert_eq!(cache.counts(), (1, 3));
    assert!(cache.get("../x").is_none());
    assert!(matches!(
        cache.put("ab", &first),
        Err(Error::InvalidInput(_))
    ));
}

fn loader_config(cache: Option<PathBuf>) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        workers: 3,
        prefetch_batches: 1,
        seed: 7,
        drop_last: false,
        flip_probability: 0.5,
        landmark_jitter: 0.0,
        align: AlignConfig::default(),
        cache_dir: cache,
    }
}

#[test]
fn landmark_jitter_has_the_requested_spread_in_eye_distances() {
    let points = [
        [40.0, 50.0],
        [80.0, 50.0],
        [60.0, 70.0],
        [45.0, 90.0],
        [75.0, 90.0],
    ];
    let mut rng = StdRng::seed_from_u64(3);
    let (sigma, eyes, draws) = (0.05f32, 40.0f32, 4000);
    let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0f64);
    for _ in 0..draws {
        let moved = jitter_landmarks(&points, sigma, &mut rng);
        for (m, p) in moved.iter().zip(&points) {
            for axis in 0..2 {
                let d = ((m[axis] - p[axis]) / eyes) as f64;
                sum += d;
                sum_sq += d * d;
                n += 1.0;
            }
        }
    }
    let mean = sum / n;
    let std = (sum_sq / n - mean * mean).sqrt();
    // 40,000 draws: the standard error of the mean is 0.05 / 200 = 2.5e-4.
    assert!(mean.abs() < 1e-3, "mean offset {mean}");
    assert!((std - sigma as f64).abs() < 2e-3, "spread {std}");
    assert_eq!(jitter_landmarks(&points, 0.0, &mut rng), points);
}

#[test]
fn loader_jitters_landmarks_reproducibly_and_rejects_a_wild_spread() {
    let (_dir, root) = fixture();
    let data = Dataset::from_folder(&root, None, 1).unwrap();
    let landmarks = Landmarks::parse(LANDMARKS, Path::new("lm.tsv")).unwrap();
    let jittered = LoaderConfig {
        landmark_jitter: 0.08,
        flip_probability: 0.0,
        ..loader_config(None)
    };
    let loader = BatchLoader::new(data.clone(), Some(landmarks.clone()), jittered).unwrap();
    let first: Vec<_> = loader.epoch(0).map(Result::unwrap).collect();
    let again: Vec<_> = loader.epoch(0).map(Result::unwrap).collect();
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.images, b.images);
    }
    let plain = LoaderConfig {
        flip_probability: 0.0,
        ..loader_config(None)
    };
    let plain = BatchLoader::new(data.clone(), Some(landmarks.clone()), plain).unwrap();
    let straight: Vec<_> = plain.epoch(0).map(Result::unwrap).collect();
    let mut moved = 0;
    for (j, s) in first.iter().zip(&straight) {
        assert_eq!(j.samples, s.samples);
        for (k, &index) in j.samples.iter().enumerate() {
            let range = k * ALIGNED_LEN..(k + 1) * ALIGNED_LEN;
            let has_points = landmarks.get(&data.samples[index].path).is_some();
            if j.images[range.clone()] != s.images[range] {
                assert!(has_points, "an image without landmarks changed");
                moved += 1;
            }
        }
    }
    assert!(moved >= 2, "only {moved} crops moved");

    let wild = LoaderConfig {
        landmark_jitter: 0.9,
        ..loader_config(None)
    };
    let err = BatchLoader::new(data, Some(landmarks), wild).err().unwrap();
    assert!(err.to_string().contains("landmark jitter"), "{err}");
}

#[test]
fn loader_covers_every_sample_once_deterministically_and_caches() {
    let (dir, root) = fixture();
    let data = Dataset::from_folder(&root, None, 1).unwrap();
    let landmarks = Landmarks::parse(LANDMARKS, Path::new("lm.tsv")).unwrap();
    let config = loader_config(Some(dir.path().join("cache")));
    let loader = BatchLoader::new(data.clone(), Some(landmarks.clone()), config).unwrap();
    assert_eq!(loader.batches_per_epoch(), 2);

    let epoch0: Vec<_> = loader.epoch(0).map(Result::unwrap).collect();
    assert_eq!(epoch0.iter().map(|b| b.len()).collect::<Vec<_>>(), [4, 2]);
    let mut seen: Vec<usize> = epoch0.iter().flat_map(|b| b.samples.clone()).collect();
    seen.sort();
    assert_eq!(seen, (0..6).collect::<Vec<_>>());
    assert_eq!(loader.cache_counts(), Some((0, 6)));

    // Same epoch again: same order, flips and pixels, now all from the cache.
    let again: Vec<_> = loader.epoch(0).map(Result::unwrap).collect();
    for (a, b) in epoch0.iter().zip(&again) {
        assert_eq!(
            (&a.samples, &a.flipped, &a.labels),
            (&b.samples, &b.flipped, &b.labels)
        );
        assert_eq!(a.images, b.images);
    }
    assert_eq!(loader.cache_counts(), Some((6, 6)));

    // A different epoch is shuffled differently (6! orders; this seed pair differs).
    let epoch1: Vec<usize> = loader.epoch(1).flat_map(|b| b.unwrap().samples).collect();
    assert_ne!(
        epoch1,
        epoch0
            .iter()
            .flat_map(|b| b.samples.clone())
            .collect::<Vec<_>>()
    );

    // Pixels equal the aligned image, mirrored where flipped; labels match the samples.
    let plain = LoaderConfig {
        cache_dir: None,
        ..loader_config(None)
    };
    let uncached = BatchLoader::new(data.clone(), Some(landmarks.clone()), plain).unwrap();
    let batch = uncached.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.images, epoch0[0].images);
    for (k, &index) in batch.samples.iter().enumerate() {
        let sample = &data.samples[index];
        assert_eq!(batch.labels[k], sample.label);
        let points = landmarks.get(&sample.path);
        let expected = align_image(
            &data.full_path(sample),
            points.as_ref(),
            &AlignConfig::default(),
        )
        .unwrap();
        let got = &batch.images[k * ALIGNED_LEN..(k + 1) * ALIGNED_LEN];
        for row in 0..3 * ALIGNED_SIZE {
            for x in 0..ALIGNED_SIZE {
                let source = if batch.flipped[k] {
                    ALIGNED_SIZE - 1 - x
                } else {
                    x
                };
                let (g, e) = (
                    got[row * ALIGNED_SIZE + x],
                    expected[row * ALIGNED_SIZE + source],
                );
                assert!((g - e).abs() <= 1.0 / 255.0 + 1e-6, "{g} vs {e}");
            }
        }
    }
}

#[test]
fn loader_reports_an_unreadable_image_and_stops_cleanly_when_dropped() {
    let (_dir, root) = fixture();
    std::fs::write(root.join("carol/broken.png"), b"garbage").unwrap();
    let data = Dataset::from_folder(&root, None, 1).unwrap();
    let config = LoaderConfig {
        batch_size: 1,
        ..loader_config(None)
    };
    let loader = BatchLoader::new(data, None, config).unwrap();
    let results: Vec<_> = loader.epoch(3).collect();
    assert_eq!(results.len(), 7);
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("broken.png"), "{}", errors[0]);

    // Taking one batch and dropping the rest must not hang.
    let mut epoch = loader.epoch(4);
    assert!(epoch.next().is_some());
    drop(epoch);
}
