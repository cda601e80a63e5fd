//! Checks of the loss heads: finite differences, fused vs reference, candle backward, errors.
use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::fused_cpu::{self, Problem};
use super::reference::{self, loss_and_grads_f64};
use super::*;

/// Random features [b, d], weights [c, d] and labels, reproducible from `seed`.
fn random_problem(b: usize, d: usize, c: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let x = (0..b * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let w = (0..c * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let y = (0..b).map(|_| rng.random_range(0..c as u32)).collect();
    (x, w, y)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// ‖a − b‖ / ‖b‖.
fn relative_error(a: &[f32], b: &[f64]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm).sqrt()
}

#[test]
fn reference_gradients_match_central_finite_differences() {
    // (batch, dim, classes, scale, margin)
    for (b, d, c, s, m) in [
        (3, 4, 5, 1.0, 0.0),
        (4, 6, 7, 30.0, 0.35),
        (2, 5, 13, 10.0, 0.2),
    ] {
        let (x, w, y) = random_problem(b, d, c, 7 + c as u64);
        let (x, w) = (widen(&x), widen(&w));
        let exact = loss_and_grads_f64(&x, &w, &y, d, s, m);
        let h = 1e-6;
        let numeric = |values: &[f64], which: usize| -> Vec<f64> {
            (0..values.len())
                .map(|k| {
                    let mut plus = values.to_vec();
                    let mut minus = values.to_vec();
                    plus[k] += h;
                    minus[k] -= h;
                    let loss = |v: &[f64]| match which {
                        0 => loss_and_grads_f64(v, &w, &y, d, s, m).loss,
                        _ => loss_and_grads_f64(&x, v, &y, d, s, m).loss,
                    };
                    (loss(&plus) - loss(&minus)) / (2.0 * h)
                })
                .collect()
        };
        for (analytic, numeric, name) in [
            (&exact.d_features, numeric(&x, 0), "dX"),
            (&exact.d_weights, numeric(&w, 1), "dW"),
        ] {
            for (k, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
                let tolerance = 1e-6 * (1.0 + n.abs()) * s;
                assert!(
                    (a - n).abs() < tolerance,
                    "{name}[{k}] b={b} c={c}: {a} vs {n}"
                );
            }
        }
    }
}

#[test]
fn fused_cpu_matches_reference_within_1e_5() {
    // (batch, dim, classes, scale, margin, tile): classes not a multiple of the tile included.
    let cases = [
        (5, 8, 37, 30.0, 0.35, 16),
        (16, 32, 50, 30.0, 0.35, 16),
        (7, 64, 300, 10.0, 0.2, 64),
        (33, 16, 129, 1.0, 0.0, 0),
        (4, 12, 3, 64.0, 0.5, 16),
    ];
    for (b, d, c, s, m, tile) in cases {
        let (x, w, y) = random_problem(b, d, c, (b * 1000 + c) as u64);
        let p = Problem {
            features: &x,
            weights: &w,
            labels: &y,
            batch: b,
            dim: d,
            classes: c,
            scale: s,
            margin: m,
            tile,
        };
        let fwd = fused_cpu::forward(&p).unwrap();
        let (mut dx, mut dw) = (vec![0f32; b * d], vec![0f32; c * d]);
        fused_cpu::backward(&p, &fwd.lse, 1.0, &mut dx, &mut dw).unwrap();
        let exact = loss_and_grads_f64(&widen(&x), &widen(&w), &y, d, s.into(), m.into());
        let loss_error = (f64::from(fwd.loss) - exact.loss).abs() / exact.loss.abs();
        assert!(
            loss_error < 1e-5,
            "loss b={b} c={c}: {} vs {}",
            fwd.loss,
            exact.loss
        );
        assert!(
            relative_error(&dx, &exact.d_features) < 1e-5,
            "dX b={b} c={c}"
        );
        assert!(
            relative_error(&dw, &exact.d_weights) < 1e-5,
            "dW b={b} c={c}"
        );
    }
}

#[test]
fn fused_cpu_agrees_across_thread_counts_and_tiles() {
    let (b, d, c) = (9, 16, 1000);
    let (x, w, y) = random_problem(b, d, c, 3);
    let run = |threads: usize, tile: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let p = Problem {
                features: &x,
                weights: &w,
                labels: &y,
                batch: b,
                dim: d,
                classes: c,
                scale: 30.0,
                margin: 0.35,
                tile,
            };
            let fwd = fused_cpu::forward(&p).unwrap();
            let (mut dx, mut dw) = (vec![0f32; b * d], vec![0f32; c * d]);
            fused_cpu::backward(&p, &fwd.lse, 1.0, &mut dx, &mut dw).unwrap();
            (fwd.loss, dx, dw)
        })
    };
    let (loss1, dx1, dw1) = run(1, 1000);
    let (loss3, dx3, dw3) = run(3, 48);
    assert!((loss1 - loss3).abs() < 1e-5 * loss1.abs());
    assert!(relative_error(&dx3, &widen(&dx1)) < 1e-5);
    assert!(relative_error(&dw3, &widen(&dw1)) < 1e-5);
}

