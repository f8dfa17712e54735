//! SimCLR (Chen et al. 2020): two views, a projector, NT-Xent with in-batch negatives.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::branch::Branch;
use super::{Method, Progress, StepOutput};
use crate::loss::nt_xent;
use crate::nn::Backbone;
use crate::nn::backbone::ImageShape;
use crate::recipe::Recipe;

#[derive(Module, Debug)]
pub struct SimClr {
    /// Projector Linear-BN-ReLU-…-Linear; the representation is the encoder output before it.
    pub online: Branch,
    temperature: f64,
}

impl Method for SimClr {
    type Carry = ();

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> crate::error::Result<Self> {
        Ok(SimClr {
            online: Branch::new(recipe, shape, |h| h, device),
            temperature: recipe.method.temperature,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<()> {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let embeddings = z1.clone().detach();
        StepOutput::plain(nt_xent(z1, z2, self.temperature), embeddings)
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}
