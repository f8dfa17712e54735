//! 224-px train steps on the GPU (burn's Vulkan backend, the `gpu` feature): ResNet-50 with the
//! ImageNet stem and ViT-S/16, batch 64, forward + backward + SGD update, plus a 4096³ fp32
//! matrix product as the backend's ceiling. Prints one JSON line per row (median of 5 steps after
//! one that compiles the shaders; forward time measured on its own too). Compare with
//! `benches/torch_gpu_step.py` on the same machine.
//!
//! scripts/gpu_cargo.sh bench --bench gpu_step

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, DeviceKind, Distribution, Tensor};
use selfsup::nn::backbone::ImageShape;
use selfsup::nn::resnet::Stem;
use selfsup::nn::{Arch, ModelConfig};
use selfsup::optim::{ConstantLr, Optimizer, OptimizerConfig};

const STEPS: usize = 5;

/// Reading one value back waits for everything queued before it.
fn finish(t: Tensor<2>) {
    let _ = selfsup::host::to_f32(t.sum().reshape([1, 1]));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let gpu = Device::vulkan(DeviceKind::DefaultDevice);
    let n = 4096;
    let a = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &gpu);
    let b = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &gpu);
    finish(a.clone().matmul(b.clone()));
    let start = Instant::now();
    let mut acc = a.clone();
    for _ in 0..20 {
        acc = a.clone().matmul(b.clone()).mul_scalar(1e-3) + acc;
    }
    finish(acc);
    let tflops = 20.0 * 2.0 * (n as f64).powi(3) / start.elapsed().as_secs_f64() / 1e12;
    println!(
        "{{\"bench\": \"matmul_4096_f32\", \"framework\": \"selfsup\", \"tflops\": {tflops:.1}}}"
    );
    let batch = 64;
    for (name, arch) in [
        ("resnet50", Arch::Resnet50),
        ("vit_small_p16", Arch::VitSmall),
    ] {
        let device = gpu.clone().autodiff();
        let config = ModelConfig {
            arch,
            stem: Stem::Imagenet,
            patch_size: 16,
            ..ModelConfig::default()
        };
        let mut model = config.init(
            ImageShape {
                channels: 3,
                side: 224,
            },
            &device,
        );
        let mut optimizer = Optimizer::new(OptimizerConfig::default());
        let x = Tensor::<4>::random(
            [batch, 3, 224, 224],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let (mut forward, mut step) = (Vec::new(), Vec::new());
        for i in 0..=STEPS {
            let start = Instant::now();
            let y = model.forward(x.clone());
            finish(y.clone().detach());
            let forward_s = start.elapsed().as_secs_f64();
            let loss = y.square().mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(0.01, 0.01, model, grads, &ConstantLr::default());
            let _ = selfsup::host::to_f32(loss);
            if i > 0 {
                forward.push(forward_s);
                step.push(start.elapsed().as_secs_f64());
            }
        }
        let (f, s) = (median(forward), median(step));
        println!(
            "{{\"bench\": \"train_step_{name}_b{batch}_224px\", \"framework\": \"selfsup\", \"images_per_s\": {:.1}, \"forward_s\": {f:.4}, \"step_s\": {s:.4}}}",
            batch as f64 / s
        );
    }
}
