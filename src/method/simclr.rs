//! SimCLR (Chen et al. 2020): two views, a projector, NT-Xent with in-batch negatives.

use burn::module::Module;
use burn::tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::branch::{Branch, check_projector, check_temperature};
use super::{About, Build, Method, MethodName, Needs, Progress, Settings, StepCost, StepOutput};
use crate::augment::AugmentConfig;
use crate::loss::{nt_xent, positives_only};
use crate::nn::{Backbone, ModelConfig};

/// `[method]` settings of `simclr`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimClrConfig {
    /// Projector widths after the backbone: hidden…, output.
    pub projector: Vec<usize>,
    /// Softmax temperature τ of NT-Xent.
    pub temperature: f64,
    /// `false` keeps only the loss's positive term (an experiment: it collapses).
    pub negatives: bool,
}

impl Default for SimClrConfig {
    fn default() -> Self {
        SimClrConfig {
            projector: vec![512, 512, 512],
            temperature: 0.5,
            negatives: true,
        }
    }
}

impl Settings for SimClrConfig {
    fn validate(&self, _model: &ModelConfig, _augment: &AugmentConfig) -> Result<(), String> {
        check_projector(&self.projector)?;
        check_temperature(self.temperature)
    }
}

#[derive(Module, Debug)]
pub struct SimClr {
    /// Projector Linear-BN-ReLU-…-Linear; the representation is the encoder output before it.
    pub online: Branch,
    temperature: f64,
    negatives: bool,
}

impl Method for SimClr {
    type Config = SimClrConfig;
    type Carry = ();
    const NEEDS: Needs = Needs::TWO_VIEWS;

    fn about(_name: MethodName) -> About {
        About {
            title: "SimCLR",
            family: "contrastive",
            prevents_collapse: "in-batch negatives (NT-Xent)",
            negatives: true,
        }
    }

    fn collapse_hint(config: &SimClrConfig) -> &'static str {
        if !config.negatives {
            return "method.negatives = false removes what keeps the embeddings apart; set it back to true.";
        }
        "In-batch negatives keep contrastive methods apart; check method.temperature (too high flattens the softmax) and the learning rate."
    }

    fn init(config: &SimClrConfig, build: &Build) -> crate::error::Result<Self> {
        Ok(SimClr {
            online: Branch::new(build, &config.projector, |h| h),
            temperature: config.temperature,
            negatives: config.negatives,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<()> {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let embeddings = z1.clone().detach();
        let loss = if self.negatives {
            nt_xent(z1, z2, self.temperature)
        } else {
            positives_only(z1, z2, self.temperature)
        };
        StepOutput::plain(loss, embeddings)
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let n = (sides.len() * batch) as u64;
        // The 2B × 2B similarities, scaled, and their log-softmax.
        self.online.two_view_step(sides, 3 * n * n)
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
