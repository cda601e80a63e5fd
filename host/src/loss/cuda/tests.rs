//! NVRTC compile check (runs wherever libnvrtc loads) and CUDA-vs-CPU parity (needs a GPU).
use super::*;
#[cfg(feature = "cuda")]
use crate::loss::fused_cpu::{self, Problem};

#[test]
fn cuda_source_compiles_to_ptx_for_sm80_and_sm90() {
    if !nvrtc_available() {
        let required = std::env::var("FACELOCK_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "FACELOCK_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (source scripts/nvrtc-env.sh)"
        );
        eprintln!(
            "note: libnvrtc not found, PTX compile check skipped (source scripts/nvrtc-env.sh)"
        );
        return;
    }
    for arch in ["sm_80", "sm_90"] {
        let ptx = compile_ptx(Some(arch)).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert!(
            ptx.contains(&format!(".target {arch}")),
            "{arch}: wrong target in PTX"
        );
        for kernel in KERNELS {
            assert!(
                ptx.contains(&format!(".entry {kernel}")),
                "{arch}: no entry {kernel}"
            );
        }
    }
}

#[cfg(feature = "cuda")]
fn random(len: usize, seed: u64) -> Vec<f32> {
    // A small LCG: parity tests need varied values, not statistical quality.
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[cfg(feature = "cuda")]
fn relative(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm).sqrt()
}

#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_kernels_match_fused_cpu_within_1e_4() {
    let stream = device_stream(0).unwrap_or_else(|e| panic!("{e}"));
    let kernels = Kernels::new(stream.clone()).unwrap();
    // (batch, dim, classes): one tile, several tiles with a ragged last one.
    for (b, d, c) in [(7, 16, 100), (64, 128, 70_001), (256, 512, 40_000)] {
        let (x, w) = (random(b * d, 1), random(c * d, 2));
        let labels: Vec<u32> = (0..b).map(|i| ((i * 7919) % c) as u32).collect();
        let p = Params {
            batch: b,
            dim: d,
            classes: c,
            scale: 30.0,
            margin: 0.35,
        };

        let cpu = Problem {
            features: &x,
            weights: &w,
            labels: &labels,
            batch: b,
            dim: d,
            classes: c,
            scale: 30.0,
            margin: 0.35,
            tile: 0,
        };
        let fwd = fused_cpu::forward(&cpu).unwrap();
        let (mut dx, mut dw) = (vec![0f32; b * d], vec![0f32; c * d]);
        fused_cpu::backward(&cpu, &fwd.lse, 1.5, &mut dx, &mut dw).unwrap();

        let (xg, wg, lg) = (
            stream.clone_htod(&x).unwrap(),
            stream.clone_htod(&w).unwrap(),
            stream.clone_htod(&labels).unwrap(),
        );
        let (loss, lse) = kernels
            .forward(&xg.as_view(), &wg.as_view(), &lg.as_view(), p)
            .unwrap();
        let loss = stream.clone_dtoh(&loss).unwrap()[0];
        let flat = kernels
            .backward(&xg.as_view(), &wg.as_view(), &lg.as_view(), p, &lse, 1.5)
            .unwrap();
        let flat = stream.clone_dtoh(&flat).unwrap();

        assert!(
            (loss - fwd.loss).abs() <= 1e-4 * fwd.loss.abs(),
            "loss {loss} vs {}",
            fwd.loss
        );
        assert!(relative(&flat[..b * d], &dx) < 1e-4, "dX b={b} c={c}");
        assert!(relative(&flat[b * d..], &dw) < 1e-4, "dW b={b} c={c}");
    }
}

#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a CUDA GPU"]
fn zero_norm_row_on_gpu_is_a_clear_error() {
    let stream = device_stream(0).unwrap_or_else(|e| panic!("{e}"));
    let kernels = Kernels::new(stream.clone()).unwrap();
    let mut w = random(5 * 4, 3);
    w[8..12].fill(0.0);
    let (xg, wg, lg) = (
        stream.clone_htod(&random(2 * 4, 4)).unwrap(),
        stream.clone_htod(&w).unwrap(),
        stream.clone_htod(&[0u32, 1]).unwrap(),
    );
    let p = Params {
        batch: 2,
        dim: 4,
        classes: 5,
        scale: 30.0,
        margin: 0.35,
    };
    let err = kernels
        .forward(&xg.as_view(), &wg.as_view(), &lg.as_view(), p)
        .err()
        .unwrap();
    assert!(err.to_string().contains("row 2 of weights"), "{err}");
}

/// The candle op end to end on the GPU: loss.backward() gives the CPU gradients.
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a CUDA GPU"]
fn candle_op_on_cuda_matches_cpu_within_1e_4() {
    use candle_core::{Device, Tensor, Var};
    let gpu = Device::new_cuda(0).unwrap();
    let (b, d, c) = (32, 64, 50_000);
    let x = Tensor::from_vec(random(b * d, 5), (b, d), &Device::Cpu).unwrap();
    let w = Tensor::from_vec(random(c * d, 6), (c, d), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(
        (0..b as u32).map(|i| i * 997).collect::<Vec<_>>(),
        b,
        &Device::Cpu,
    )
    .unwrap();
    let run = |device: &Device| {
        let xv = Var::from_tensor(&x.to_device(device).unwrap()).unwrap();
        let wv = Var::from_tensor(&w.to_device(device).unwrap()).unwrap();
        let loss =
            crate::loss::am_softmax_loss(&xv, &wv, &y.to_device(device).unwrap(), 30.0, 0.35)
                .unwrap();
        let grads = loss.backward().unwrap();
        let flat = |t: &Tensor| {
            t.flatten_all()
                .unwrap()
                .to_device(&Device::Cpu)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        (
            loss.to_device(&Device::Cpu)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            flat(grads.get(&xv).unwrap()),
            flat(grads.get(&wv).unwrap()),
        )
    };
    let (loss_cpu, dx_cpu, dw_cpu) = run(&Device::Cpu);
    let (loss_gpu, dx_gpu, dw_gpu) = run(&gpu);
    assert!((loss_cpu - loss_gpu).abs() <= 1e-4 * loss_cpu.abs());
    assert!(relative(&dx_gpu, &dx_cpu) < 1e-4);
    assert!(relative(&dw_gpu, &dw_cpu) < 1e-4);
}
