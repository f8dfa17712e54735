//! One real training step measured beside its plan (`selfsup plan --measure`).

use burn::tensor::{Device, Distribution, Tensor};
use serde::Serialize;

use super::{Plan, PlanRuns, plan};
use crate::allocator::MemoryMeter;
use crate::error::Result;
use crate::method::{Method, Progress};
use crate::nn::backbone::ImageShape;
use crate::optim::Optimizer;
use crate::recipe::Recipe;

/// One real step measured beside the plan.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Measured {
    pub batch: usize,
    /// Held after a step: weights, optimizer state (and whatever the kernels cache).
    pub persistent: u64,
    /// The most a step allocated on top of that.
    pub step: u64,
    pub planned_persistent: u64,
    pub planned_step: u64,
}

impl Measured {
    pub fn total(&self) -> u64 {
        self.persistent + self.step
    }

    pub fn planned_total(&self) -> u64 {
        self.planned_persistent + self.planned_step
    }

    /// Planned over measured peak, minus one.
    pub fn error(&self) -> f64 {
        self.planned_total() as f64 / self.total() as f64 - 1.0
    }
}

/// Runs two real training steps of `recipe` on random `batch`-image views on the CPU and
/// measures the second with `meter` (the process's allocator must be counting).
pub fn measure(
    recipe: &Recipe,
    shape: ImageShape,
    batch: usize,
    meter: &dyn MemoryMeter,
) -> Result<Measured> {
    let plan = plan(recipe, shape, batch, None)?;
    let device = Device::flex().autodiff();
    let before = meter.live();
    let (persistent, step) = crate::with_method!(recipe.method.name(), M => {
        let method = recipe.init_method::<M>(shape, &device, &PlanRuns::for_recipe(recipe))?;
        let mut optimizer = Optimizer::new(recipe.optim.clone());
        let method = train_step(method, &mut optimizer, &plan, &device, 0);
        let held = meter.live();
        meter.reset_peak();
        let method = train_step(method, &mut optimizer, &plan, &device, 1);
        let step = meter.peak().saturating_sub(held);
        drop(method);
        (held.saturating_sub(before), step)
    });
    Ok(Measured {
        batch,
        persistent: persistent as u64,
        step: step as u64,
        planned_persistent: plan.memory.persistent(),
        planned_step: plan.memory.step(),
    })
}

fn train_step<M: Method>(
    method: M,
    optimizer: &mut Optimizer,
    plan: &Plan,
    device: &Device,
    step: usize,
) -> M {
    let views: Vec<Tensor<4>> = plan
        .views
        .iter()
        .map(|&s| {
            let shape = [plan.batch, plan.channels, s, s];
            Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
        })
        .collect();
    let progress = Progress::at(step, 10);
    let (out, grads) = crate::train::loss_and_gradients(&method, &views, progress);
    let constant_lr = method.constant_lr();
    let method = optimizer.step(1e-3, 1e-3, method, grads, &constant_lr);
    method.after_step(out.carry, progress)
}
