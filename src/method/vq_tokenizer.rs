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
use burn::tensor::{Device, Distribution, Int, Tensor};

use super::mim::{Reconstruction, vit};
use super::{Codes, LossTerm, Method, Progress, StepOutput};
use crate::error::Result;
use crate::kernels::linear_layer;
use crate::loss::l2_normalize;
use crate::nn::backbone::ImageShape;
use crate::nn::decoder::{Decoder, DecoderConfig};
use crate::nn::patches::{patchify, unpatchify};
use crate::nn::vit::linear;
use crate::nn::{Backbone, Vit};
use crate::recipe::Recipe;

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
    const CENTRED_DIAGNOSTICS: bool = true;

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> Result<Self> {
        let encoder = recipe.model.init(shape, device);
        let v = vit(&encoder);
        let m = &recipe.method;
        let p = v.patch_size();
        Ok(VqTokenizer {
            to_code: linear(v.out_dim(), m.code_dim, device),
            codebook: Param::from_tensor(Tensor::random(
                [m.codebook_size, m.code_dim],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            decoder: DecoderConfig::pixels(m.code_dim, m, shape, p).init(device),
            usage: Param::from_tensor(Tensor::full(
                [m.codebook_size],
                1.0 / m.codebook_size as f64,
                device,
            ))
            .set_require_grad(false),
            encoder,
            commitment: m.commitment,
            restart_codes: m.restart_codes,
            seed: recipe.train.seed,
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
            codes: Some(Codes {
                ids: q.ids,
                size: self.codebook_size(),
            }),
            distillation: None,
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

    fn encoder(&self) -> &Backbone {
        &self.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.encoder.forward(images)
    }

    fn codes(&self, images: Tensor<4>) -> Option<Codes> {
        Some(Codes {
            ids: self.quantize(images).ids,
            size: self.codebook_size(),
        })
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
mod tests {
    use super::*;
    use crate::host::to_f32;
    use crate::nn::backbone::Arch;
    use burn::tensor::Distribution;

    fn tiny(device: &Device) -> VqTokenizer {
        let mut recipe = Recipe::default();
        recipe.method.name = crate::method::MethodName::VqTokenizer;
        (recipe.method.codebook_size, recipe.method.code_dim) = (8, 4);
        (recipe.method.decoder_dim, recipe.method.decoder_heads) = (16, 2);
        recipe.model.arch = Arch::Vit;
        (
            recipe.model.embed_dim,
            recipe.model.depth,
            recipe.model.heads,
        ) = (16, 1, 2);
        let shape = ImageShape {
            channels: 1,
            side: 8,
        };
        VqTokenizer::init(&recipe, shape, device).unwrap()
    }

    #[test]
    fn each_patch_takes_its_nearest_code_and_gradients_pass_straight_through() {
        let device = Device::flex().autodiff();
        let vq = tiny(&device);
        let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let q = vq.quantize(images.clone());
        let (z, ids) = (to_f32(q.z.clone()), crate::host::to_i64(q.ids.clone()));
        let book = to_f32(l2_normalize(vq.codebook.val()));
        for (row, &id) in z.chunks_exact(4).zip(&ids) {
            let dist =
                |k: usize| -> f32 { (0..4).map(|j| (row[j] - book[k * 4 + j]).powi(2)).sum() };
            let best = (0..8).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
            assert_eq!(id as usize, best);
        }
        assert_eq!(
            to_f32(q.codes),
            ids.iter()
                .flat_map(|&k| book[k as usize * 4..][..4].to_vec())
                .collect::<Vec<_>>()
        );

        let out = vq.step(
            &[images],
            Progress {
                step: 0,
                total_steps: 1,
            },
        );
        let grads = out.loss.backward();
        // The encoder learns through the quantizer (straight-through + commitment), the codebook
        // through the codebook term.
        assert!(vq.to_code.weight.val().grad(&grads).is_some());
        assert!(vq.codebook.val().grad(&grads).is_some());
        assert!(vq.usage.val().grad(&grads).is_none());
    }
}
