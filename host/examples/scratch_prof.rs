use candle_core::{Device, Tensor, Var};
use facelock_host::model::depthwise::depthwise_conv2d;
use facelock_host::model::layers::{pointwise, prelu, prelu_reference, BatchNorm};
use facelock_host::model::ParamStore;
use std::time::Instant;
fn time(name: &str, x: &Var, f: impl Fn(&Tensor) -> Tensor) {
    let mut fw = 0.0;
    let mut bw = 0.0;
    for i in 0..4 {
        let t0 = Instant::now();
        let out = f(x.as_tensor());
        let s = out.sum_all().unwrap();
        let t1 = Instant::now();
        s.backward().unwrap();
        let t2 = Instant::now();
        if i > 0 {
            fw += (t1 - t0).as_secs_f64();
            bw += (t2 - t1).as_secs_f64();
        }
    }
    println!(
        "{name:<30} fwd {:7.1} ms  bwd {:7.1} ms",
        fw / 3.0 * 1e3,
        bw / 3.0 * 1e3
    );
}
fn main() {
    let b = 32;
    let c = 96;
    let mut store = ParamStore::new(0, &Device::Cpu);
    let x = Var::from_tensor(&store.uniform("x", &[b, c, 28, 28], 1.0).unwrap()).unwrap();
    let wide = Var::from_tensor(&store.uniform("w", &[b, c, 56, 56], 1.0).unwrap()).unwrap();
    let img = Var::from_tensor(&store.uniform("i", &[b, 3, 112, 112], 1.0).unwrap()).unwrap();
    let dw = store.uniform("dw", &[c, 1, 3, 3], 0.5).unwrap();
    let pw = store.uniform("pw", &[c, c, 1, 1], 0.1).unwrap();
    let stem = store.uniform("stem", &[48, 3, 3, 3], 0.1).unwrap();
    let slope = store.uniform("slope", &[c], 0.3).unwrap();
    let bn = BatchNorm::new(&mut store, "bn", c).unwrap();
    time("stem conv 3x3 s2", &img, |t| {
        t.conv2d(&stem, 1, 2, 1, 1).unwrap()
    });
    time("dw s2 ours", &wide, |t| {
        depthwise_conv2d(t, &dw, 2, 1).unwrap()
    });
    time("dw s1 ours", &x, |t| {
        depthwise_conv2d(t, &dw, 1, 1).unwrap()
    });
    time("dw s1 candle", &x, |t| t.conv2d(&dw, 1, 1, 1, c).unwrap());
    time("pointwise ours", &x, |t| pointwise(t, &pw).unwrap());
    time("pointwise candle", &x, |t| {
        t.conv2d(&pw, 0, 1, 1, 1).unwrap()
    });
    time("bn fused", &x, |t| bn.forward(t, true).unwrap());
    time("bn candle", &x, |t| bn.forward_reference(t, true).unwrap());
    time("prelu fused", &x, |t| prelu(t, &slope).unwrap());
    time("prelu candle", &x, |t| prelu_reference(t, &slope).unwrap());
    time("add", &x, |t| (t + t).unwrap());
}
