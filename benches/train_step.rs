//! Train-step throughput: ResNet-18 (small-image stem, width 64), batch 64, 32×32×3; forward,
//! backward and SGD update. Compare with `benches/torch_train_step.py` via `benches/compare.sh`.
//!
//! cargo bench --bench train_step -- [steps]

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use selfsup::nn::ResNetConfig;
use selfsup::optim::{Optimizer, OptimizerConfig};

fn main() {
    let steps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let (batch, side) = (64, 32);
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut model = ResNetConfig::default().init(3, &device);
    let mut optimizer = Optimizer::new(OptimizerConfig::default());
    let x = Tensor::<4>::random(
        [batch, 3, side, side],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut timed = 0.0;
    for step in 0..steps + 2 {
        let start = Instant::now();
        let loss = model.forward(x.clone()).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.01, 0.01, model, grads, &[]);
        // Reading a parameter back forces the step to finish.
        let _ = selfsup::host::to_f32(loss);
        if step >= 2 {
            timed += start.elapsed().as_secs_f64();
        }
    }
    let ips = (steps * batch) as f64 / timed;
    println!(
        "{{\"bench\": \"train_step_resnet18_b64_32px\", \"framework\": \"selfsup\", \"images_per_s\": {ips:.2}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
}
