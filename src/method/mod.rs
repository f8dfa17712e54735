//! SSL methods, all behind one [`Method`] trait so the training loop never knows which it runs.

pub mod barlow_twins;
pub mod beit;
pub mod branch;
pub mod byol;
pub mod dino;
pub mod mae;
pub mod mim;
pub mod moco;
pub mod moco_v3;
pub mod simclr;
pub mod simmim;
pub mod simsiam;
mod table;
pub mod vicreg;
pub mod vq_tokenizer;

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::nn::backbone::ImageShape;
use crate::nn::cost::Stage;
use crate::nn::{Backbone, ModelConfig};
use crate::optim::ConstantLr;

pub use barlow_twins::BarlowTwins;
pub use beit::Beit;
pub use branch::Branch;
pub use byol::Byol;
pub use dino::Dino;
pub use mae::Mae;
pub use moco::Moco;
pub use moco_v3::MocoV3;
pub use simclr::SimClr;
pub use simmim::SimMim;
pub use simsiam::SimSiam;
pub use table::{MethodConfig, MethodName};
pub use vicreg::VicReg;
pub use vq_tokenizer::VqTokenizer;

/// **The table of methods** — adding a method is one line here (plus its `pub mod` above), its
/// file, and `recipes/<name>.toml`. Each line: the variant, the name recipes and the command line
/// use, and the type that implements it (one type may serve several names that differ only in
/// their recipes). The order is that of `selfsup methods`; `recipes/<name>.toml` is compiled in as
/// the method's built-in recipe.
#[macro_export]
macro_rules! method_table {
    ($($callback:tt)*) => {
        $crate::__method_table_apply! { [$($callback)*]
            Simclr = "simclr" => SimClr,
            MocoV1 = "moco-v1" => Moco,
            MocoV2 = "moco-v2" => Moco,
            MocoV3 = "moco-v3" => MocoV3,
            Byol = "byol" => Byol,
            Simsiam = "simsiam" => SimSiam,
            BarlowTwins = "barlow-twins" => BarlowTwins,
            Vicreg = "vicreg" => VicReg,
            Beit = "beit" => Beit,
            Mae = "mae" => Mae,
            Simmim = "simmim" => SimMim,
            VqTokenizer = "vq-tokenizer" => VqTokenizer,
            Dino = "dino" => Dino,
            Ibot = "ibot" => Dino,
            Dinov2 = "dinov2" => Dino,
        }
    };
}

/// A method's own settings: the fields of the recipe's `[method]` besides `name`.
pub trait Settings:
    Clone + std::fmt::Debug + Default + PartialEq + Serialize + DeserializeOwned + 'static
{
    /// Checks the values, each error naming the field (`method.<field> = … must …`) and the fix.
    fn validate(
        &self,
        model: &ModelConfig,
        augment: &AugmentConfig,
    ) -> std::result::Result<(), String>;
}

/// What a method needs from the model and the views (checked when the recipe is validated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// It works on a ViT's patch tokens (masked image modeling).
    pub vit: bool,
    /// How many global views each image becomes (one per `augment.blur_p` entry).
    pub global_views: usize,
    /// It reads multi-crop's local crops (`augment.local_crops`).
    pub local_crops: bool,
}

impl Needs {
    /// Two global views of any backbone: the joint-embedding methods.
    pub const TWO_VIEWS: Needs = Needs {
        vit: false,
        global_views: 2,
        local_crops: false,
    };
    /// One view of a ViT: masked image modeling.
    pub const MASKED_VIT: Needs = Needs {
        vit: true,
        global_views: 1,
        local_crops: false,
    };
}

/// A method's entry in `selfsup methods`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct About {
    /// The name papers use ("MoCo v2").
    pub title: &'static str,
    pub family: &'static str,
    /// What keeps its representations from collapsing.
    pub prevents_collapse: &'static str,
    /// Whether it needs negative pairs.
    pub negatives: bool,
}

/// What a method is built for, besides its own settings.
pub struct Build<'a> {
    pub name: MethodName,
    pub model: &'a ModelConfig,
    pub shape: ImageShape,
    pub epochs: usize,
    /// The run's seed (masks and other per-step draws derive from it).
    pub seed: u64,
    pub device: &'a Device,
    /// Where a method finds the runs it builds on (BEiT's tokenizer).
    pub runs: &'a dyn RunSource,
}

