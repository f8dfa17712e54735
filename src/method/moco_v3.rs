//! MoCo v3 (Chen, Xie, He 2021): in-batch keys from a momentum encoder, a predictor on the query
//! side, symmetric 2τ-scaled InfoNCE, momentum raised to 1 with a cosine. With a ViT, the recipe
//! freezes the random patch projection (`model.freeze_patch_embed`), the paper's stability trick.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::branch::{Branch, predictor};
use super::{Method, Progress, StepOutput};
use crate::loss::info_nce;
use crate::nn::backbone::ImageShape;
use crate::nn::{Backbone, Mlp};
use crate::recipe::Recipe;
use crate::teacher::{copy_into, cosine_momentum, ema_update};

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
    type Carry = ();

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> crate::error::Result<Self> {
        let head = |h: crate::nn::MlpConfig| h.with_output_bn(true);
        let online = Branch::new(recipe, shape, head, device);
        let key = copy_into(Branch::new(recipe, shape, head, device), &online);
        Ok(MocoV3 {
            online,
            predictor: predictor(recipe, device),
            key,
            temperature: recipe.method.temperature,
            base_momentum: recipe.method.base_momentum,
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

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
