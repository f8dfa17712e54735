//! Times forward / backward / optimizer step of the ResNet backbone on flex.
//! cargo run --release --example step_timing -- <width> <batch> <side> <channels>
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use selfsup::nn::ResNetConfig;
use selfsup::optim::{Optimizer, OptimizerConfig};

fn main() {
    selfsup::allocator::keep_freed_memory();
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (width, batch, side, ch) = (a[0], a[1], a[2], a[3]);
    let device = Device::flex().autodiff();
    let cfg = ResNetConfig {
        width,
        ..Default::default()
    };
    let mut model = cfg.init(ch, &device);
    let mut opt = Optimizer::new(OptimizerConfig::default());
    for i in 0..6 {
        let x = Tensor::<4>::random(
            [batch, ch, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let t0 = Instant::now();
        let y = model.forward(x);
        let loss = y.square().mean();
        let _ = loss.clone().into_scalar::<f32>();
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t2 = Instant::now();
        model = opt.step(
            0.01,
            0.01,
            model,
            grads,
            &selfsup::optim::ConstantLr::default(),
        );
        let _ = selfsup::host::to_f32(
            model
                .forward(Tensor::zeros([2, ch, side, side], &device))
                .detach(),
        );
        let t3 = Instant::now();
        if i > 0 {
            println!(
                "fwd {:.0} ms  bwd {:.0} ms  step+probe {:.0} ms  => {:.0} img/s",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                (t3 - t2).as_secs_f64() * 1e3,
                batch as f64 / (t2 - t0).as_secs_f64()
            );
        }
    }
}