impl<'a> Build<'a> {
    /// For `name` on `model` and `shape` images: one epoch, seed 0, no other runs (tests and
    /// benchmarks).
    pub fn new(
        name: MethodName,
        model: &'a ModelConfig,
        shape: ImageShape,
        device: &'a Device,
    ) -> Self {
        Build {
            name,
            model,
            shape,
            epochs: 1,
            seed: 0,
            device,
            runs: &NoRuns,
        }
    }
}

/// Loads what a method builds on from another run directory.
pub trait RunSource {
    /// The frozen tokenizer of the `vq-tokenizer` run at `path`, for images of `shape`.
    fn tokenizer(&self, path: &Path, shape: ImageShape, device: &Device) -> Result<VqTokenizer>;
}

/// For methods built where no other run can be read.
pub struct NoRuns;

impl RunSource for NoRuns {
    fn tokenizer(&self, path: &Path, _shape: ImageShape, _device: &Device) -> Result<VqTokenizer> {
        Err(Error::Recipe(format!(
            "method.tokenizer = {}: no run directory can be read here",
            path.display()
        )))
    }
}

/// One network's forward pass in a training step, for the memory planner.
#[derive(Clone, Debug, Serialize)]
pub struct Pass {
    /// The network, e.g. "target: encoder + projector".
    pub network: &'static str,
    /// The images it runs on per batch image (the views it sees).
    pub views: usize,
    /// The cost of one of those images, stage by stage.
    pub stages: Vec<Stage>,
    /// Whether it keeps activations for the backward pass (a target or teacher does not).
    pub trained: bool,
}

impl Pass {
    pub fn trained(network: &'static str, views: usize, stages: Vec<Stage>) -> Self {
        Pass {
            network,
            views,
            stages,
            trained: true,
        }
    }

    pub fn frozen(network: &'static str, views: usize, stages: Vec<Stage>) -> Self {
        Pass {
            trained: false,
            ..Pass::trained(network, views, stages)
        }
    }
}

/// What one training step computes: its passes, and what its loss keeps for the whole batch.
#[derive(Clone, Debug, Serialize)]
pub struct StepCost {
    pub passes: Vec<Pass>,
    /// f32 values the loss keeps for the backward pass (similarity matrices, logits, …).
    pub loss: u64,
}

/// An MLP head as a row of a cost table.
pub fn head_stage(name: &str, head: &crate::nn::Mlp) -> Stage {
    Stage::new(
        name,
        crate::nn::cost::shape(&[head.out_dim()]),
        head.num_params(),
        head.cost(),
    )
}

/// How many views of each side `sides` holds, in order of first appearance.
pub fn views_by_side(sides: &[usize]) -> Vec<(usize, usize)> {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &side in sides {
        match groups.iter_mut().find(|(s, _)| *s == side) {
            Some((_, n)) => *n += 1,
            None => groups.push((side, 1)),
        }
    }
    groups
}

/// Where training stands, for schedules.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub step: usize,
    pub total_steps: usize,
    /// The position in the whole batch of these views' first image: non-zero for the second
    /// half of a batch stepped in halves ([`Method::JOIN_HALVES`]), so that per-image random
    /// draws (MAE's masks) are those of the whole batch.
    pub first_image: usize,
}

impl Progress {
    /// Step `step` of `total_steps`, on a whole batch.
    pub fn at(step: usize, total_steps: usize) -> Self {
        Progress {
            step,
            total_steps,
            first_image: 0,
        }
    }
}

/// One named part of a loss, detached, for the metrics log (VICReg's three terms, …).
pub struct LossTerm {
    pub name: &'static str,
    pub value: Tensor<1>,
}

/// What a method returns for one batch of views.
pub struct StepOutput<C> {
    /// Scalar loss, shape `[1]`, attached to the graph.
    pub loss: Tensor<1>,
    /// Detached embeddings of the first view (what collapse monitoring watches).
    pub embeddings: Tensor<2>,
    /// The loss's parts worth logging (empty when the loss has one part).
    pub terms: Vec<LossTerm>,
    /// What the step hands to [`Method::after_step`] (MoCo's new keys for its queue).
    pub carry: C,
    /// What else the training monitor watches on this batch.
    pub signals: Vec<Signal>,
}

