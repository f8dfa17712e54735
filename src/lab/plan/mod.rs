//! The memory planner (`selfsup plan`): what one training step of a recipe holds in memory and
//! how much it computes, counted from the shapes of the networks the recipe builds — and, on
//! request, one real step measured beside the count.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::method::vq_tokenizer::VqTokenizer;
use crate::method::{Method, MethodName, NoRuns, Pass, RunSource};
use crate::nn::backbone::ImageShape;
use crate::nn::cost::total;
use crate::optim::OptimizerKind;
use crate::recipe::{Overrides, Recipe};

mod measure;
pub use measure::{Measured, measure};

const F32: u64 = 4;

/// Parameters of the method's networks.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Params {
    /// Trained by the optimizer.
    pub trained: usize,
    /// Held but not trained: EMA targets and teachers, MoCo's queue, a frozen tokenizer, centres.
    pub frozen: usize,
}

/// Bytes of one training step, by what holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Memory {
    /// Every parameter and buffer of the method (trained and frozen).
    pub weights: u64,
    /// One gradient per trained parameter.
    pub gradients: u64,
    /// SGD / LARS velocity, or AdamW's two moments, per trained parameter.
    pub optimizer: u64,
    /// The batch's views.
    pub inputs: u64,
    /// What the trained passes keep for the backward pass.
    pub activations: u64,
    /// What the loss keeps (similarity matrices, logits).
    pub loss: u64,
    /// The largest transient: the gradients of a trained pass's widest layer's input and output,
    /// or the widest tensor of a pass without gradients.
    pub backward: u64,
    /// The most activations and gradients held together during the backward pass.
    pub backward_peak: u64,
}

impl Memory {
    /// Held between steps: weights and optimizer state.
    pub fn persistent(&self) -> u64 {
        self.weights + self.optimizer
    }

    /// The most a step allocates on top of what is held.
    pub fn step(&self) -> u64 {
        self.inputs + self.loss + self.backward_peak + self.backward
    }

    pub fn total(&self) -> u64 {
        self.persistent() + self.step()
    }
}

/// The plan of one training step.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub method: MethodName,
    pub model: String,
    pub channels: usize,
    pub image_side: usize,
    pub batch: usize,
    /// The side of each view.
    pub views: Vec<usize>,
    pub optimizer: OptimizerKind,
    pub params: Params,
    pub passes: Vec<Pass>,
    pub memory: Memory,
    /// Activation bytes per batch image (all its views), the part that grows with the batch.
    pub activations_per_image: u64,
    /// Forward multiply-accumulates of the whole encoder on one global view, every token
    /// through every block (its published size; a CLS-pooled pass, counted in `passes`, skips
    /// part of the last block).
    pub encoder_gmacs: f64,
    /// Floating-point operations per batch image in a training step: 2 per multiply-accumulate,
    /// the backward pass of a trained pass twice its forward.
    pub train_gflops_per_image: f64,
    /// The largest batch for a memory size, when asked.
    pub fit: Option<Fit>,
}

/// The largest batch whose step fits in a memory size.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Fit {
    pub memory: u64,
    pub largest_batch: Option<usize>,
}

/// The recipe a plan is for: `overrides` resolved, with the views set to `side` pixels when the
/// recipe crops to a fixed size.
pub fn plan_recipe(overrides: &Overrides, side: Option<usize>) -> Result<Recipe> {
    let Some(side) = side else {
        return Recipe::resolve(overrides);
    };
    let mut sized = overrides.clone();
    // Sets given by the caller come last, so they win.
    let mut sets = vec![format!("augment.size={side}")];
    let recipe = Recipe::resolve(overrides)?;
    if recipe.augment.local_crops > 0 && side >= 64 {
        // DINO's 96-px local crops of 224-px images, on the patch grid.
        let patch = if recipe.model.is_vit() {
            recipe.model.patch_size.max(1)
        } else {
            1
        };
        let local = (side * 96 / 224 / patch).max(1) * patch;
        sets.push(format!("augment.local_size={local}"));
    }
    sets.append(&mut sized.sets);
    sized.sets = sets;
    Recipe::resolve(&sized)
}

