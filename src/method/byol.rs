//! BYOL (Grill et al. 2020): online network + predictor regress an EMA target network.

use burn::module::Module;
use burn::tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::branch::{Branch, check_momentum, check_predictor, predictor};
use super::{
    About, Build, Method, MethodName, Needs, Pass, Progress, Settings, StepCost, StepOutput,
};
use crate::augment::AugmentConfig;
use crate::loss::byol_regression;
use crate::nn::{Backbone, Mlp, MlpConfig, ModelConfig};
use crate::teacher::{copy_into, cosine_momentum, ema_update};

/// `[method]` settings of `byol`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ByolConfig {
    /// Projector widths after the backbone: hidden…, output.
    pub projector: Vec<usize>,
    /// Predictor widths: hidden, output (the output equals the projector's).
    pub predictor: Vec<usize>,
    /// Base EMA momentum τ_base of the target, raised to 1 with a cosine.
    pub base_momentum: f64,
    /// BatchNorm in the projector's and predictor's hidden layers (`false`: an ablation of the
    /// "BatchNorm is secretly contrastive" hypothesis).
    pub head_bn: bool,
}

impl Default for ByolConfig {
    fn default() -> Self {
        ByolConfig {
            projector: vec![512, 512, 512],
            predictor: vec![128, 512],
            base_momentum: 0.99,
            head_bn: true,
        }
    }
}

impl Settings for ByolConfig {
    fn validate(&self, _model: &ModelConfig, _augment: &AugmentConfig) -> Result<(), String> {
        check_predictor(&self.projector, &self.predictor)?;
        check_momentum(self.base_momentum)
    }
}

#[derive(Module, Debug)]
pub struct Byol {
    pub online: Branch,
    pub predictor: Mlp,
    /// EMA of `online`; never receives gradients. Kept on the autodiff device so its BatchNorm
    /// uses batch statistics, as the paper's target does.
    pub target: Branch,
    base_momentum: f64,
}

impl Method for Byol {
    type Config = ByolConfig;
    type Carry = ();
    const NEEDS: Needs = Needs::TWO_VIEWS;

    fn about(_name: MethodName) -> About {
        About {
            title: "BYOL",
            family: "non-contrastive",
            prevents_collapse: "predictor + EMA target + stop-gradient",
            negatives: false,
        }
    }

    fn collapse_hint(config: &ByolConfig) -> &'static str {
        if config.predictor.is_empty() {
            return "BYOL without its predictor collapses: give method.predictor its widths back (e.g. [512, 128]).";
        }
        if !config.head_bn {
            return "method.head_bn = false takes BatchNorm out of the heads; set it back to true.";
        }
        "Check method.base_momentum (too low lets the target chase the online network) and the learning rate."
    }

    fn init(config: &ByolConfig, build: &Build) -> crate::error::Result<Self> {
        let bn = |h: MlpConfig| h.with_hidden_bn(config.head_bn);
        let online = Branch::new(build, &config.projector, bn);
        let target = copy_into(Branch::new(build, &config.projector, bn), &online);
        Ok(Byol {
            online,
            predictor: predictor(&config.projector, &config.predictor, bn, build.device),
            target,
            base_momentum: config.base_momentum,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<()> {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let embeddings = z1.clone().detach();
        let p1 = self.predictor.forward(z1);
        let p2 = self.predictor.forward(z2);
        let t1 = self.target.forward(views[0].clone()).detach();
        let t2 = self.target.forward(views[1].clone()).detach();
        let loss = byol_regression(p1, t2) + byol_regression(p2, t1);
        StepOutput::plain(loss, embeddings)
    }

    fn after_step(mut self, _carry: (), progress: Progress) -> Self {
        let momentum = self.momentum(progress).unwrap_or(1.0);
        self.target = ema_update(self.target, &self.online, momentum);
        self
    }

    fn momentum(&self, progress: Progress) -> Option<f64> {
        Some(cosine_momentum(
            self.base_momentum,
            progress.step,
            progress.total_steps,
        ))
    }

    fn step_cost(&self, sides: &[usize], _batch: usize) -> StepCost {
        let online = self.online.stages_with_predictor(sides[0], &self.predictor);
        StepCost {
            passes: vec![
                Pass::trained("online: encoder + projector + predictor", 2, online),
                Pass::frozen(
                    "target: encoder + projector",
                    2,
                    self.target.stages(sides[1]),
                ),
            ],
            loss: 0,
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
