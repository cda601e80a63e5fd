//! `facelock bench train`: training images per second of the backbone + AM-Softmax head, and
//! a per-layer-type profile (ours against plain candle ops).
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use clap::Args;
use facelock_host::model::depthwise::depthwise_conv2d;
use facelock_host::model::layers::{prelu, prelu_reference, BatchNorm};
use facelock_host::model::pointwise::pointwise_conv;
use facelock_host::model::{MobileFaceNet, ModelConfig, ParamStore};
use facelock_host::train::head::ClassifierHead;
use facelock_host::train::synthetic::SyntheticIdentities;
use facelock_host::train::{HeadConfig, LossKind, Objective, Sgd};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Arguments of `facelock bench train`.
#[derive(Args)]
pub struct TrainBench {
    /// Width multiplier of the MobileFaceNet layout.
    #[arg(long, default_value_t = 0.7)]
    width: f32,
    /// Batch sizes to measure.
    #[arg(long, num_args = 1.., default_values_t = [32usize, 64])]
    batch: Vec<usize>,
    /// Timed steps per batch size (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Classes of the AM-Softmax head.
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// Also time each layer type forward + backward, ours against plain candle ops.
    #[arg(long)]
    profile: bool,
}

impl TrainBench {
    /// Runs the benchmark and prints the numbers.
    pub fn run(self) -> anyhow::Result<()> {
        facelock_host::train::allocator::tune_for_training();
        let device = Device::Cpu;
        let config = ModelConfig::mobilefacenet(self.width);
        crate::cmd::model::print_summary(&config);
        println!("threads: {}", rayon::current_num_threads());
        let model = MobileFaceNet::new(&config, 0, &device)?;
        let head_config = HeadConfig {
            loss: LossKind::AmSoftmax,
            scale: 30.0,
            margin: 0.35,
            classes: self.classes,
        };
        let head = ClassifierHead::new(head_config, config.embedding_dim, 0, &device)?;
        let mut vars: Vec<(String, Var)> = model
            .params()
            .trainable()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        vars.extend(
            head.params()
                .trainable()
                .map(|(n, v)| (format!("head.{n}"), v.clone())),
        );
        let mut sgd = Sgd::new(vars, 0.9, 5e-4)?;
        let data = SyntheticIdentities {
            identities: self.classes,
            samples_per_identity: 1,
            size: 112,
            batch_size: 1,
            seed: 0,
        };

        for &batch in &self.batch {
            let labels: Vec<u32> = (0..batch).map(|i| (i % self.classes) as u32).collect();
            let sample = data.batch(&labels, &mut StdRng::seed_from_u64(1));
            let images = Tensor::from_vec(sample.images, (batch, 3, 112, 112), &device)?;
            let labels = Tensor::from_vec(labels, batch, &device)?;
            let (mut forward, mut backward, mut update) = (0.0, 0.0, 0.0);
            for step in 0..=self.steps {
                let t0 = Instant::now();
                let (loss, _) = head.loss(&model.forward(&images, true)?, &labels, 0.35)?;
                loss.to_scalar::<f32>()?;
                let t1 = Instant::now();
                let grads = loss.backward()?;
                let t2 = Instant::now();
                sgd.step(&grads, 1e-3)?;
                let t3 = Instant::now();
                if step > 0 {
                    forward += (t1 - t0).as_secs_f64();
                    backward += (t2 - t1).as_secs_f64();
                    update += (t3 - t2).as_secs_f64();
                }
            }
            let n = self.steps as f64;
            let total = forward + backward + update;
            println!(
                "batch {batch}: {:.1} train img/s ({:.0} ms/step: forward {:.0}, backward {:.0}, update {:.0})",
                batch as f64 * n / total,
                1e3 * total / n,
                1e3 * forward / n,
                1e3 * backward / n,
                1e3 * update / n
            );
        }
        if self.profile {
            profile(self.batch.first().copied().unwrap_or(32), self.width)?;
        }
        Ok(())
    }
}

/// Median milliseconds of forward + backward of `f` over 5 runs (after one warm-up).
fn time(input: &Var, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> anyhow::Result<f64> {
    let mut runs = Vec::new();
    for _ in 0..6 {
        let start = Instant::now();
        let out = f(input.as_tensor())?;
        out.sum_all()?.backward()?;
        runs.push(start.elapsed().as_secs_f64() * 1e3);
    }
    runs.remove(0);
    runs.sort_by(f64::total_cmp);
    Ok(runs[runs.len() / 2])
}

/// Forward + backward time per layer type at the shapes of the first bottleneck stage.
fn profile(batch: usize, width: f32) -> anyhow::Result<()> {
    let config = ModelConfig::mobilefacenet(width);
    let channels = config.scaled(64) * 2;
    let device = Device::Cpu;
    let mut store = ParamStore::new(0, &device);
    let x = Var::from_tensor(&store.uniform("x", &[batch, channels, 28, 28], 1.0)?)?;
    let wide = Var::from_tensor(&store.uniform("wide", &[batch, channels, 56, 56], 1.0)?)?;
    let dw = store.uniform("dw", &[channels, 1, 3, 3], 0.5)?;
    let pw = store.uniform("pw", &[channels, channels, 1, 1], 0.1)?;
    let slope = store.uniform("slope", &[channels], 0.3)?;
    let bn = BatchNorm::new(&mut store, "bn", channels)?;
    println!("profile: forward + backward, ms, input [{batch}, {channels}, h, w]");
    let rows: [(&str, f64, Option<f64>); 5] = [
        (
            "depthwise 3x3 s2 (56->28)",
            time(&wide, |t| depthwise_conv2d(t, &dw, 2, 1))?,
            Some(time(&wide, |t| t.conv2d(&dw, 1, 2, 1, channels))?),
        ),
        (
            "depthwise 3x3 s1 (28)",
            time(&x, |t| depthwise_conv2d(t, &dw, 1, 1))?,
            Some(time(&x, |t| t.conv2d(&dw, 1, 1, 1, channels))?),
        ),
        (
            "pointwise 1x1 (28)",
            time(&x, |t| pointwise_conv(t, &pw))?,
            Some(time(&x, |t| t.conv2d(&pw, 0, 1, 1, 1))?),
        ),
        (
            "batch norm (28)",
            time(&x, |t| bn.forward(t, true).map_err(into_candle))?,
            Some(time(&x, |t| {
                bn.forward_reference(t, true).map_err(into_candle)
            })?),
        ),
        (
            "prelu (28)",
            time(&x, |t| prelu(t, &slope).map_err(into_candle))?,
            Some(time(&x, |t| {
                prelu_reference(t, &slope).map_err(into_candle)
            })?),
        ),
    ];
    println!("{:<28} {:>10} {:>14}", "layer", "ours", "candle ops");
    for (name, ours, reference) in rows {
        let reference = reference.map_or("-".to_string(), |r| format!("{r:.1}"));
        println!("{name:<28} {ours:>10.1} {reference:>14}");
    }
    Ok(())
}

fn into_candle(error: facelock_host::Error) -> candle_core::Error {
    candle_core::Error::Msg(error.to_string())
}
