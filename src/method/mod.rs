//! SSL methods, all behind one [`Method`] trait so the training loop never knows which it runs.

pub mod byol;
pub mod simsiam;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::ResNet;
use crate::recipe::Recipe;

pub use byol::Byol;
pub use simsiam::SimSiam;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MethodName {
    #[default]
    Simsiam,
    Byol,
}

impl MethodName {
    pub const IMPLEMENTED: [MethodName; 2] = [MethodName::Simsiam, MethodName::Byol];

    pub fn as_str(self) -> &'static str {
        match self {
            MethodName::Simsiam => "simsiam",
            MethodName::Byol => "byol",
        }
    }

    pub fn parse(name: &str) -> Result<MethodName> {
        Self::IMPLEMENTED
            .into_iter()
            .find(|m| m.as_str() == name.to_lowercase())
            .ok_or_else(|| {
                let known = crate::catalog::FAMILIES
                    .iter()
                    .any(|f| f.cli_name == name.to_lowercase());
                let names: Vec<&str> = Self::IMPLEMENTED.iter().map(|m| m.as_str()).collect();
                Error::Usage(if known {
                    format!(
                        "method '{name}' is planned for a later release; available now: {} (see `selfsup methods`)",
                        names.join(", ")
                    )
                } else {
                    format!(
                        "unknown method '{name}'; implemented: {} (see `selfsup methods`)",
                        names.join(", ")
                    )
                })
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

/// What a method returns for one batch of views.
pub struct StepOutput {
    /// Scalar loss, shape `[1]`, attached to the graph.
    pub loss: Tensor<1>,
    /// Detached embeddings of the first view (what collapse monitoring watches).
    pub embeddings: Tensor<2>,
}

/// A self-supervised method: its networks plus what a training step needs from them.
pub trait Method: Module + Sized {
    /// Builds the method's networks for images with `in_channels` channels.
    fn init(recipe: &Recipe, in_channels: usize, device: &Device) -> Self;

    /// The loss for one batch of augmented views (as many as the recipe's augment section makes).
    fn step(&self, views: &[Tensor<4>], progress: Progress) -> StepOutput;

    /// Work after the optimizer step (EMA target update, …). The default does nothing.
    fn after_step(self, _progress: Progress) -> Self {
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
    fn encoder(&self) -> &ResNet;

    /// The embedding the loss sees (projector output), for collapse diagnostics.
    fn embed(&self, images: Tensor<4>) -> Tensor<2>;
}
