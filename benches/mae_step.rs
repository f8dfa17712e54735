//! MAE's compute saving: the median train step (forward, backward, AdamW update) of MAE at mask
//! ratio 0.75, where the encoder sees 16 of 64 patches, against the same model at ratio 0, where
//! it sees all 64 (the full-sequence step of the same encoder and decoder). Batch 128 of 32×32
//! single-channel images, the `mae` recipe's ViT (128-d × 6 blocks, patch 4) or ViT-Tiny.
//!
//! cargo bench --bench mae_step -- [recipe|vit-tiny] [steps]

mod common;

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use selfsup::method::{Mae, MethodName, Progress};
use selfsup::nn::Arch;
use selfsup::nn::backbone::ImageShape;
use selfsup::optim::Optimizer;
use selfsup::recipe::{MethodConfig, Overrides, Recipe};
use selfsup::train::loss_and_gradients;

const WARMUP_STEPS: usize = 2;

fn median_step(recipe: &Recipe, images: &Tensor<4>, steps: usize) -> f64 {
    let device = images.device();
    let shape = ImageShape {
        channels: 1,
        side: 32,
    };
    let mut mae: Mae = recipe
        .init_method(shape, &device, &selfsup::method::NoRuns)
        .expect("valid recipe");
    let mut optimizer = Optimizer::new(recipe.optim.clone());
    let mut times = Vec::with_capacity(steps);
    for step in 0..steps + WARMUP_STEPS {
        let start = Instant::now();
        let progress = Progress::at(step, steps + WARMUP_STEPS);
        let (out, grads) = loss_and_gradients(&mae, std::slice::from_ref(images), progress);
        mae = optimizer.step(
            1e-4,
            1e-4,
            mae,
            grads,
            &selfsup::optim::ConstantLr::default(),
        );
        let _ = selfsup::host::to_f32(out.loss);
        if step >= WARMUP_STEPS {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    selfsup::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps = common::steps_arg(&args);
    let tiny = args.iter().any(|a| a == "vit-tiny");
    let mut recipe = Recipe::resolve(&Overrides {
        method: Some(MethodName::Mae),
        ..Default::default()
    })
    .expect("built-in recipe");
    if tiny {
        recipe.model.arch = Arch::VitTiny;
        (
            recipe.model.embed_dim,
            recipe.model.depth,
            recipe.model.heads,
        ) = (0, 0, 0);
    }
    let batch = recipe.train.batch_size;
    let device = Device::flex().autodiff();
    device.seed(0);
    let images = Tensor::<4>::random([batch, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let masked = median_step(&recipe, &images, steps);
    let mut full = recipe.clone();
    if let MethodConfig::Mae(mae) = &mut full.method {
        mae.mask_ratio = 0.0;
    }
    let all = median_step(&full, &images, steps);
    println!(
        "{{\"bench\": \"mae_step_{}_b{batch}_32px\", \"ratio_0.75_s\": {masked:.4}, \"ratio_0_s\": {all:.4}, \"cost_fraction\": {:.3}, \"threads\": {}}}",
        if tiny { "vit_tiny" } else { "recipe_vit" },
        masked / all,
        rayon::current_num_threads()
    );
}
