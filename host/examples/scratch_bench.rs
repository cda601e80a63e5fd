use candle_core::{Device, Tensor, Var};
use facelock_host::model::{MobileFaceNet, ModelConfig};
use facelock_host::train::Sgd;
use std::time::Instant;
fn main() {
    let width: f32 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(0.7);
    let batch: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(32);
    let config = ModelConfig::mobilefacenet(width);
    let model = MobileFaceNet::new(&config, 0, &Device::Cpu).unwrap();
    let vars: Vec<(String, Var)> = model
        .params()
        .trainable()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    let mut sgd = Sgd::new(vars, 0.9, 5e-4).unwrap();
    let images = Tensor::randn(0f32, 1.0, (batch, 3, 112, 112), &Device::Cpu).unwrap();
    for step in 0..4 {
        let t0 = Instant::now();
        let loss = model
            .forward(&images, true)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let t1 = Instant::now();
        let grads = loss.backward().unwrap();
        let t2 = Instant::now();
        sgd.step(&grads, 1e-3).unwrap();
        let t3 = Instant::now();
        println!(
            "step {step}: fwd {:?} bwd {:?} upd {:?} -> {:.1} img/s",
            t1 - t0,
            t2 - t1,
            t3 - t2,
            batch as f64 / (t3 - t0).as_secs_f64()
        );
    }
}
#[allow(dead_code)]
pub fn unused() {}
