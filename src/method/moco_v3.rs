//! MoCo v3 (Chen, Xie, He 2021): in-batch keys from a momentum encoder, a predictor on the query
//! side, symmetric 2τ-scaled InfoNCE, momentum raised to 1 with a cosine. With a ViT, the recipe
//! freezes the random patch projection (`model.freeze_patch_embed`), the paper's stability trick.

use burn::module::Module;
use burn::tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::branch::{Branch, check_momentum, check_predictor, check_temperature, predictor};
use super::{
    About, Build, Method, MethodName, Needs, Pass, Progress, Settings, StepCost, StepOutput,
};
use crate::augment::AugmentConfig;
use crate::loss::info_nce;
use crate::nn::{Backbone, Mlp, ModelConfig};
use crate::teacher::{copy_into, cosine_momentum, ema_update};

/// `[method]` settings of `moco-v3`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoV3Config {
    /// Projector widths after the backbone: hidden…, output.
    pub projector: Vec<usize>,
    /// Predictor widths: hidden, output (the output equals the projector's).
    pub predictor: Vec<usize>,
    /// Softmax temperature τ of the contrastive loss.
    pub temperature: f64,
    /// Base momentum of the key encoder, raised to 1 with a cosine.
    pub base_momentum: f64,
}

impl Default for MocoV3Config {
    fn default() -> Self {
        MocoV3Config {
            projector: vec![512, 512, 512],
            predictor: vec![128, 512],
            temperature: 0.5,
            base_momentum: 0.99,
        }
    }
}

impl Settings for MocoV3Config {
    fn validate(&self, _model: &ModelConfig, _augment: &AugmentConfig) -> Result<(), String> {
        check_predictor(&self.projector, &self.predictor)?;
        check_momentum(self.base_momentum)?;
        check_temperature(self.temperature)
    }
}

#[derive(Module, Debug)]
pub struct MocoV3 {
    /// Projector with BatchNorm in every layer, the output included.
    pub online: Branch,
    /// BatchNorm + ReLU in the hidden layer, none on the output.
    pub predictor: Mlp,
    pub key: Branch,
    temperature: f64,
    base_momentum: f64,
}

impl MocoV3 {
    /// 2τ · InfoNCE(q, k), the paper's scaling (it makes the gradient independent of τ at init).
    fn contrast(&self, q: Tensor<2>, k: Tensor<2>) -> Tensor<1> {
        info_nce(q, k, self.temperature).mul_scalar(2.0 * self.temperature)
    }
}

impl Method for MocoV3 {
    type Config = MocoV3Config;
    type Carry = ();
    const NEEDS: Needs = Needs::TWO_VIEWS;

    fn about(_name: MethodName) -> About {
        About {
            title: "MoCo v3",
            family: "contrastive",
            prevents_collapse: "in-batch negatives from a momentum encoder",
            negatives: true,
        }
    }

    fn collapse_hint(_config: &MocoV3Config) -> &'static str {
        "In-batch negatives keep contrastive methods apart; check method.temperature (too high flattens the softmax) and the learning rate."
    }

    fn init(config: &MocoV3Config, build: &Build) -> crate::error::Result<Self> {
        let head = |h: crate::nn::MlpConfig| h.with_output_bn(true);
        let online = Branch::new(build, &config.projector, head);
        let key = copy_into(Branch::new(build, &config.projector, head), &online);
        Ok(MocoV3 {
            online,
            predictor: predictor(&config.projector, &config.predictor, |h| h, build.device),
            key,
            temperature: config.temperature,
            base_momentum: config.base_momentum,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<()> {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let embeddings = z1.clone().detach();
        let q1 = self.predictor.forward(z1);
        let q2 = self.predictor.forward(z2);
        let k1 = self.key.forward(views[0].clone()).detach();
        let k2 = self.key.forward(views[1].clone()).detach();
        let loss = self.contrast(q1, k2) + self.contrast(q2, k1);
        StepOutput::plain(loss, embeddings)
    }

    fn after_step(mut self, _carry: (), progress: Progress) -> Self {
        let momentum = self.momentum(progress).unwrap_or(1.0);
        self.key = ema_update(self.key, &self.online, momentum);
        self
    }

    fn momentum(&self, progress: Progress) -> Option<f64> {
        Some(cosine_momentum(
            self.base_momentum,
            progress.step,
            progress.total_steps,
        ))
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let online = self.online.stages_with_predictor(sides[0], &self.predictor);
        let b = batch as u64;
        StepCost {
            passes: vec![
                Pass::trained("online: encoder + projector + predictor", 2, online),
                Pass::frozen(
                    "momentum: encoder + projector",
                    2,
                    self.key.stages(sides[1]),
                ),
            ],
            // Two B × B similarity matrices, scaled, and their log-softmax.
            loss: 2 * 3 * b * b,
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
