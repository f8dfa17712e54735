//! Train-step throughput, batch 64, 32×32×3, forward + backward + SGD update, of ResNet-18
//! (small-image stem, width 64) or ViT-Tiny (patch 4: 64 tokens + CLS, 192-d, 12 blocks).
//! Compare with `benches/torch_train_step.py` via `benches/compare.sh`.
//!
//! cargo bench --bench train_step -- [resnet18|vit-tiny] [steps]

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use selfsup::nn::backbone::ImageShape;
use selfsup::nn::{Arch, ModelConfig};
use selfsup::optim::{Optimizer, OptimizerConfig};

fn main() {
    selfsup::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10);
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
        "{{\"bench\": \"{name}\", \"framework\": \"selfsup\", \"images_per_s\": {ips:.2}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
}
