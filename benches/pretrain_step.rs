//! Where a shipped recipe's train step spends its time: the median over steps of each phase —
//! the method's loss and its gradients (forward and backward, as training takes them: MAE's
//! from two halves of the batch on separate threads), the optimizer update and the after-step
//! work (EMA blend, queue, teacher) — for a built-in recipe on the
//! bundled subset's shape: BYOL, SimCLR, MoCo v2 (ResNet-18 small stem, width 8, batch 128,
//! 28×28×1), MAE (ViT 128-d × 6 on 32 px, batch 128), DINO (ViT 64-d × 4, 2 × 32-px + 2 × 16-px
//! crops, batch 64). Random images: the step's cost does not depend on their values.
//!
//! cargo bench --bench pretrain_step -- [byol|simclr|moco-v2|mae|dino] [steps]

mod common;

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use selfsup::method::{Byol, Dino, Mae, Method, MethodName, Moco, Progress, SimClr};
use selfsup::nn::backbone::ImageShape;
use selfsup::optim::Optimizer;
use selfsup::recipe::{Overrides, Recipe};
use selfsup::train::loss_and_gradients;

const WARMUP_STEPS: usize = 2;
const PHASES: [&str; 3] = ["loss_and_gradients", "optimizer", "after_step"];

fn phases<M: Method>(recipe: &Recipe, steps: usize) -> Vec<f64> {
    let device = Device::flex().autodiff();
    device.seed(0);
    let side = recipe.image_size().unwrap_or(28);
    let shape = ImageShape { channels: 1, side };
    let batch = recipe.train.batch_size;
    let peak_lr = recipe.optim.base_lr * batch as f64 / 256.0;
    let mut method: M = recipe
        .init_method(shape, &device, &selfsup::method::NoRuns)
        .expect("valid recipe");
    let mut optimizer = Optimizer::new(recipe.optim.clone());
    let views: Vec<Tensor<4>> = (0..recipe.augment.num_views())
        .map(|i| {
            let s = if i < recipe.augment.global_views() {
                side
            } else {
                recipe.augment.local_size
            };
            Tensor::random([batch, 1, s, s], Distribution::Normal(0.0, 1.0), &device)
        })
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); PHASES.len()];
    for step in 0..steps + WARMUP_STEPS {
        let progress = Progress::at(step, steps + WARMUP_STEPS);
        let mut marks = [Instant::now(); PHASES.len() + 1];
        let (out, grads) = loss_and_gradients(&method, &views, progress);
        marks[1] = Instant::now();
        // The recipe's peak rate: an AdamW step at a rate far above it saturates the ViTs'
        // softmax within a few steps, and the denormal gradients that follow are slow to multiply.
        method = optimizer.step(
            peak_lr,
            peak_lr,
            method,
            grads,
            &selfsup::optim::ConstantLr::default(),
        );
        marks[2] = Instant::now();
        method = method.after_step(out.carry, progress);
        marks[3] = Instant::now();
        if step >= WARMUP_STEPS {
            for (phase, pair) in times.iter_mut().zip(marks.windows(2)) {
                phase.push((pair[1] - pair[0]).as_secs_f64());
            }
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

fn main() {
    selfsup::allocator::keep_freed_memory();
    // The steps on a pool thread, as `selfsup train` runs them.
    selfsup::device::compute_on_this_thread();
    let _polling = selfsup::device::WorkersPolling::start();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps = common::steps_arg(&args);
    let name = args
        .iter()
        .find_map(|a| a.parse::<MethodName>().ok())
        .unwrap_or(MethodName::Byol);
    let recipe = Recipe::resolve(&Overrides {
        method: Some(name),
        ..Default::default()
    })
    .expect("built-in recipe");
    let times = match name {
        MethodName::Simclr => phases::<SimClr>(&recipe, steps),
        MethodName::MocoV2 => phases::<Moco>(&recipe, steps),
        MethodName::Byol => phases::<Byol>(&recipe, steps),
        MethodName::Mae => phases::<Mae>(&recipe, steps),
        MethodName::Dino => phases::<Dino>(&recipe, steps),
        other => panic!("pretrain_step measures byol, simclr, moco-v2, mae and dino, not {other}"),
    };
    let total: f64 = times.iter().sum();
    let breakdown: Vec<String> = PHASES
        .iter()
        .zip(&times)
        .map(|(phase, t)| format!("\"{phase}_ms\": {:.1}", t * 1e3))
        .collect();
    println!(
        "{{\"bench\": \"pretrain_step_{name}\", \"framework\": \"selfsup\", \"images_per_s\": {:.1}, {}, \"threads\": {}}}",
        recipe.train.batch_size as f64 / total,
        breakdown.join(", "),
        rayon::current_num_threads()
    );
}
