//! Barlow Twins (Zbontar et al. 2021): make the cross-correlation of two views' embeddings the
//! identity — invariance on the diagonal, redundancy reduction off it. No negatives, no EMA.

use burn::module::Module;
use burn::tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::branch::{Branch, check_projector, check_weight};
use super::{
    About, Build, LossTerm, Method, MethodName, Needs, Progress, Settings, StepCost, StepOutput,
};
use crate::augment::AugmentConfig;
use crate::loss::barlow_twins;
use crate::nn::{Backbone, ModelConfig};

/// `[method]` settings of `barlow-twins`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BarlowTwinsConfig {
    /// Projector widths after the backbone: hidden…, output.
    pub projector: Vec<usize>,
    /// Weight λ of the off-diagonal (redundancy) term.
    pub lambda: f64,
}

impl Default for BarlowTwinsConfig {
    fn default() -> Self {
        BarlowTwinsConfig {
            projector: vec![512, 512, 512],
            lambda: 5e-3,
        }
    }
}

impl Settings for BarlowTwinsConfig {
    fn validate(&self, _model: &ModelConfig, _augment: &AugmentConfig) -> Result<(), String> {
        check_projector(&self.projector)?;
        check_weight("lambda", self.lambda)
    }
}

#[derive(Module, Debug)]
pub struct BarlowTwins {
    /// Wide projector (8192×3 in the paper): Linear-BN-ReLU hidden layers, a plain Linear output.
    pub online: Branch,
    lambda: f64,
}

impl Method for BarlowTwins {
    type Config = BarlowTwinsConfig;
    type Carry = ();
    const NEEDS: Needs = Needs::TWO_VIEWS;

    fn about(_name: MethodName) -> About {
        About {
            title: "Barlow Twins",
            family: "non-contrastive",
            prevents_collapse: "cross-correlation → identity (decorrelation)",
            negatives: false,
        }
    }

    fn collapse_hint(_config: &BarlowTwinsConfig) -> &'static str {
        "Check method.lambda (too small ignores redundancy) and the projector width (method.projector)."
    }

    fn init(config: &BarlowTwinsConfig, build: &Build) -> crate::error::Result<Self> {
        Ok(BarlowTwins {
            online: Branch::new(build, &config.projector, |h| h),
            lambda: config.lambda,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<()> {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let embeddings = z1.clone().detach();
        let terms = barlow_twins(z1, z2, self.lambda);
        StepOutput {
            loss: terms.loss,
            embeddings,
            terms: vec![
                LossTerm {
                    name: "invariance",
                    value: terms.invariance.detach(),
                },
                LossTerm {
                    name: "redundancy",
                    value: terms.redundancy.detach(),
                },
            ],
            carry: (),
            signals: Vec::new(),
        }
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let d = self.online.projector.out_dim() as u64;
        // The standardised embeddings of both views, and the D × D cross-correlation with its
        // on- and off-diagonal terms.
        self.online
            .two_view_step(sides, 4 * batch as u64 * d + 3 * d * d)
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
