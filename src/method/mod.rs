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
pub mod vicreg;
pub mod vq_tokenizer;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::Backbone;
use crate::nn::backbone::ImageShape;
use crate::recipe::Recipe;

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
pub use vicreg::VicReg;
pub use vq_tokenizer::VqTokenizer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MethodName {
    #[default]
    Simsiam,
    Byol,
    Simclr,
    MocoV1,
    MocoV2,
    MocoV3,
    BarlowTwins,
    Vicreg,
    Mae,
    Simmim,
    Beit,
    VqTokenizer,
    Dino,
    Ibot,
    Dinov2,
}

/// Runs `$body` with `$M` bound to the method type that implements `$name`: the one place that
/// maps names to types.
#[macro_export]
macro_rules! with_method {
    ($name:expr, $M:ident => $body:expr) => {{
        use $crate::method::MethodName as N;
        match $name {
            N::Simsiam => {
                type $M = $crate::method::SimSiam;
                $body
            }
            N::Byol => {
                type $M = $crate::method::Byol;
                $body
            }
            N::Simclr => {
                type $M = $crate::method::SimClr;
                $body
            }
            N::MocoV1 | N::MocoV2 => {
                type $M = $crate::method::Moco;
                $body
            }
            N::MocoV3 => {
                type $M = $crate::method::MocoV3;
                $body
            }
            N::BarlowTwins => {
                type $M = $crate::method::BarlowTwins;
                $body
            }
            N::Vicreg => {
                type $M = $crate::method::VicReg;
                $body
            }
            N::Mae => {
                type $M = $crate::method::Mae;
                $body
            }
            N::Simmim => {
                type $M = $crate::method::SimMim;
                $body
            }
            N::Beit => {
                type $M = $crate::method::Beit;
                $body
            }
            N::VqTokenizer => {
                type $M = $crate::method::VqTokenizer;
                $body
            }
            N::Dino | N::Ibot | N::Dinov2 => {
                type $M = $crate::method::Dino;
                $body
            }
        }
    }};
}

impl MethodName {
    pub const IMPLEMENTED: [MethodName; 15] = [
        MethodName::Simclr,
        MethodName::MocoV1,
        MethodName::MocoV2,
        MethodName::MocoV3,
        MethodName::Byol,
        MethodName::Simsiam,
        MethodName::BarlowTwins,
        MethodName::Vicreg,
        MethodName::Mae,
        MethodName::Simmim,
        MethodName::Beit,
        MethodName::VqTokenizer,
        MethodName::Dino,
        MethodName::Ibot,
        MethodName::Dinov2,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MethodName::Simsiam => "simsiam",
            MethodName::Byol => "byol",
            MethodName::Simclr => "simclr",
            MethodName::MocoV1 => "moco-v1",
            MethodName::MocoV2 => "moco-v2",
            MethodName::MocoV3 => "moco-v3",
            MethodName::BarlowTwins => "barlow-twins",
            MethodName::Vicreg => "vicreg",
            MethodName::Mae => "mae",
            MethodName::Simmim => "simmim",
            MethodName::Beit => "beit",
            MethodName::VqTokenizer => "vq-tokenizer",
            MethodName::Dino => "dino",
            MethodName::Ibot => "ibot",
            MethodName::Dinov2 => "dinov2",
        }
    }

    /// Whether the method has a predictor head (and reads `method.predictor`).
    pub fn uses_predictor(self) -> bool {
        matches!(
            self,
            MethodName::Simsiam | MethodName::Byol | MethodName::MocoV3
        )
    }

    /// Masked image modeling: the method works on a ViT's patch tokens.
    pub fn needs_vit(self) -> bool {
        matches!(
            self,
            MethodName::Mae | MethodName::Simmim | MethodName::Beit | MethodName::VqTokenizer
        )
    }

    /// Self-distillation with an EMA teacher and multi-crop (DINO, iBOT, DINOv2).
    pub fn is_distillation(self) -> bool {
        matches!(
            self,
            MethodName::Dino | MethodName::Ibot | MethodName::Dinov2
        )
    }

    pub fn parse(name: &str) -> Result<MethodName> {
        Self::IMPLEMENTED
            .into_iter()
            .find(|m| m.as_str() == name.to_lowercase())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::IMPLEMENTED.iter().map(|m| m.as_str()).collect();
                Error::Usage(format!(
                    "unknown method '{name}'; implemented: {} (see `selfsup methods`)",
                    names.join(", ")
                ))
            })
    }
}

impl std::fmt::Display for MethodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where training stands, for schedules.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub step: usize,
    pub total_steps: usize,
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
    /// A tokenizer's code ids for the batch, for codebook-usage monitoring.
    pub codes: Option<Codes>,
    /// A self-distillation step's teacher and student distributions, for collapse monitoring.
    pub distillation: Option<Distributions>,
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
            codes: None,
            distillation: None,
        }
    }
}

/// A self-supervised method: its networks plus what a training step needs from them.
pub trait Method: Module + Sized {
    /// State passed from `step` to `after_step`.
    type Carry;

    /// Whether collapse diagnostics look at the embeddings around their mean
    /// ([`crate::diagnose::analyze_centred`]): for the ViT features masked image models expose,
    /// which carry a large offset shared by every image.
    const CENTRED_DIAGNOSTICS: bool = false;

    /// Builds the method's networks for images of `shape`.
    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> Result<Self>;

    /// The loss for one batch of augmented views (as many as the recipe's augment section makes).
    fn step(&self, views: &[Tensor<4>], progress: Progress) -> StepOutput<Self::Carry>;

    /// Work after the optimizer step (EMA update, queue push, …). The default does nothing.
    fn after_step(self, _carry: Self::Carry, _progress: Progress) -> Self {
        self
    }

    /// A scheduled value worth logging (the EMA momentum), if the method has one.
    fn momentum(&self, _progress: Progress) -> Option<f64> {
        None
    }

    /// Top-level sub-modules trained at a constant learning rate.
    fn constant_lr_modules(&self) -> &'static [&'static str] {
        &[]
    }

    /// The backbone that evaluation and export use.
    fn encoder(&self) -> &Backbone;

    /// The embedding the loss sees (projector output), for collapse diagnostics.
    fn embed(&self, images: Tensor<4>) -> Tensor<2>;

    /// Masked image models: masks drawn as at training step `step`, and the predicted images
    /// (`selfsup reconstruct`). `None` for methods that do not reconstruct.
    fn reconstruct(&self, _images: Tensor<4>, _step: usize) -> Option<mim::Reconstruction> {
        None
    }

    /// A tokenizer's code ids for `images` (codebook-usage diagnostics); `None` for others.
    fn codes(&self, _images: Tensor<4>) -> Option<Codes> {
        None
    }

    /// Self-distillation: the teacher's and the student's distributions over the prototypes for
    /// `images` (collapse-mode diagnostics); `None` for others.
    fn distributions(&self, _images: Tensor<4>) -> Option<Distributions> {
        None
    }
}