fn tensors(b: usize, d: usize, c: usize, seed: u64) -> (Tensor, Tensor, Tensor) {
    let (x, w, y) = random_problem(b, d, c, seed);
    let dev = Device::Cpu;
    (
        Tensor::from_vec(x, (b, d), &dev).unwrap(),
        Tensor::from_vec(w, (c, d), &dev).unwrap(),
        Tensor::from_vec(y, b, &dev).unwrap(),
    )
}

#[test]
fn scale_one_margin_zero_is_cross_entropy_on_cosines() {
    let (x, w, y) = tensors(6, 10, 11, 5);
    let fused = am_softmax_loss_tiled(&x, &w, &y, 1.0, 0.0, 4)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();

    // Independent path: explicit cosines, candle-nn's cross-entropy.
    let unit = |t: &Tensor| t.broadcast_div(&t.sqr()?.sum_keepdim(1)?.sqrt()?);
    let cos = unit(&x)
        .unwrap()
        .matmul(&unit(&w).unwrap().t().unwrap())
        .unwrap();
    let expected = candle_nn::loss::cross_entropy(&cos, &y)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((fused - expected).abs() < 1e-6, "{fused} vs {expected}");
}

#[test]
fn candle_backward_gives_reference_gradients() {
    let (b, d, c) = (8, 12, 45);
    let (x, w, y) = tensors(b, d, c, 11);
    let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());

    // Upstream gradient 2.5 and an extra path through W: checks chaining, not just dL/dL = 1.
    let loss = am_softmax_loss_tiled(&xv, &wv, &y, 30.0, 0.35, 16).unwrap();
    let total = ((loss.clone() * 2.5).unwrap() + wv.sum_all().unwrap()).unwrap();
    let grads = total.backward().unwrap();
    let dx = grads
        .get(&xv)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let dw = grads
        .get(&wv)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();

    let xs = widen(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    let ws = widen(&w.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    let labels = y.to_vec1::<u32>().unwrap();
    let exact = loss_and_grads_f64(&xs, &ws, &labels, d, 30.0, 0.35);
    let exact_dx: Vec<f64> = exact.d_features.iter().map(|g| 2.5 * g).collect();
    let exact_dw: Vec<f64> = exact.d_weights.iter().map(|g| 2.5 * g + 1.0).collect();
    let loss = f64::from(loss.to_scalar::<f32>().unwrap());
    assert!((loss - exact.loss).abs() < 1e-5 * exact.loss);
    assert!(relative_error(&dx, &exact_dx) < 1e-5, "dX");
    assert!(relative_error(&dw, &exact_dw) < 1e-5, "dW");
}

#[test]
fn naive_candle_graph_matches_fused() {
    let (x, w, y) = tensors(10, 16, 70, 13);
    let fused = am_softmax_loss(&x, &w, &y, 30.0, 0.35)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let naive = reference::candle_graph_loss(&x, &w, &y, 30.0, 0.35).unwrap();
    let naive = naive.to_scalar::<f32>().unwrap();
    assert!(
        (fused - naive).abs() < 1e-5 * naive.abs(),
        "{fused} vs {naive}"
    );
}

#[test]
fn softmax_loss_is_cross_entropy_of_affine_logits() {
    let (x, w, y) = tensors(5, 6, 9, 17);
    let bias = Tensor::arange(0f32, 9.0, &Device::Cpu)
        .unwrap()
        .affine(0.1, -0.3)
        .unwrap();
    let loss = softmax_loss(&x, &w, &bias, &y)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();

    // By hand: mean over rows of logsumexp(z) − z[y].
    let logits = x
        .matmul(&w.t().unwrap())
        .unwrap()
        .broadcast_add(&bias)
        .unwrap();
    let rows = logits.to_vec2::<f32>().unwrap();
    let labels = y.to_vec1::<u32>().unwrap();
    let expected: f32 = rows
        .iter()
        .zip(&labels)
        .map(|(z, &l)| z.iter().map(|v| v.exp()).sum::<f32>().ln() - z[l as usize])
        .sum::<f32>()
        / 5.0;
    assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
}

#[test]
fn top1_correct_matches_brute_force_over_several_tiles() {
    let (b, d, c) = (40, 8, 9000);
    let (x, w, _) = tensors(b, d, c, 19);
    let bias = Tensor::arange(0f32, c as f32, &Device::Cpu)
        .unwrap()
        .affine(1e-4, 0.0)
        .unwrap();
    let xs = x.to_vec2::<f32>().unwrap();
    let ws = w.to_vec2::<f32>().unwrap();
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    let argmax = |i: usize, normalised: bool| {
        (0..c)
            .map(|j| {
                let dot: f32 = xs[i].iter().zip(&ws[j]).map(|(a, b)| a * b).sum();
                if normalised {
                    dot / norm(&ws[j])
                } else {
                    dot + 1e-4 * j as f32
                }
            })
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (j, v)| {
                if v > best.1 {
                    (j, v)
                } else {
                    best
                }
            })
            .0 as u32
    };
    // Labels: the true argmax for even rows, something else for odd rows.
    for (head, normalised) in [(Head::default(), true), (Head::Softmax, false)] {
        let labels: Vec<u32> = (0..b)
            .map(|i| {
                if i % 2 == 0 {
                    argmax(i, normalised)
                } else {
                    argmax(i, normalised) ^ 1
                }
            })
            .collect();
        let y = Tensor::from_vec(labels, b, &Device::Cpu).unwrap();
        let correct = top1_correct(&head, &x, &w, Some(&bias), &y).unwrap();
        assert_eq!(correct, b / 2, "{head:?}");
    }
}

