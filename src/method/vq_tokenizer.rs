//! A VQ-VAE-style visual tokenizer (van den Oord et al. 2017), trained by selfsup as BEiT's first
//! stage in place of the DALL-E dVAE: a ViT encodes patches, each patch vector snaps to its nearest
//! code of a learned codebook (codes and vectors L2-normalised, as ViT-VQGAN, which keeps far more
//! of the codebook in use), and a small transformer decodes the code grid back to pixels. Loss:
//! reconstruction MSE + ‖sg(z) − e‖² (moves codes) + β‖z − sg(e)‖² (commitment); gradients pass
//! the quantizer straight through. Codes that go unused (their running share of assignments falls
//! below 3% of uniform: about 30 steps without a hit) restart at a random encoder output of the batch (Dhariwal et al. 2020,
//! Jukebox), the standard remedy for a codebook that collapses onto a few codes.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Distribution, Int, Tensor};

use serde::{Deserialize, Serialize};

use super::mim::{Reconstruction, vit, vit_with_head};
use super::{
    About, Build, Codes, LossTerm, Method, MethodName, Needs, Pass, Progress, Settings, Signal,
    StepCost, StepOutput,
};
use crate::augment::AugmentConfig;
use crate::error::Result;
use crate::kernels::linear_layer;
use crate::loss::l2_normalize;
use crate::nn::cost::{Stage, shape};
use crate::nn::decoder::{Decoder, DecoderConfig, DecoderSize};
use crate::nn::patches::{patchify, unpatchify};
use crate::nn::vit::linear;
use crate::nn::{Backbone, ModelConfig, Vit};

/// `[method]` settings of `vq-tokenizer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VqTokenizerConfig {
    /// Number of codes in the codebook.
    pub codebook_size: usize,
    /// Width of each code (codes and encoder outputs are L2-normalised).
    pub code_dim: usize,
    /// Weight β of the commitment term ‖z − sg(e)‖².
    pub commitment: f64,
    /// Restart codes that fall out of use at random encoder outputs (off: watch the codebook
    /// collapse).
    pub restart_codes: bool,
    /// The pixel decoder's width, blocks and heads.
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
}

impl Default for VqTokenizerConfig {
    fn default() -> Self {
        VqTokenizerConfig {
            codebook_size: 512,
            code_dim: 32,
            commitment: 0.25,
            restart_codes: true,
            decoder_dim: 128,
            decoder_depth: 2,
            decoder_heads: 4,
        }
    }
}

impl VqTokenizerConfig {
    fn decoder(&self) -> DecoderSize {
        DecoderSize {
            dim: self.decoder_dim,
            depth: self.decoder_depth,
            heads: self.decoder_heads,
        }
    }
}

