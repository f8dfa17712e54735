//! VICReg (Bardes et al. 2022): invariance between views, a variance hinge that keeps every
//! dimension alive, and a covariance penalty that decorrelates them. No negatives, no EMA.

use burn::module::Module;
use burn::tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::branch::{Branch, check_projector, check_weight};
use super::{
    About, Build, LossTerm, Method, MethodName, Needs, Progress, Settings, StepCost, StepOutput,
};
use crate::augment::AugmentConfig;
use crate::loss::{VicRegWeights, vicreg};
use crate::nn::{Backbone, ModelConfig};

/// `[method]` settings of `vicreg`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VicRegConfig {
    /// Expander widths after the backbone: hidden…, output.
    pub projector: Vec<usize>,
    /// Weight of the invariance (MSE) term.
    pub invariance_weight: f64,
    /// Weight of the variance hinge.
    pub variance_weight: f64,
    /// Weight of the covariance penalty.
    pub covariance_weight: f64,
}

impl Default for VicRegConfig {
    fn default() -> Self {
        VicRegConfig {
            projector: vec![512, 512, 512],
            invariance_weight: 25.0,
            variance_weight: 25.0,
            covariance_weight: 1.0,
        }
    }
}

impl Settings for VicRegConfig {
    fn validate(&self, _model: &ModelConfig, _augment: &AugmentConfig) -> Result<(), String> {
        check_projector(&self.projector)?;
        check_weight("invariance_weight", self.invariance_weight)?;
        check_weight("variance_weight", self.variance_weight)?;
        check_weight("covariance_weight", self.covariance_weight)
    }
}

#[derive(Module, Debug)]
pub struct VicReg {
    /// The "expander" (8192×3 in the paper): Linear-BN-ReLU hidden layers, a plain Linear output.
    pub online: Branch,
    invariance_weight: f64,
    variance_weight: f64,
    covariance_weight: f64,
}

impl Method for VicReg {
    type Config = VicRegConfig;
    type Carry = ();
    const NEEDS: Needs = Needs::TWO_VIEWS;

    fn about(_name: MethodName) -> About {
        About {
            title: "VICReg",
            family: "non-contrastive",
            prevents_collapse: "variance + covariance regularisation",
            negatives: false,
        }
    }

    fn collapse_hint(_config: &VicRegConfig) -> &'static str {
        "Raise method.variance_weight (the hinge keeps every dimension alive) or lower the learning rate."
    }

    fn init(config: &VicRegConfig, build: &Build) -> crate::error::Result<Self> {
        Ok(VicReg {
            online: Branch::new(build, &config.projector, |h| h),
            invariance_weight: config.invariance_weight,
            variance_weight: config.variance_weight,
            covariance_weight: config.covariance_weight,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<()> {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let embeddings = z1.clone().detach();
        let weights = VicRegWeights {
            invariance: self.invariance_weight,
            variance: self.variance_weight,
            covariance: self.covariance_weight,
        };
        let t = vicreg(z1, z2, weights);
        let term = |name, value: Tensor<1>| LossTerm {
            name,
            value: value.detach(),
        };
        StepOutput {
            loss: t.loss,
            embeddings,
            terms: vec![
                term("invariance", t.invariance),
                term("variance", t.variance),
                term("covariance", t.covariance),
            ],
            carry: (),
            signals: Vec::new(),
        }
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let d = self.online.projector.out_dim() as u64;
        // The centred embeddings of both views, and their D × D covariance matrices.
        self.online
            .two_view_step(sides, 4 * batch as u64 * d + 4 * d * d)
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
