//! SimSiam (Chen & He 2020): shared encoder, predictor, stop-gradient, symmetric −cos loss.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::branch::{Branch, predictor};
use super::{Method, Progress, StepOutput};
use crate::loss::negative_cosine;
use crate::nn::backbone::ImageShape;
use crate::nn::{Backbone, Mlp};
use crate::recipe::Recipe;

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
    type Carry = ();

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> crate::error::Result<Self> {
        Ok(SimSiam {
            online: Branch::new(recipe, shape, |h| h.with_output_bn(true), device),
            predictor: predictor(recipe, device),
            stop_gradient: recipe.method.stop_gradient,
            fix_predictor_lr: recipe.method.fix_predictor_lr,
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

    fn constant_lr_modules(&self) -> &'static [&'static str] {
        if self.fix_predictor_lr {
            &["predictor"]
        } else {
            &[]
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