impl Settings for VqTokenizerConfig {
    fn validate(
        &self,
        _model: &ModelConfig,
        _augment: &AugmentConfig,
    ) -> std::result::Result<(), String> {
        self.decoder().validate()?;
        if self.codebook_size < 2 || self.code_dim == 0 {
            return Err(
                "method.codebook_size must be at least 2 and method.code_dim at least 1".into(),
            );
        }
        if !(self.commitment.is_finite() && self.commitment >= 0.0) {
            return Err(format!(
                "method.commitment = {} must be ≥ 0 (0.25 in the VQ-VAE paper)",
                self.commitment
            ));
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct VqTokenizer {
    pub encoder: Backbone,
    /// Patch token → code space.
    pub to_code: Linear,
    /// `[codebook_size, code_dim]`, used L2-normalised.
    pub codebook: Param<Tensor<2>>,
    /// Code grid → patch pixels.
    pub decoder: Decoder,
    /// Running share of assignments per code (EMA over steps); no gradient, kept in checkpoints.
    pub usage: Param<Tensor<1>>,
    commitment: f64,
    restart_codes: bool,
    seed: u64,
}

/// Running-usage decay per step.
const USAGE_DECAY: f64 = 0.9;
/// A code whose running share falls below this fraction of the uniform 1/K restarts.
const DEAD_SHARE: f64 = 0.03;

/// One pass through the quantizer.
pub struct Quantized {
    /// Normalised encoder outputs `[b·n, c]`.
    pub z: Tensor<2>,
    /// Their nearest normalised codes `[b·n, c]`.
    pub codes: Tensor<2>,
    /// Code ids `[b·n]`.
    pub ids: Tensor<1, Int>,
    /// The encoder's pooled representation of the images (what evaluation sees), `[b, d]`.
    pub features: Tensor<2>,
}

impl VqTokenizer {
    fn vit(&self) -> &Vit {
        vit(&self.encoder)
    }

    pub fn codebook_size(&self) -> usize {
        self.codebook.val().dims()[0]
    }

    fn normalized_codebook(&self) -> Tensor<2> {
        l2_normalize(self.codebook.val())
    }

    /// Encodes and quantizes `images`.
    /// The cost table of one `side`-pixel image up to the code vectors: the ViT, then the
    /// projection of each patch token to the codebook's width.
    pub fn code_stages(&self, side: usize) -> Vec<Stage> {
        vit_with_head(self.vit(), side, &self.to_code, "to_code")
    }

    pub fn quantize(&self, images: Tensor<4>) -> Quantized {
        let vit = self.vit();
        let all = vit.forward_tokens(images);
        let features = vit.pool(all.clone());
        let tokens = vit.patch_part(all);
        let [b, n, d] = tokens.dims();
        let z = l2_normalize(linear_layer(&self.to_code, tokens.reshape([b * n, d])));
        let book = self.normalized_codebook();
        // Nearest code by cosine = by Euclidean distance, both being unit vectors.
        let ids = z.clone().matmul(book.clone().transpose()).argmax(1);
        let ids = ids.reshape([b * n]);
        let codes = book.select(0, ids.clone());
        Quantized {
            z,
            codes,
            ids,
            features,
        }
    }

    /// The code id of every patch: `[b, n]` (BEiT's targets).
    pub fn tokens(&self, images: Tensor<4>) -> Tensor<2, Int> {
        let b = images.dims()[0];
        let ids = self.quantize(images).ids;
        let n = ids.dims()[0] / b;
        ids.reshape([b, n])
    }

    /// Pixels `[b, n, p·p·c]` decoded from a `[b, n, code_dim]` grid of code vectors.
    fn decode_vectors(&self, codes: Tensor<3>) -> Tensor<3> {
        self.decoder.forward(self.decoder.embed(codes))
    }

    /// Images decoded from code ids `[b, n]`.
    pub fn decode_ids(&self, ids: Tensor<2, Int>, channels: usize) -> Tensor<4> {
        let [b, n] = ids.dims();
        let book = self.normalized_codebook();
        let c = book.dims()[1];
        let codes = book.select(0, ids.reshape([b * n])).reshape([b, n, c]);
        unpatchify(
            self.decode_vectors(codes),
            self.vit().patch_size(),
            channels,
        )
    }
}

impl Method for VqTokenizer {
    /// The step's code ids and normalised encoder outputs, for usage tracking and restarts.
    type Carry = (Tensor<1, Int>, Tensor<2>);
    type Config = VqTokenizerConfig;
    const NEEDS: Needs = Needs::MASKED_VIT;
    const CENTRED_DIAGNOSTICS: bool = true;

    fn about(_name: MethodName) -> About {
        About {
            title: "VQ tokenizer",
            family: "BEiT's first stage",
            prevents_collapse: "commitment loss; codebook usage is monitored",
            negatives: false,
        }
    }

    fn collapse_hint(_config: &VqTokenizerConfig) -> &'static str {
        super::mim::COLLAPSE_HINT
    }

    fn init(m: &VqTokenizerConfig, build: &Build) -> Result<Self> {
        let (shape, device) = (build.shape, build.device);
        let encoder = build.model.init(shape, device);
        let v = vit(&encoder);
        let p = v.patch_size();
        Ok(VqTokenizer {
            to_code: linear(v.out_dim(), m.code_dim, device),
            codebook: Param::from_tensor(Tensor::random(
                [m.codebook_size, m.code_dim],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            decoder: DecoderConfig::pixels(m.code_dim, m.decoder(), shape, p).init(device),
            usage: Param::from_tensor(Tensor::full(
                [m.codebook_size],
                1.0 / m.codebook_size as f64,
                device,
            ))
            .set_require_grad(false),
            encoder,
            commitment: m.commitment,
            restart_codes: m.restart_codes,
            seed: build.seed,
        })
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<Self::Carry> {
        let images = views[0].clone();
        let b = images.dims()[0];
        let q = self.quantize(images.clone());
        let [bn, c] = q.z.dims();
        let codebook_term = (q.z.clone().detach() - q.codes.clone())
            .square()
            .sum_dim(1)
            .mean();
        let commitment_term = (q.z.clone() - q.codes.clone().detach())
            .square()
            .sum_dim(1)
            .mean();
        // Straight-through: the decoder sees the codes, the encoder gets the decoder's gradient.
        let z_seen = q.z.clone().detach();
        let straight = q.z.clone() + (q.codes - q.z).detach();
        let pred = self.decode_vectors(straight.reshape([b, bn / b, c]));
        let target = patchify(images, self.vit().patch_size());
        let reconstruction = (pred - target).square().mean();
        let loss = reconstruction.clone()
            + codebook_term.clone()
            + commitment_term.clone().mul_scalar(self.commitment);
        let embeddings = q.features.detach();
        StepOutput {
            loss,
            embeddings,
            terms: vec![
                LossTerm {
                    name: "reconstruction",
                    value: reconstruction.detach(),
                },
                LossTerm {
                    name: "codebook",
                    value: codebook_term.detach(),
                },
                LossTerm {
                    name: "commitment",
                    value: commitment_term.detach(),
                },
            ],
            carry: (q.ids.clone(), z_seen),
            signals: vec![Signal::Codes(Codes {
                ids: q.ids,
                size: self.codebook_size(),
            })],
        }
    }

    fn after_step(mut self, (ids, z): Self::Carry, progress: Progress) -> Self {
        let k = self.codebook_size();
        let n = ids.dims()[0];
        let share = ids
            .one_hot::<2>(k)
            .float()
            .sum_dim(0)
            .reshape([k])
            .div_scalar(n as f64);
        let usage =
            self.usage.val().detach().mul_scalar(USAGE_DECAY) + share.mul_scalar(1.0 - USAGE_DECAY);
        let dead = usage.clone().lower_elem(DEAD_SHARE / k as f64);
        if self.restart_codes {
            // Dead codes jump to random encoder outputs of this batch (a function of seed and
            // step, so a resumed run restarts the same codes).
            let mut rng = super::mim::mask_rng(self.seed ^ 0x5651, progress.step);
            let picks: Vec<i64> = (0..k)
                .map(|_| rand::Rng::random_range(&mut rng, 0..n as i64))
                .collect();
            let device = z.device();
            let picks =
                Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(picks, [k]), &device);
            let fresh = z.select(0, picks);
            let dead_rows = dead.clone().reshape([k, 1]).expand(fresh.dims());
            self.codebook = self.codebook.map(|book| {
                let restarted = book
                    .clone()
                    .inner()
                    .mask_where(dead_rows.inner(), fresh.inner());
                Tensor::from_inner(restarted).require_grad()
            });
        }
        let usage = usage.mask_fill(dead, 1.0 / k as f64);
        self.usage = self.usage.map(|_| usage);
        self
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let mut stages = self.code_stages(sides[0]);
        let patches = (sides[0] / self.vit().patch_size()).pow(2);
        let decoder = self.decoder.cost(patches, patches, patches);
        let out = self.decoder.pred.weight.dims()[1];
        let output = shape(&[patches, out]);
        stages.push(Stage::new(
            "decoder",
            output,
            self.decoder.num_params(),
            decoder,
        ));
        let [codes, width] = self.codebook.dims();
        StepCost {
            passes: vec![Pass::trained("encoder + codes + decoder", 1, stages)],
            // Each patch's similarity to every code, the two code-distance terms, and the
            // decoded pixels' error.
            loss: (batch * patches * (codes + 4 * width + 3 * out)) as u64,
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.encoder.forward(images)
    }

    fn signals(&self, images: Tensor<4>) -> Vec<Signal> {
        vec![Signal::Codes(Codes {
            ids: self.quantize(images).ids,
            size: self.codebook_size(),
        })]
    }

    fn reconstruct(&self, images: Tensor<4>, _step: usize) -> Option<Reconstruction> {
        let channels = images.dims()[1];
        let ids = self.tokens(images);
        Some(Reconstruction {
            masks: Vec::new(),
            prediction: self.decode_ids(ids, channels),
        })
    }
}

#[cfg(test)]
mod tests;