#[test]
fn bad_inputs_give_clear_errors() {
    let (x, w, y) = tensors(4, 5, 6, 23);
    let message = |r: candle_core::Result<Tensor>| r.unwrap_err().to_string();

    let bad_labels = Tensor::new(&[0u32, 1, 6, 2], &Device::Cpu).unwrap();
    let text = message(am_softmax_loss(&x, &w, &bad_labels, 30.0, 0.35));
    assert!(text.contains("label 6 of row 2 is out of range"), "{text}");

    let empty = Tensor::zeros((0, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
    let no_labels = Tensor::zeros(0, candle_core::DType::U32, &Device::Cpu).unwrap();
    let text = message(am_softmax_loss(&empty, &w, &no_labels, 30.0, 0.35));
    assert!(text.contains("empty batch"), "{text}");

    let zero_row = x
        .slice_assign(
            &[1..2, 0..5],
            &Tensor::zeros((1, 5), candle_core::DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
    let text = message(am_softmax_loss(&zero_row, &w, &y, 30.0, 0.35));
    assert!(text.contains("row 1 of features has zero"), "{text}");
    let zero_class = w
        .slice_assign(
            &[3..4, 0..5],
            &Tensor::zeros((1, 5), candle_core::DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
    let text = message(am_softmax_loss(&x, &zero_class, &y, 30.0, 0.35));
    assert!(text.contains("row 3 of weights has zero"), "{text}");

    let narrow = w.narrow(1, 0, 4).unwrap();
    let text = message(am_softmax_loss(&x, &narrow, &y, 30.0, 0.35));
    assert!(text.contains("does not match weights dim"), "{text}");
    let short = y.narrow(0, 0, 3).unwrap();
    let text = message(am_softmax_loss(&x, &w, &short, 30.0, 0.35));
    assert!(text.contains("labels has shape [3]"), "{text}");
}

#[test]
fn loss_and_grads_without_autograd_match_reference() {
    let (b, d, c) = (6, 10, 33);
    let (x, w, y) = tensors(b, d, c, 29);
    let (loss, dx, dw) = am_softmax_loss_and_grads(&x, &w, &y, 30.0, 0.35).unwrap();
    let xs = widen(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    let ws = widen(&w.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    let exact = loss_and_grads_f64(&xs, &ws, &y.to_vec1::<u32>().unwrap(), d, 30.0, 0.35);
    let loss = f64::from(loss.to_scalar::<f32>().unwrap());
    assert!((loss - exact.loss).abs() < 1e-5 * exact.loss);
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(dx.dims(), [b, d]);
    assert_eq!(dw.dims(), [c, d]);
    assert!(relative_error(&flat(&dx), &exact.d_features) < 1e-5);
    assert!(relative_error(&flat(&dw), &exact.d_weights) < 1e-5);
}
