//! BYOL (Grill et al. 2020): online network + predictor regress an EMA target network.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{Method, Progress, StepOutput};
use crate::loss::byol_regression;
use crate::nn::{Mlp, MlpConfig, ResNet};
use crate::recipe::Recipe;
use crate::teacher::{copy_into, cosine_momentum, ema_update};

/// Encoder + projector: the part the target network mirrors.
#[derive(Module, Debug)]
pub struct Branch {
    pub encoder: ResNet,
    pub projector: Mlp,
}

impl Branch {
    fn new(recipe: &Recipe, in_channels: usize, device: &Device) -> Self {
        let encoder = recipe.model.init(in_channels, device);
        let mut dims = vec![encoder.out_dim()];
        dims.extend(&recipe.method.projector);
        Branch {
            encoder,
            projector: MlpConfig::new(dims).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.projector.forward(self.encoder.forward(x))
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
    fn init(recipe: &Recipe, in_channels: usize, device: &Device) -> Self {
        let online = Branch::new(recipe, in_channels, device);
        let target = copy_into(Branch::new(recipe, in_channels, device), &online);
        let out = *recipe.method.projector.last().unwrap();
        let mut pred = vec![out];
        pred.extend(&recipe.method.predictor);
        Byol {
            online,
            predictor: MlpConfig::new(pred).init(device),
            target,
            base_momentum: recipe.method.base_momentum,
        }
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let embeddings = z1.clone().detach();
        let p1 = self.predictor.forward(z1);
        let p2 = self.predictor.forward(z2);
        let t1 = self.target.forward(views[0].clone()).detach();
        let t2 = self.target.forward(views[1].clone()).detach();
        let loss = byol_regression(p1, t2) + byol_regression(p2, t1);
        StepOutput { loss, embeddings }
    }

    fn after_step(mut self, progress: Progress) -> Self {
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

    fn encoder(&self) -> &ResNet {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