/// The recipe values that build `arch` as published: a ResNet at width 64 (with the ImageNet
/// stem for `large` images), a ViT preset at its own sizes (with 16-px patches for `large`
/// images). Later `--set` values still win.
pub fn published_arch(arch: &str, large: bool) -> Vec<String> {
    let mut sets = vec![format!("model.arch={arch}")];
    if arch.starts_with("resnet") {
        sets.push("model.width=64".into());
        if large {
            sets.push("model.stem=imagenet".into());
        }
    } else {
        sets.extend(["model.embed_dim=0", "model.depth=0", "model.heads=0"].map(String::from));
        if large {
            sets.push("model.patch_size=16".into());
        }
    }
    sets
}

/// The images a recipe trains on when no size is given: the bundled grayscale Fashion-MNIST at
/// 28 px or at the size the recipe resizes it to, else colour images at its crop or resize size.
pub fn default_shape(recipe: &Recipe) -> ImageShape {
    let bundled = recipe.data.path.is_empty();
    match (recipe.augment.size, recipe.data.image_size) {
        (0, 0) => ImageShape {
            channels: 1,
            side: 28,
        },
        (0, side) if bundled => ImageShape { channels: 1, side },
        (0, side) | (side, _) => ImageShape { channels: 3, side },
    }
}

/// Counts one training step of `recipe` on `batch` images of `shape`, and finds the largest
/// batch whose step fits in `fit` bytes when given.
pub fn plan(recipe: &Recipe, shape: ImageShape, batch: usize, fit: Option<u64>) -> Result<Plan> {
    if batch == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    recipe.model.validate_for(shape).map_err(Error::Recipe)?;
    // Autodiff, so that parameters say whether they are trained.
    let device = Device::flex().autodiff();
    crate::with_method!(recipe.method.name(), M => {
        let method = recipe.init_method::<M>(shape, &device, &PlanRuns::for_recipe(recipe))?;
        let params = count_params(&method);
        let mut planned = plan_method(&method, params, recipe, shape, batch);
        planned.fit = fit.map(|bytes| Fit {
            memory: bytes,
            largest_batch: largest_batch(|b| plan_method(&method, params, recipe, shape, b), bytes),
        });
        Ok(planned)
    })
}

fn plan_method<M: Method>(
    method: &M,
    params: Params,
    recipe: &Recipe,
    shape: ImageShape,
    batch: usize,
) -> Plan {
    let views: Vec<usize> = (0..recipe.augment.num_views())
        .map(|v| recipe.augment.view_side(v, shape.side))
        .collect();
    let step = method.step_cost(&views, batch);
    let states = match recipe.optim.kind {
        OptimizerKind::Adamw => 2,
        OptimizerKind::Sgd | OptimizerKind::Lars if recipe.optim.momentum > 0.0 => 1,
        OptimizerKind::Sgd | OptimizerKind::Lars => 0,
    };
    let b = batch as u64;
    let mut activations_per_image = 0;
    let (mut macs_trained, mut macs_frozen, mut widest) = (0, 0, 0);
    for pass in &step.passes {
        let cost = total(&pass.stages);
        let views = pass.views as u64;
        if pass.trained {
            activations_per_image += cost.saved * views * F32;
            macs_trained += cost.macs * views;
        } else {
            macs_frozen += cost.macs * views;
        }
        // A pass without gradients holds its widest tensor only while it runs; a trained pass
        // holds the gradients of its widest layer's input and output during the backward pass.
        let held = if pass.trained { 2 } else { 1 };
        widest = widest.max(held * cost.widest * views);
    }
    let inputs: u64 = views.iter().map(|s| (shape.channels * s * s) as u64).sum();
    let memory = Memory {
        weights: (params.trained + params.frozen) as u64 * F32,
        gradients: params.trained as u64 * F32,
        optimizer: params.trained as u64 * states * F32,
        inputs: inputs * b * F32,
        activations: activations_per_image * b,
        loss: step.loss * F32,
        backward: widest * b * F32,
        backward_peak: backward_peak(&step.passes, b),
    };
    let encoder = total(&method.encoder().model_costs(views[0])).macs;
    Plan {
        method: recipe.method.name(),
        model: recipe.model.describe(),
        channels: shape.channels,
        image_side: shape.side,
        batch,
        views,
        optimizer: recipe.optim.kind,
        params,
        passes: step.passes,
        memory,
        activations_per_image,
        encoder_gmacs: encoder as f64 / 1e9,
        train_gflops_per_image: 2.0 * (3 * macs_trained + macs_frozen) as f64 / 1e9,
        fit: None,
    }
}

