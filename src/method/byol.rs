//! BYOL (Grill et al. 2020): online network + predictor regress an EMA target network.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::branch::{Branch, predictor};
use super::{Method, Progress, StepOutput};
use crate::loss::byol_regression;
use crate::nn::backbone::ImageShape;
use crate::nn::{Backbone, Mlp};
use crate::recipe::Recipe;
use crate::teacher::{copy_into, cosine_momentum, ema_update};

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
    type Carry = ();

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> crate::error::Result<Self> {
        let online = Branch::new(recipe, shape, |h| h, device);
        let target = copy_into(Branch::new(recipe, shape, |h| h, device), &online);
        Ok(Byol {
            online,
            predictor: predictor(recipe, device),
            target,
            base_momentum: recipe.method.base_momentum,
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

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
