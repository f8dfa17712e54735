//! SimMIM (Xie et al. 2021): the encoder sees every patch, masked ones replaced by a learnable mask
//! token; masks cover random large square blocks; one linear layer predicts each patch's raw pixels;
//! L1 on masked pixels only.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::mim::{
    Reconstruction, check_block, check_mask_ratio, mask_rng, mask_tensor, predict_masked, vit,
    vit_with_head,
};
use super::{
    About, Build, Method, MethodName, Needs, Pass, Progress, Settings, StepCost, StepOutput,
};
use crate::augment::AugmentConfig;
use crate::augment::mask::block_random;
use crate::error::{Error, Result};
use crate::loss::masked_l1;
use crate::nn::patches::{patchify, unpatchify};
use crate::nn::vit::linear;
use crate::nn::{Backbone, ModelConfig, Vit};

/// `[method]` settings of `simmim`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimMimConfig {
    /// Fraction of patches masked (0.6 in the paper).
    pub mask_ratio: f64,
    /// Side of the square mask blocks, in ViT patches (the paper's 32-px mask patches).
    pub mask_block: usize,
}

impl Default for SimMimConfig {
    fn default() -> Self {
        SimMimConfig {
            mask_ratio: 0.75,
            mask_block: 2,
        }
    }
}

impl Settings for SimMimConfig {
    fn validate(
        &self,
        _model: &ModelConfig,
        _augment: &AugmentConfig,
    ) -> std::result::Result<(), String> {
        check_mask_ratio(self.mask_ratio)?;
        check_block("mask_block", self.mask_block)
    }
}

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
    type Config = SimMimConfig;
    type Carry = ();
    const NEEDS: Needs = Needs::MASKED_VIT;
    const CENTRED_DIAGNOSTICS: bool = true;

    fn about(_name: MethodName) -> About {
        super::mim::about("SimMIM", "pixel reconstruction (L1) of masked patches")
    }

    fn collapse_hint(_config: &SimMimConfig) -> &'static str {
        super::mim::COLLAPSE_HINT
    }

    fn init(config: &SimMimConfig, build: &Build) -> Result<Self> {
        let (shape, device) = (build.shape, build.device);
        let grid = shape.side / build.model.patch_size.max(1);
        if !grid.is_multiple_of(config.mask_block) {
            return Err(Error::Recipe(format!(
                "method.mask_block = {} must divide the {grid}×{grid} patch grid ({} px / {} px patches)",
                config.mask_block, shape.side, build.model.patch_size
            )));
        }
        let encoder = build.model.init(shape, device);
        let v = vit(&encoder);
        let (d, p) = (v.out_dim(), v.patch_size());
        Ok(SimMim {
            mask_token: Param::from_tensor(Tensor::zeros([1, 1, d], device)),
            pred: linear(d, p * p * shape.channels, device),
            encoder,
            mask_ratio: config.mask_ratio,
            mask_block: config.mask_block,
            seed: build.seed,
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

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let stages = vit_with_head(self.vit(), sides[0], &self.pred, "prediction");
        let [_, out] = self.pred.weight.dims();
        let patches = (sides[0] / self.vit().patch_size()).pow(2);
        StepCost {
            passes: vec![Pass::trained("encoder + prediction head", 1, stages)],
            // The prediction's absolute error against the target patches, masked.
            loss: 3 * (batch * patches * out) as u64,
        }
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