/// The backward pass runs through the stages from the last to the first, freeing each stage's
/// activations and making its parameters' gradients: the most both hold at once, over the
/// moments between stages. (A ResNet keeps most activations in its first stages and has most
/// parameters in its last, so the peak falls in the middle.) Passes through one network share
/// its gradients.
fn backward_peak(passes: &[Pass], batch: u64) -> u64 {
    let trained: Vec<&Pass> = passes.iter().filter(|p| p.trained).collect();
    let stages = trained.iter().map(|p| p.stages.len()).max().unwrap_or(0);
    let kept = |i: usize| -> u64 {
        let per_image: u64 = trained
            .iter()
            .filter_map(|p| p.stages.get(i).map(|s| s.cost.saved * p.views as u64))
            .sum();
        per_image * batch * F32
    };
    let params = |i: usize| -> u64 {
        let most = trained
            .iter()
            .filter_map(|p| p.stages.get(i).map(|s| s.params));
        most.max().unwrap_or(0) as u64 * F32
    };
    (0..=stages)
        .map(|done_from| {
            let activations: u64 = (0..done_from).map(kept).sum();
            let gradients: u64 = (done_from..stages).map(params).sum();
            activations + gradients
        })
        .max()
        .unwrap_or(0)
}

/// The largest batch whose planned step fits in `bytes`, or `None` when not even one image does.
fn largest_batch(plan_at: impl Fn(usize) -> Plan, bytes: u64) -> Option<usize> {
    let fits = |b: usize| plan_at(b).memory.total() <= bytes;
    if !fits(1) {
        return None;
    }
    let mut hi = 2;
    while fits(hi) {
        hi *= 2;
        if hi > 1 << 30 {
            return Some(hi);
        }
    }
    let mut lo = hi / 2;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    Some(lo)
}

fn count_params<M: Module>(module: &M) -> Params {
    struct Count(Params);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.shape().num_elements();
            if param.is_require_grad() {
                self.0.trained += n;
            } else {
                self.0.frozen += n;
            }
        }
    }
    let mut count = Count(Params::default());
    module.visit(&mut count);
    count.0
}

/// BEiT's tokenizer for a plan: the run the recipe names when it exists, else a fresh one of the
/// built-in tokenizer recipe on the encoder's patch grid (the shapes, and so the memory, of the
/// tokenizer such a run would train).
struct PlanRuns {
    patch_size: usize,
}

impl PlanRuns {
    fn for_recipe(recipe: &Recipe) -> Self {
        PlanRuns {
            patch_size: recipe.model.patch_size,
        }
    }
}

impl RunSource for PlanRuns {
    fn tokenizer(
        &self,
        path: &std::path::Path,
        shape: ImageShape,
        device: &Device,
    ) -> Result<VqTokenizer> {
        if path.join("recipe.toml").is_file() {
            return crate::run::Runs.tokenizer(path, shape, device);
        }
        let overrides = Overrides {
            method: Some(MethodName::VqTokenizer),
            sets: vec![format!("model.patch_size={}", self.patch_size)],
            ..Overrides::default()
        };
        Recipe::resolve(&overrides)?.init_method::<VqTokenizer>(shape, device, &NoRuns)
    }
}
