//! SimSiam (Chen & He 2020): shared encoder, predictor, stop-gradient, symmetric −cos loss.

use burn::module::Module;
use burn::tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::branch::{Branch, check_predictor, predictor};
use super::{
    About, Build, Method, MethodName, Needs, Pass, Progress, Settings, StepCost, StepOutput,
};
use crate::augment::AugmentConfig;
use crate::loss::negative_cosine;
use crate::nn::{Backbone, Mlp, ModelConfig};
use crate::optim::ConstantLr;

/// `[method]` settings of `simsiam`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSiamConfig {
    /// Projector widths after the backbone: hidden…, output.
    pub projector: Vec<usize>,
    /// Predictor widths: hidden, output (the output equals the projector's).
    pub predictor: Vec<usize>,
    /// Stop the gradient through the target branch (off → the model collapses).
    pub stop_gradient: bool,
    /// Keep the predictor's learning rate constant (the paper's fix_pred_lr).
    pub fix_predictor_lr: bool,
}

impl Default for SimSiamConfig {
    fn default() -> Self {
        SimSiamConfig {
            projector: vec![512, 512, 512],
            predictor: vec![128, 512],
            stop_gradient: true,
            fix_predictor_lr: true,
        }
    }
}

impl Settings for SimSiamConfig {
    fn validate(&self, _model: &ModelConfig, _augment: &AugmentConfig) -> Result<(), String> {
        check_predictor(&self.projector, &self.predictor)
    }
}

#[derive(Module, Debug)]
pub struct SimSiam {
    /// Projector with BatchNorm on every layer including the output (no ReLU there).
    pub online: Branch,
    /// Bottleneck MLP with BatchNorm + ReLU in the hidden layer only.
    pub predictor: Mlp,
    stop_gradient: bool,
    fix_predictor_lr: bool,
}

impl Method for SimSiam {
    type Config = SimSiamConfig;
    type Carry = ();
    const NEEDS: Needs = Needs::TWO_VIEWS;

    fn about(_name: MethodName) -> About {
        About {
            title: "SimSiam",
            family: "non-contrastive",
            prevents_collapse: "predictor + stop-gradient",
            negatives: false,
        }
    }

    fn collapse_hint(config: &SimSiamConfig) -> &'static str {
        if config.predictor.is_empty() {
            "SimSiam without its predictor collapses: give method.predictor its widths back (e.g. [128, 512])."
        } else if config.stop_gradient {
            "Check that the predictor is present and the learning rate is not too high."
        } else {
            "SimSiam without stop-gradient collapses by design: set method.stop_gradient=true."
        }
    }

    fn init(config: &SimSiamConfig, build: &Build) -> crate::error::Result<Self> {
        Ok(SimSiam {
            online: Branch::new(build, &config.projector, |h| h.with_output_bn(true)),
            predictor: predictor(&config.projector, &config.predictor, |h| h, build.device),
            stop_gradient: config.stop_gradient,
            fix_predictor_lr: config.fix_predictor_lr,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<()> {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let p1 = self.predictor.forward(z1.clone());
        let p2 = self.predictor.forward(z2.clone());
        let embeddings = z1.clone().detach();
        let (t1, t2) = if self.stop_gradient {
            (z1.detach(), z2.detach())
        } else {
            (z1, z2)
        };
        let loss = (negative_cosine(p1, t2) + negative_cosine(p2, t1)).mul_scalar(0.5);
        StepOutput::plain(loss, embeddings)
    }

    fn constant_lr(&self) -> ConstantLr {
        if self.fix_predictor_lr {
            ConstantLr::of(&self.predictor)
        } else {
            ConstantLr::default()
        }
    }

    fn step_cost(&self, sides: &[usize], _batch: usize) -> StepCost {
        let online = self.online.stages_with_predictor(sides[0], &self.predictor);
        StepCost {
            passes: vec![Pass::trained("encoder + projector + predictor", 2, online)],
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
