//! BEiT (Bao et al. 2021): block-wise masking of ~40% of the patches, masked patch embeddings
//! replaced by a learned [MASK] embedding, and a softmax over the visual tokenizer's codebook
//! predicting each masked patch's code; cross-entropy on masked positions only. The tokenizer is a
//! `vq-tokenizer` run trained beforehand (`method.tokenizer`), frozen.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor};

use super::mim::{Reconstruction, mask_rng, mask_tensor, predict_masked, vit};
use super::{Method, MethodName, Progress, StepOutput, VqTokenizer};
use crate::augment::mask::blockwise;
use crate::error::{Error, Result};
use crate::loss::masked_cross_entropy;
use crate::nn::backbone::ImageShape;
use crate::nn::vit::linear;
use crate::nn::{Backbone, Vit};
use crate::recipe::Recipe;
use crate::run::{RunDir, load_module};

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

/// The trained tokenizer of the `vq-tokenizer` run at `path`, for images of `shape`, frozen.
pub fn load_tokenizer(path: &Path, shape: ImageShape, device: &Device) -> Result<VqTokenizer> {
    let hint = "train one first: selfsup train --method vq-tokenizer --out runs/vq-tokenizer, then --set method.tokenizer=runs/vq-tokenizer";
    if path.as_os_str().is_empty() {
        return Err(Error::Recipe(format!(
            "method.tokenizer is empty: BEiT predicts the codes of a trained tokenizer; {hint}"
        )));
    }
    let run = RunDir::open(path).map_err(|e| {
        Error::Recipe(format!(
            "method.tokenizer = {}: {e}; {hint}",
            path.display()
        ))
    })?;
    let recipe = run.recipe()?;
    if recipe.method.name != MethodName::VqTokenizer {
        return Err(Error::Recipe(format!(
            "method.tokenizer = {}: that run trained {}, not vq-tokenizer; {hint}",
            path.display(),
            recipe.method.name
        )));
    }
    let info = run.info()?;
    if info.shape() != shape {
        return Err(Error::Recipe(format!(
            "method.tokenizer = {}: it was trained on {}-channel {} px images, BEiT sees {}-channel {} px; train the tokenizer with the same data.image_size",
            path.display(),
            info.channels,
            info.image_side,
            shape.channels,
            shape.side
        )));
    }
    let dir = crate::train::checkpoint::latest(&run).ok_or_else(|| {
        Error::Recipe(format!(
            "method.tokenizer = {}: the run has no checkpoint yet; finish it with selfsup train --resume --out {}",
            path.display(),
            path.display()
        ))
    })?;
    let tokenizer = load_module(
        VqTokenizer::init(&recipe, shape, device)?,
        &dir.join("model.bpk"),
    )?;
    Ok(tokenizer.no_grad())
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
    type Carry = ();
    const CENTRED_DIAGNOSTICS: bool = true;

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> Result<Self> {
        let tokenizer = load_tokenizer(Path::new(&recipe.method.tokenizer), shape, device)?;
        let encoder = recipe.model.init(shape, device);
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
            mask_ratio: recipe.method.mask_ratio,
            mask_min_block: recipe.method.mask_min_block,
            seed: recipe.train.seed,
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
