//! Barlow Twins (Zbontar et al. 2021): make the cross-correlation of two views' embeddings the
//! identity — invariance on the diagonal, redundancy reduction off it. No negatives, no EMA.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::branch::Branch;
use super::{LossTerm, Method, Progress, StepOutput};
use crate::loss::barlow_twins;
use crate::nn::Backbone;
use crate::nn::backbone::ImageShape;
use crate::recipe::Recipe;

#[derive(Module, Debug)]
pub struct BarlowTwins {
    /// Wide projector (8192×3 in the paper): Linear-BN-ReLU hidden layers, a plain Linear output.
    pub online: Branch,
    lambda: f64,
}

impl Method for BarlowTwins {
    type Carry = ();

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> crate::error::Result<Self> {
        Ok(BarlowTwins {
            online: Branch::new(recipe, shape, |h| h, device),
            lambda: recipe.method.lambda,
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
            codes: None,
            distillation: None,
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
