//! SimMIM (Xie et al. 2021): the encoder sees every patch, masked ones replaced by a learnable mask
//! token; masks cover random large square blocks; one linear layer predicts each patch's raw pixels;
//! L1 on masked pixels only.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::mim::{Reconstruction, mask_rng, mask_tensor, predict_masked, vit};
use super::{Method, Progress, StepOutput};
use crate::augment::mask::block_random;
use crate::error::Result;
use crate::loss::masked_l1;
use crate::nn::backbone::ImageShape;
use crate::nn::patches::{patchify, unpatchify};
use crate::nn::vit::linear;
use crate::nn::{Backbone, Vit};
use crate::recipe::Recipe;

#[derive(Module, Debug)]
pub struct SimMim {
    pub encoder: Backbone,
    /// Encoder-width token that replaces each masked patch embedding (zero-initialised, as the
    /// paper's code).
    pub mask_token: Param<Tensor<3>>,
    /// Patch token → its `p·p·c` pixels.
    pub pred: Linear,
    mask_ratio: f64,
    mask_block: usize,
    seed: u64,
}

impl SimMim {
    fn vit(&self) -> &Vit {
        vit(&self.encoder)
    }

    fn draw(&self, b: usize, step: usize) -> Vec<Vec<bool>> {
        let grid = self.vit().grid();
        let mut rng = mask_rng(self.seed, step);
        (0..b)
            .map(|_| block_random(&mut rng, grid, self.mask_block, self.mask_ratio))
            .collect()
    }

    /// Pixel predictions `[b, n, p·p·c]` for images with `mask` (`[b, n]`) applied, and the
    /// encoder's tokens.
    fn predict(&self, images: Tensor<4>, mask: Tensor<2>) -> (Tensor<3>, Tensor<3>) {
        predict_masked(self.vit(), images, mask, self.mask_token.val(), &self.pred)
    }
}

impl Method for SimMim {
    type Carry = ();
    const CENTRED_DIAGNOSTICS: bool = true;

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> Result<Self> {
        let encoder = recipe.model.init(shape, device);
        let v = vit(&encoder);
        let (d, p) = (v.out_dim(), v.patch_size());
        Ok(SimMim {
            mask_token: Param::from_tensor(Tensor::zeros([1, 1, d], device)),
            pred: linear(d, p * p * shape.channels, device),
            encoder,
            mask_ratio: recipe.method.mask_ratio,
            mask_block: recipe.method.mask_block,
            seed: recipe.train.seed,
        })
    }

    fn step(&self, views: &[Tensor<4>], progress: Progress) -> StepOutput<()> {
        let images = views[0].clone();
        let masks = self.draw(images.dims()[0], progress.step);
        let mask = mask_tensor(&masks, &images.device());
        let (pred, tokens) = self.predict(images.clone(), mask.clone());
        let target = patchify(images, self.vit().patch_size());
        let loss = masked_l1(pred, target, mask);
        StepOutput::plain(loss, self.vit().pool(tokens).detach())
    }

    fn encoder(&self) -> &Backbone {
        &self.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.encoder.forward(images)
    }

    fn reconstruct(&self, images: Tensor<4>, step: usize) -> Option<Reconstruction> {
        let masks = self.draw(images.dims()[0], step);
        let channels = images.dims()[1];
        let mask = mask_tensor(&masks, &images.device());
        let (pred, _) = self.predict(images, mask);
        Some(Reconstruction {
            masks,
            prediction: unpatchify(pred, self.vit().patch_size(), channels),
        })
    }
}
