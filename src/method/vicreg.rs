//! VICReg (Bardes et al. 2022): invariance between views, a variance hinge that keeps every
//! dimension alive, and a covariance penalty that decorrelates them. No negatives, no EMA.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::branch::Branch;
use super::{LossTerm, Method, Progress, StepOutput};
use crate::loss::{VicRegWeights, vicreg};
use crate::nn::Backbone;
use crate::nn::backbone::ImageShape;
use crate::recipe::Recipe;

#[derive(Module, Debug)]
pub struct VicReg {
    /// The "expander" (8192×3 in the paper): Linear-BN-ReLU hidden layers, a plain Linear output.
    pub online: Branch,
    invariance_weight: f64,
    variance_weight: f64,
    covariance_weight: f64,
}

impl Method for VicReg {
    type Carry = ();

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> crate::error::Result<Self> {
        let m = &recipe.method;
        Ok(VicReg {
            online: Branch::new(recipe, shape, |h| h, device),
            invariance_weight: m.invariance_weight,
            variance_weight: m.variance_weight,
            covariance_weight: m.covariance_weight,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<()> {
        let z1 = self.online.forward(views[0].clone());
        let z2 = self.online.forward(views[1].clone());
        let embeddings = z1.clone().detach();
        let weights = VicRegWeights {
            invariance: self.invariance_weight,
            variance: self.variance_weight,
            covariance: self.covariance_weight,
        };
        let t = vicreg(z1, z2, weights);
        let term = |name, value: Tensor<1>| LossTerm {
            name,
            value: value.detach(),
        };
        StepOutput {
            loss: t.loss,
            embeddings,
            terms: vec![
                term("invariance", t.invariance),
                term("variance", t.variance),
                term("covariance", t.covariance),
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
