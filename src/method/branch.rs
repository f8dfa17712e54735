//! Encoder + projector: the online half of most joint-embedding methods, and what an EMA target
//! (BYOL, MoCo) mirrors.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::nn::backbone::ImageShape;
use crate::nn::{Backbone, Mlp, MlpConfig};
use crate::recipe::Recipe;

#[derive(Module, Debug)]
pub struct Branch {
    pub encoder: Backbone,
    pub projector: Mlp,
}

impl Branch {
    /// The recipe's backbone and a projector of widths `method.projector`, shaped by `head`
    /// (which BatchNorms it has).
    pub fn new(
        recipe: &Recipe,
        shape: ImageShape,
        head: impl FnOnce(MlpConfig) -> MlpConfig,
        device: &Device,
    ) -> Self {
        let encoder = recipe.model.init(shape, device);
        let mut dims = vec![encoder.out_dim()];
        dims.extend(&recipe.method.projector);
        Branch {
            encoder,
            projector: head(MlpConfig::new(dims)).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.projector.forward(self.encoder.forward(x))
    }
}

/// A predictor MLP from the projector output through `method.predictor`.
pub fn predictor(recipe: &Recipe, device: &Device) -> Mlp {
    let mut dims = vec![*recipe.method.projector.last().expect("validated non-empty")];
    dims.extend(&recipe.method.predictor);
    MlpConfig::new(dims).init(device)
}
