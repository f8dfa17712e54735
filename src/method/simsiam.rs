//! SimSiam (Chen & He 2020): shared encoder, predictor, stop-gradient, symmetric −cos loss.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{Method, Progress, StepOutput};
use crate::loss::negative_cosine;
use crate::nn::{Mlp, MlpConfig, ResNet};
use crate::recipe::Recipe;

#[derive(Module, Debug)]
pub struct SimSiam {
    pub encoder: ResNet,
    /// BatchNorm on every layer including the output (no ReLU there), as in the paper.
    pub projector: Mlp,
    /// Bottleneck MLP with BatchNorm + ReLU in the hidden layer only.
    pub predictor: Mlp,
    stop_gradient: bool,
    fix_predictor_lr: bool,
}

impl Method for SimSiam {
    fn init(recipe: &Recipe, in_channels: usize, device: &Device) -> Self {
        let encoder = recipe.model.init(in_channels, device);
        let m = &recipe.method;
        let mut dims = vec![encoder.out_dim()];
        dims.extend(&m.projector);
        let out = *dims.last().unwrap();
        let mut pred = vec![out];
        pred.extend(&m.predictor);
        SimSiam {
            encoder,
            projector: MlpConfig::new(dims).with_output_bn(true).init(device),
            predictor: MlpConfig::new(pred).init(device),
            stop_gradient: m.stop_gradient,
            fix_predictor_lr: m.fix_predictor_lr,
        }
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput {
        let z1 = self.embed(views[0].clone());
        let z2 = self.embed(views[1].clone());
        let p1 = self.predictor.forward(z1.clone());
        let p2 = self.predictor.forward(z2.clone());
        let embeddings = z1.clone().detach();
        let (t1, t2) = if self.stop_gradient {
            (z1.detach(), z2.detach())
        } else {
            (z1, z2)
        };
        let loss = (negative_cosine(p1, t2) + negative_cosine(p2, t1)).mul_scalar(0.5);
        StepOutput { loss, embeddings }
    }

    fn constant_lr_modules(&self) -> &'static [&'static str] {
        if self.fix_predictor_lr {
            &["predictor"]
        } else {
            &[]
        }
    }

    fn encoder(&self) -> &ResNet {
        &self.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.projector.forward(self.encoder.forward(images))
    }
}
