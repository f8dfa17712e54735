//! Train-step throughput, forward + backward + SGD update: batch 64 of 32×32×3 through ResNet-18
//! (small-image stem, width 64) or ViT-Tiny (patch 4: 64 tokens + CLS, 192-d, 12 blocks); batch 32
//! of 224×224×3 through ResNet-50 (ImageNet stem) or ViT-S/16 (196 tokens + CLS, 384-d).
//! Prints images/s from the median step time (the machine's noise skews a mean), the model
//! FLOPs per second that makes (6 × the forward's multiply-accumulates per image: the usual
//! forward + twice-as-costly backward; the whole model's, as PyTorch runs it), and the process's
//! peak resident memory. Compare with `benches/torch_train_step.py` via `benches/compare.sh`.
//!
//! cargo bench --bench train_step -- [resnet18|vit-tiny|resnet50-224|vit-s16-224] [steps]

mod common;

use common::peak_rss_mb;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use selfsup::nn::backbone::ImageShape;
use selfsup::nn::resnet::Stem;
use selfsup::nn::{Arch, ModelConfig};
use selfsup::optim::{Optimizer, OptimizerConfig};

const WARMUP_STEPS: usize = 2;

fn main() {
    selfsup::allocator::keep_freed_memory();
    // The steps on a pool thread with the other workers polling, as `selfsup train` runs them.
    selfsup::device::compute_on_this_thread();
    let _polling = selfsup::device::WorkersPolling::start();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps = common::steps_arg(&args);
    let model_name = args
        .iter()
        .find(|a| a.parse::<usize>().is_err())
        .map_or("resnet18", String::as_str);
    let base = ModelConfig::default();
    let (config, batch, side, name) = match model_name {
        "vit-tiny" => (
            ModelConfig {
                arch: Arch::VitTiny,
                ..base
            },
            64,
            32,
            "train_step_vit_tiny_p4_b64_32px",
        ),
        "resnet50-224" => (
            ModelConfig {
                arch: Arch::Resnet50,
                stem: Stem::Imagenet,
                ..base
            },
            32,
            224,
            "train_step_resnet50_b32_224px",
        ),
        "vit-s16-224" => (
            ModelConfig {
                arch: Arch::VitSmall,
                patch_size: 16,
                ..base
            },
            32,
            224,
            "train_step_vit_s16_b32_224px",
        ),
        "resnet18" => (base, 64, 32, "train_step_resnet18_b64_32px"),
        other => panic!(
            "train_step: unknown model {other} (resnet18, vit-tiny, resnet50-224, vit-s16-224)"
        ),
    };
    let device = Device::flex().autodiff();
    device.seed(0);
    let shape = ImageShape { channels: 3, side };
    let mut model = config.init(shape, &device);
    // The whole model, as PyTorch runs it (selfsup's CLS-pooled ViT skips the last block's other
    // rows): one count for both frameworks' rates.
    let stages = model.model_costs(side);
    let macs_per_image: u64 = stages.iter().map(|stage| stage.cost.macs).sum();
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
    let images_per_s = batch as f64 / median;
    println!(
        "{{\"bench\": \"{name}\", \"framework\": \"selfsup\", \"model\": \"{model_name}\", \"images_per_s\": {images_per_s:.2}, \"macs_per_image\": {macs_per_image}, \"gflops\": {:.1}, \"peak_rss_mb\": {:.0}, \"threads\": {}}}",
        6.0 * macs_per_image as f64 * images_per_s / 1e9,
        peak_rss_mb(),
        rayon::current_num_threads()
    );
}
