//! Train-step throughput, batch 64, 32×32×3, forward + backward + SGD update, of ResNet-18
//! (small-image stem, width 64) or ViT-Tiny (patch 4: 64 tokens + CLS, 192-d, 12 blocks).
//! Prints images/s from the median step time (the machine's noise skews a mean) and the
//! process's peak resident memory. Compare with `benches/torch_train_step.py` via
//! `benches/compare.sh`.
//!
//! cargo bench --bench train_step -- [resnet18|vit-tiny] [steps]

mod common;

use common::peak_rss_mb;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use selfsup::nn::backbone::ImageShape;
use selfsup::nn::{Arch, ModelConfig};
use selfsup::optim::{Optimizer, OptimizerConfig};

const WARMUP_STEPS: usize = 2;

fn main() {
    selfsup::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(10)
        .max(1);
    let vit = args.iter().any(|a| a == "vit-tiny");
    let (batch, side) = (64, 32);
    let device = Device::flex().autodiff();
    device.seed(0);
    let config = ModelConfig {
        arch: if vit { Arch::VitTiny } else { Arch::Resnet18 },
        ..ModelConfig::default()
    };
    let shape = ImageShape { channels: 3, side };
    let mut model = config.init(shape, &device);
    let name = if vit {
        "train_step_vit_tiny_p4_b64_32px"
    } else {
        "train_step_resnet18_b64_32px"
    };
    let mut optimizer = Optimizer::new(OptimizerConfig::default());
    let x = Tensor::<4>::random(
        [batch, 3, side, side],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut times = Vec::with_capacity(steps);
    for step in 0..steps + WARMUP_STEPS {
        let start = Instant::now();
        let loss = model.forward(x.clone()).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(
            0.01,
            0.01,
            model,
            grads,
            &selfsup::optim::ConstantLr::default(),
        );
        // Reading the loss back forces the step to finish.
        let _ = selfsup::host::to_f32(loss);
        if step >= WARMUP_STEPS {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"bench\": \"{name}\", \"framework\": \"selfsup\", \"images_per_s\": {:.2}, \"peak_rss_mb\": {:.0}, \"threads\": {}}}",
        batch as f64 / median,
        peak_rss_mb(),
        rayon::current_num_threads()
    );
}
