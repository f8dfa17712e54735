//! BEiT (Bao et al. 2021): block-wise masking of ~40% of the patches, masked patch embeddings
//! replaced by a learned [MASK] embedding, and a softmax over the visual tokenizer's codebook
//! predicting each masked patch's code; cross-entropy on masked positions only. The tokenizer is a
//! `vq-tokenizer` run trained beforehand (`method.tokenizer`), frozen.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Distribution, Tensor};

use serde::{Deserialize, Serialize};

use super::mim::{
    Reconstruction, check_block, check_mask_ratio, mask_rng, mask_tensor, predict_masked, vit,
    vit_with_head,
};
use super::{
    About, Build, Method, MethodName, Needs, Pass, Progress, Settings, StepCost, StepOutput,
    VqTokenizer,
};
use crate::augment::AugmentConfig;
use crate::augment::mask::blockwise;
use crate::error::{Error, Result};
use crate::loss::masked_cross_entropy;
use crate::nn::vit::linear;
use crate::nn::{Backbone, ModelConfig, Vit};

/// `[method]` settings of `beit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeitConfig {
    /// Fraction of patches masked (0.4 in the paper).
    pub mask_ratio: f64,
    /// Fewest patches in one masking rectangle (16 in the paper, for a 14×14 grid).
    pub mask_min_block: usize,
    /// Run directory of the `vq-tokenizer` run whose codes are the prediction targets.
    pub tokenizer: String,
}

impl Default for BeitConfig {
    fn default() -> Self {
        BeitConfig {
            mask_ratio: 0.75,
            mask_min_block: 4,
            tokenizer: String::new(),
        }
    }
}

impl Settings for BeitConfig {
    fn validate(
        &self,
        _model: &ModelConfig,
        _augment: &AugmentConfig,
    ) -> std::result::Result<(), String> {
        check_mask_ratio(self.mask_ratio)?;
        check_block("mask_min_block", self.mask_min_block)
    }
}

/// What to do when BEiT has no tokenizer to learn from.
pub const TOKENIZER_HINT: &str = "train one first: selfsup train --method vq-tokenizer --out runs/vq-tokenizer, then --set method.tokenizer=runs/vq-tokenizer";

#[derive(Module, Debug)]
pub struct Beit {
    pub encoder: Backbone,
    /// The [MASK] embedding (encoder width).
    pub mask_token: Param<Tensor<3>>,
    /// Patch token → logits over the tokenizer's codebook.
    pub head: Linear,
    /// Frozen: it makes the targets and draws reconstructions.
    pub tokenizer: VqTokenizer,
    mask_ratio: f64,
    mask_min_block: usize,
    seed: u64,
}

impl Beit {
    fn vit(&self) -> &Vit {
        vit(&self.encoder)
    }

    fn draw(&self, b: usize, step: usize) -> Vec<Vec<bool>> {
        let grid = self.vit().grid();
        let mut rng = mask_rng(self.seed, step);
        (0..b)
            .map(|_| blockwise(&mut rng, grid, self.mask_ratio, self.mask_min_block))
            .collect()
    }

    /// Codebook logits `[b, n, K]` for images with `mask` applied, and the encoder's tokens.
    fn logits(&self, images: Tensor<4>, mask: Tensor<2>) -> (Tensor<3>, Tensor<3>) {
        predict_masked(self.vit(), images, mask, self.mask_token.val(), &self.head)
    }
}

impl Method for Beit {
    type Config = BeitConfig;
    type Carry = ();
    const NEEDS: Needs = Needs::MASKED_VIT;
    const CENTRED_DIAGNOSTICS: bool = true;

    fn about(_name: MethodName) -> About {
        super::mim::about("BEiT", "discrete-token reconstruction target")
    }

    fn collapse_hint(_config: &BeitConfig) -> &'static str {
        super::mim::COLLAPSE_HINT
    }

    fn init(config: &BeitConfig, build: &Build) -> Result<Self> {
        let (shape, device) = (build.shape, build.device);
        if config.tokenizer.is_empty() {
            return Err(Error::Recipe(format!(
                "method.tokenizer is empty: BEiT predicts the codes of a trained tokenizer; {TOKENIZER_HINT}"
            )));
        }
        let tokenizer = build
            .runs
            .tokenizer(Path::new(&config.tokenizer), shape, device)?
            .no_grad();
        let encoder = build.model.init(shape, device);
        let d = vit(&encoder).out_dim();
        Ok(Beit {
            mask_token: Param::from_tensor(Tensor::random(
                [1, 1, d],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            head: linear(d, tokenizer.codebook_size(), device),
            encoder,
            tokenizer,
            mask_ratio: config.mask_ratio,
            mask_min_block: config.mask_min_block,
            seed: build.seed,
        })
    }

    fn step(&self, views: &[Tensor<4>], progress: Progress) -> StepOutput<()> {
        let images = views[0].clone();
        let targets = self.tokenizer.tokens(images.clone());
        let masks = self.draw(images.dims()[0], progress.step);
        let mask = mask_tensor(&masks, &images.device());
        let (logits, tokens) = self.logits(images, mask.clone());
        let loss = masked_cross_entropy(logits, targets, mask);
        StepOutput::plain(loss, self.vit().pool(tokens).detach())
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let stages = vit_with_head(self.vit(), sides[0], &self.head, "code logits");
        let [_, vocabulary] = self.head.weight.dims();
        let patches = (sides[0] / self.vit().patch_size()).pow(2);
        StepCost {
            passes: vec![
                Pass::trained("encoder + code head", 1, stages),
                Pass::frozen("tokenizer", 1, self.tokenizer.code_stages(sides[0])),
            ],
            // The code logits' log-softmax over the vocabulary, at every patch.
            loss: 2 * (batch * patches * vocabulary) as u64,
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.encoder.forward(images)
    }

    fn reconstruct(&self, images: Tensor<4>, step: usize) -> Option<Reconstruction> {
        // The codes BEiT predicts, decoded by the tokenizer: what the model "sees" under the mask.
        let channels = images.dims()[1];
        let masks = self.draw(images.dims()[0], step);
        let mask = mask_tensor(&masks, &images.device());
        let (logits, _) = self.logits(images, mask);
        let predicted = logits.argmax(2).squeeze_dim(2);
        Some(Reconstruction {
            masks,
            prediction: self.tokenizer.decode_ids(predicted, channels),
        })
    }
}