/// Something besides the embeddings that tells whether a method is collapsing, detached.
pub enum Signal {
    /// A tokenizer's code ids: is the codebook in use?
    Codes(Codes),
    /// A self-distillation teacher's targets and the student's probabilities: is the teacher
    /// uniform, or stuck on a few prototypes?
    Distributions(Distributions),
}

/// Teacher targets and the student's probabilities for the same images, `[b, K]` each, detached.
pub struct Distributions {
    pub teacher: Tensor<2>,
    pub student: Tensor<2>,
}

/// Code ids assigned in a step, out of a codebook of `size`.
pub struct Codes {
    pub ids: Tensor<1, burn::tensor::Int>,
    pub size: usize,
}

impl StepOutput<()> {
    pub fn plain(loss: Tensor<1>, embeddings: Tensor<2>) -> Self {
        StepOutput {
            loss,
            embeddings,
            terms: Vec::new(),
            carry: (),
            signals: Vec::new(),
        }
    }
}

/// How the carries of two halves of a batch join into the whole batch's ([`Method::JOIN_HALVES`]).
pub type JoinCarries<C> = fn(C, C) -> C;

/// A self-supervised method: its networks plus what a training step needs from them.
pub trait Method: Module + Sized + Sync {
    /// Its `[method]` settings.
    type Config: Settings;
    /// State passed from `step` to `after_step`.
    type Carry: Send;

    /// What it needs from the model and the views.
    const NEEDS: Needs;

    /// Whether collapse diagnostics look at the embeddings around their mean
    /// ([`crate::diagnose::analyze_centred`]): for the ViT features masked image models expose,
    /// which carry a large offset shared by every image.
    const CENTRED_DIAGNOSTICS: bool = false;

    /// For a loss that is the mean of the same number of terms per image with nothing shared
    /// between images (LayerNorm networks; no negatives, BatchNorm or batch statistics): how
    /// the carries of two halves of a batch join. The trainer then runs the halves forward and
    /// backward on separate threads and adds their gradients, each weighted by its share of
    /// the batch — the same step, with no operation left to one thread while the other waits
    /// ([`crate::train::loss_and_gradients`]). `None` for losses that relate a batch's images.
    const JOIN_HALVES: Option<JoinCarries<Self::Carry>> = None;

    /// Its entry in `selfsup methods` under `name` (one of the names it implements).
    fn about(name: MethodName) -> About;

    /// What to check when its embeddings collapse under `config` (the training monitor's
    /// warning ends with it).
    fn collapse_hint(config: &Self::Config) -> &'static str;

    /// Builds the method's networks.
    fn init(config: &Self::Config, build: &Build) -> Result<Self>;

    /// The loss for one batch of augmented views (`NEEDS.global_views` global views, then any
    /// local crops).
    fn step(&self, views: &[Tensor<4>], progress: Progress) -> StepOutput<Self::Carry>;

    /// Work after the optimizer step (EMA update, queue push, …). The default does nothing.
    fn after_step(self, _carry: Self::Carry, _progress: Progress) -> Self {
        self
    }

    /// A scheduled value worth logging (the EMA momentum), if the method has one.
    fn momentum(&self, _progress: Progress) -> Option<f64> {
        None
    }

    /// Parameters trained at the un-decayed base learning rate (SimSiam's predictor).
    fn constant_lr(&self) -> ConstantLr {
        ConstantLr::default()
    }

    /// The forward passes of one training step on `batch` images whose views have the sides
    /// `sides`, counted from the networks' shapes (`selfsup plan`).
    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost;

    /// The backbone that evaluation and export use.
    fn encoder(&self) -> &Backbone;

    /// The embedding the loss sees (projector output), for collapse diagnostics.
    fn embed(&self, images: Tensor<4>) -> Tensor<2>;

    /// What it lets `diagnose` watch on `images` besides the embeddings (a tokenizer's codes, a
    /// teacher's distributions); the same signals its training steps report.
    fn signals(&self, _images: Tensor<4>) -> Vec<Signal> {
        Vec::new()
    }

    /// Masked image models: masks drawn as at training step `step`, and the predicted images
    /// (`selfsup reconstruct`). `None` for methods that do not reconstruct.
    fn reconstruct(&self, _images: Tensor<4>, _step: usize) -> Option<mim::Reconstruction> {
        None
    }
}
