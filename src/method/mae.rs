//! MAE (He et al. 2021): the encoder sees only a random 25% of the patches, no mask tokens; a light
//! decoder gets the encoded visible tokens plus a shared mask token at every masked position (with
//! its own sin-cos positions) and predicts pixels; MSE on masked patches only, against patches
//! standardised by their own mean and variance (norm_pix_loss).

use burn::module::{Module, Param};
use burn::tensor::{Distribution, Tensor};

use serde::{Deserialize, Serialize};

use super::mim::{Reconstruction, check_mask_ratio, mask_rng, vit};
use super::{
    About, Build, JoinCarries, Method, MethodName, Needs, Pass, Progress, Settings, StepCost,
    StepOutput,
};
use crate::augment::AugmentConfig;
use crate::augment::mask::Shuffle;
use crate::error::Result;
use crate::loss::{mse, normalize_patches, patch_mean_std};
use crate::nn::cost::{Stage, shape};
use crate::nn::decoder::{Decoder, DecoderConfig, DecoderSize};
use crate::nn::patches::{gather_rows, patchify, select_rows, unpatchify};
use crate::nn::{Backbone, ModelConfig, Vit};

/// `[method]` settings of `mae`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaeConfig {
    /// Fraction of patches masked (0.75 in the paper).
    pub mask_ratio: f64,
    /// Predict each patch standardised by its own mean and variance (norm_pix_loss).
    pub norm_pix_loss: bool,
    /// Decoder width, blocks and heads (the paper's 512 × 8 with 16 heads).
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
}

impl Default for MaeConfig {
    fn default() -> Self {
        MaeConfig {
            mask_ratio: 0.75,
            norm_pix_loss: true,
            decoder_dim: 128,
            decoder_depth: 2,
            decoder_heads: 4,
        }
    }
}

impl MaeConfig {
    fn decoder(&self) -> DecoderSize {
        DecoderSize {
            dim: self.decoder_dim,
            depth: self.decoder_depth,
            heads: self.decoder_heads,
        }
    }
}

impl Settings for MaeConfig {
    fn validate(
        &self,
        _model: &ModelConfig,
        _augment: &AugmentConfig,
    ) -> std::result::Result<(), String> {
        check_mask_ratio(self.mask_ratio)?;
        self.decoder().validate()
    }
}

#[derive(Module, Debug)]
pub struct Mae {
    pub encoder: Backbone,
    pub decoder: Decoder,
    /// The decoder-width token placed at every masked position.
    pub mask_token: Param<Tensor<3>>,
    mask_ratio: f64,
    norm_pix_loss: bool,
    seed: u64,
}

/// The encoder's side of one MAE forward pass.
pub struct Encoded {
    /// Normed tokens of CLS, registers and the visible patches: `[b, 1 + r + keep, d]`.
    pub tokens: Tensor<3>,
    pub shuffles: Vec<Shuffle>,
}

impl Mae {
    fn vit(&self) -> &Vit {
        vit(&self.encoder)
    }

    /// Random shuffles for a batch of `b` images at `step`.
    pub fn draw(&self, b: usize, step: usize) -> Vec<Shuffle> {
        self.draw_from(0, b, step)
    }

    /// The shuffles of images `first..first + b` of a batch at `step`: those the whole
    /// batch's draw gives them.
    fn draw_from(&self, first: usize, b: usize, step: usize) -> Vec<Shuffle> {
        let n = self.vit().num_patches();
        let mut rng = mask_rng(self.seed, step);
        (0..first + b)
            .map(|_| Shuffle::draw(&mut rng, n, self.mask_ratio))
            .skip(first)
            .collect()
    }

    /// Runs the encoder on the visible patches only: each sample's kept patches (by its shuffle)
    /// are embedded with their positions and CLS is prepended, so masked patches never enter.
    pub fn encode_visible(&self, images: Tensor<4>, shuffles: Vec<Shuffle>) -> Encoded {
        let vit = self.vit();
        let keep: Vec<&[usize]> = shuffles.iter().map(|s| &s.order[..s.keep]).collect();
        let visible = vit.embed_patches_at(images, &keep);
        Encoded {
            tokens: vit.encode(vit.prepend_prefix(visible)),
            shuffles,
        }
    }

    /// Pixel predictions `[b, n, p·p·c]` for every patch from the encoded visible tokens.
    pub fn decode(&self, encoded: &Encoded) -> Tensor<3> {
        self.decoder.forward_positioned(self.decoder_input(encoded))
    }

    /// Pixel predictions `[b, n − keep, p·p·c]` of the masked patches only, in each shuffle's
    /// order (the rows of [`Mae::decode`] that the loss reads, without the visible rows' work in
    /// the decoder's last block).
    pub fn decode_masked(&self, encoded: &Encoded) -> Tensor<3> {
        // Row 0 of each image's sequence is CLS, then one per patch.
        let rows: Vec<Vec<usize>> = encoded
            .shuffles
            .iter()
            .map(|s| s.order[s.keep..].iter().map(|&p| 1 + p).collect())
            .collect();
        let rows: Vec<&[usize]> = rows.iter().map(Vec::as_slice).collect();
        self.decoder
            .predict_rows(self.decoder_input(encoded), &rows)
    }

    /// The decoder's input `[b, 1 + n, dd]`, one row gather: CLS and the visible tokens,
    /// embedded with their decoder positions as the product's initial value, and the mask token
    /// at each masked patch's position (one row per patch, shared by the batch), each put at its
    /// patch.
    fn decoder_input(&self, encoded: &Encoded) -> Tensor<3> {
        let [b, m, _] = encoded.tokens.dims();
        let prefix = self.vit().prefix_len();
        let shuffles = &encoded.shuffles;
        let n = shuffles[0].order.len();
        let keep = m - prefix;
        let table = self.decoder.pos_embed.val();
        let dd = table.dims()[2];
        assert_eq!(
            table.dims()[1],
            1 + n,
            "decoder positions: CLS and every patch"
        );
        let table = table.reshape([1 + n, dd]);
        // Each encoded row's decoder position: CLS's (and the registers', dropped below) first,
        // then the visible patches'.
        let positions = shuffles.iter().flat_map(|s| {
            (0..prefix)
                .map(|_| 0)
                .chain(s.order[..keep].iter().map(|&p| 1 + p as i64))
        });
        let positions = gather_rows(table.clone(), positions.collect()).reshape([b, m, dd]);
        let embed = &self.decoder.embed;
        let x = crate::kernels::linear_plus(
            positions,
            encoded.tokens.clone(),
            embed.weight.val(),
            embed.bias.as_ref().map(|bias| bias.val()),
        );
        let masked = table.slice([1..1 + n, 0..dd]) + self.mask_token.val().reshape([1, dd]);
        let rows = Tensor::cat(vec![x.reshape([b * m, dd]), masked], 0);
        let sequence = shuffles.iter().enumerate().flat_map(|(i, s)| {
            let restore = s.restore();
            let first = (i * m) as i64;
            std::iter::once(first).chain(restore.into_iter().enumerate().map(move |(p, pos)| {
                if pos < keep {
                    first + (prefix + pos) as i64
                } else {
                    (b * m + p) as i64
                }
            }))
        });
        gather_rows(rows, sequence.collect()).reshape([b, 1 + n, dd])
    }

    /// The masked patches' targets `[b, n − keep, p·p·c]`, in each shuffle's order.
    fn masked_target(&self, images: Tensor<4>, shuffles: &[Shuffle]) -> Tensor<3> {
        let masked: Vec<&[usize]> = shuffles.iter().map(|s| &s.order[s.keep..]).collect();
        let target = select_rows(patchify(images, self.vit().patch_size()), &masked);
        if self.norm_pix_loss {
            normalize_patches(target)
        } else {
            target
        }
    }
}

impl Method for Mae {
    type Config = MaeConfig;
    type Carry = ();
    const NEEDS: Needs = Needs::MASKED_VIT;
    const CENTRED_DIAGNOSTICS: bool = true;
    // Each image's loss is the mean over its own masked patches, as many for every image.
    const JOIN_HALVES: Option<JoinCarries<()>> = Some(|(), ()| ());

    fn about(_name: MethodName) -> About {
        super::mim::about("MAE", "pixel reconstruction of masked patches")
    }

    fn collapse_hint(_config: &MaeConfig) -> &'static str {
        super::mim::COLLAPSE_HINT
    }

    fn init(config: &MaeConfig, build: &Build) -> Result<Self> {
        let device = build.device;
        let encoder = build.model.init(build.shape, device);
        let vit = vit(&encoder);
        let p = vit.patch_size();
        let decoder =
            DecoderConfig::pixels(vit.out_dim(), config.decoder(), build.shape, p).init(device);
        Ok(Mae {
            encoder,
            decoder,
            mask_token: Param::from_tensor(Tensor::random(
                [1, 1, config.decoder_dim],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            mask_ratio: config.mask_ratio,
            norm_pix_loss: config.norm_pix_loss,
            seed: build.seed,
        })
    }

    fn step(&self, views: &[Tensor<4>], progress: Progress) -> StepOutput<()> {
        let images = views[0].clone();
        let shuffles = self.draw_from(progress.first_image, images.dims()[0], progress.step);
        let encoded = self.encode_visible(images.clone(), shuffles);
        let pred = self.decode_masked(&encoded);
        let loss = mse(pred, self.masked_target(images, &encoded.shuffles));
        StepOutput::plain(loss, self.vit().pool(encoded.tokens).detach())
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let vit = self.vit();
        let patches = (sides[0] / vit.patch_size()).pow(2);
        let visible = Shuffle::draw(&mut mask_rng(0, 0), patches, self.mask_ratio).keep;
        let masked = patches - visible;
        let mut stages = vit.costs(sides[0], |_| visible);
        let out = self.decoder.pred.weight.dims()[1];
        // The decoder sees CLS and every patch, and predicts the masked ones.
        let decoder = self
            .decoder
            .cost(visible + vit.prefix_len(), patches + 1, masked);
        let decoder_params = self.decoder.num_params() + self.mask_token.num_params();
        let output = shape(&[masked, out]);
        stages.push(Stage::new("decoder", output, decoder_params, decoder));
        StepCost {
            passes: vec![Pass::trained(
                "encoder (visible patches) + decoder",
                1,
                stages,
            )],
            // The prediction's error against the masked patches' targets, squared.
            loss: 3 * (batch * masked * out) as u64,
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.encoder.forward(images)
    }

    fn reconstruct(&self, images: Tensor<4>, step: usize) -> Option<Reconstruction> {
        let shuffles = self.draw(images.dims()[0], step);
        let masks = shuffles.iter().map(Shuffle::mask).collect();
        let mut pred = self.decode(&self.encode_visible(images.clone(), shuffles));
        let p = self.vit().patch_size();
        let channels = images.dims()[1];
        if self.norm_pix_loss {
            // The model predicts standardised patches; show them at the original patch's mean and
            // spread (MAE's visualisation does the same).
            let (mean, std) = patch_mean_std(patchify(images, p));
            pred = pred * std + mean;
        }
        Some(Reconstruction {
            masks,
            prediction: unpatchify(pred, p, channels),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::to_f32;
    use crate::nn::backbone::{Arch, ImageShape};
    use crate::testing::{assert_same_gradients, close};
    use burn::optim::GradientsParams;
    use burn::tensor::Device;
    use burn::tensor::{Distribution, TensorData};

    fn tiny(device: &Device) -> Mae {
        let config = MaeConfig {
            decoder_dim: 16,
            decoder_heads: 2,
            ..MaeConfig::default()
        };
        let model = ModelConfig {
            arch: Arch::Vit,
            embed_dim: 16,
            depth: 2,
            heads: 2,
            patch_size: 4,
            ..ModelConfig::default()
        };
        let shape = ImageShape {
            channels: 1,
            side: 16,
        };
        Mae::init(&config, &Build::new(MethodName::Mae, &model, shape, device)).unwrap()
    }

    /// Sets every pixel of patch `p` (4×4 patches on a 16×16 grid of 4 × 4 patches) to `value`.
    fn paint(images: &mut [f32], sample: usize, p: usize, value: f32) {
        let (r, c) = (p / 4, p % 4);
        for y in 0..4 {
            for x in 0..4 {
                images[sample * 256 + (r * 4 + y) * 16 + c * 4 + x] = value;
            }
        }
    }

    #[test]
    fn encoder_sees_only_visible_patches_and_no_mask_tokens() {
        let device = Device::flex();
        let mae = tiny(&device);
        let images = Tensor::<4>::random([3, 1, 16, 16], Distribution::Default, &device);
        let mut pixels = to_f32(images.clone());
        let shuffles = mae.draw(3, 7);
        let encoded = mae.encode_visible(images, shuffles.clone());
        // 16 patches at ratio 0.75: CLS + 4 visible tokens, no slot for any masked patch.
        assert_eq!(encoded.tokens.dims(), [3, 1 + 4, 16]);
        let before = to_f32(encoded.tokens);

        // Any change to masked patches leaves the encoder's output bit-for-bit unchanged…
        for (i, s) in shuffles.iter().enumerate() {
            for &p in &s.order[s.keep..] {
                paint(&mut pixels, i, p, 1e3);
            }
        }
        let changed =
            Tensor::<4>::from_data(TensorData::new(pixels.clone(), [3, 1, 16, 16]), &device);
        let after = to_f32(mae.encode_visible(changed, shuffles.clone()).tokens);
        assert_eq!(before, after);

        // …while a visible patch changes it.
        paint(&mut pixels, 0, shuffles[0].order[0], -1e3);
        let changed = Tensor::<4>::from_data(TensorData::new(pixels, [3, 1, 16, 16]), &device);
        assert_ne!(to_f32(mae.encode_visible(changed, shuffles).tokens), before);
    }

    #[test]
    fn masks_are_a_function_of_the_step() {
        // What makes a resumed run mask exactly as an uninterrupted one.
        let mae = tiny(&Device::flex());
        assert_eq!(mae.draw(4, 12), mae.draw(4, 12));
        assert_ne!(mae.draw(4, 12), mae.draw(4, 13));
        let masks: Vec<Vec<bool>> = mae.draw(4, 12).iter().map(Shuffle::mask).collect();
        assert_ne!(masks[0], masks[1], "each sample draws its own mask");
    }

    #[test]
    fn decoder_puts_each_token_back_at_its_patch() {
        // The decoder's input puts each encoded token back at its own patch and the mask token
        // everywhere else: compared with the sequence laid out by hand from the shuffle.
        let device = Device::flex();
        let mae = tiny(&device);
        let images = Tensor::<4>::random([2, 1, 16, 16], Distribution::Default, &device);
        let shuffles = mae.draw(2, 3);
        let encoded = mae.encode_visible(images, shuffles.clone());
        let pred = mae.decode(&encoded);
        assert_eq!(pred.dims(), [2, 16, 16]);
        // Reference: decoder tokens laid out by hand from the shuffle.
        let x = mae.decoder.embed(encoded.tokens.clone());
        let tokens = to_f32(x);
        let token = to_f32(mae.mask_token.val());
        let dd = 16;
        for (i, s) in shuffles.iter().enumerate() {
            let mut seq = vec![0f32; 17 * dd];
            seq[..dd].copy_from_slice(&tokens[i * 5 * dd..][..dd]);
            for (pos, &p) in s.order.iter().enumerate() {
                let src = if pos < s.keep {
                    &tokens[(i * 5 + 1 + pos) * dd..][..dd]
                } else {
                    &token[..]
                };
                seq[(1 + p) * dd..][..dd].copy_from_slice(src);
            }
            let seq = Tensor::<3>::from_data(TensorData::new(seq, [1, 17, dd]), &device);
            let want = to_f32(mae.decoder.forward(seq));
            let got = to_f32(pred.clone().slice(i..i + 1));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn decoder_gradients_match_laying_the_sequence_out_by_slices() {
        // The gather against the plain composition: embed, split off CLS, append mask tokens,
        // unshuffle, put CLS back, add positions. Gradients to the mask token, the embedding and
        // the encoder's tokens (including CLS and the visible ones) must agree.
        let device = Device::flex().autodiff();
        let mae = tiny(&device);
        let shuffles = mae.draw(3, 5);
        let tokens = Tensor::<3>::random([3, 5, 16], Distribution::Default, &device).require_grad();
        let weights = Tensor::<3>::random([3, 16, 16], Distribution::Default, &device);
        let run = |pred: Tensor<3>| {
            let grads = (pred.clone() * weights.clone()).sum().backward();
            let grad = |t: Tensor<3>| to_f32(t.grad(&grads).unwrap());
            let embed = &mae.decoder.embed;
            [
                to_f32(pred),
                grad(mae.mask_token.val()),
                to_f32(embed.weight.val().grad(&grads).unwrap()),
                to_f32(embed.bias.as_ref().unwrap().val().grad(&grads).unwrap()),
                grad(tokens.clone()),
            ]
        };
        let encoded = Encoded {
            tokens: tokens.clone(),
            shuffles: shuffles.clone(),
        };
        let fast = run(mae.decode(&encoded));
        let x = mae.decoder.embed(tokens.clone());
        let [b, m, dd] = x.dims();
        let cls = x.clone().slice([0..b, 0..1, 0..dd]);
        let visible = x.slice([0..b, 1..m, 0..dd]);
        let masked = mae.mask_token.val().expand([b, 16 - (m - 1), dd]);
        let shuffled = Tensor::cat(vec![visible, masked], 1);
        let restore: Vec<Vec<usize>> = shuffles.iter().map(Shuffle::restore).collect();
        let rows: Vec<&[usize]> = restore.iter().map(Vec::as_slice).collect();
        let ordered = select_rows(shuffled, &rows);
        let reference = run(mae.decoder.forward(Tensor::cat(vec![cls, ordered], 1)));
        for (what, (got, want)) in [
            "predictions",
            "mask token",
            "embed weight",
            "embed bias",
            "tokens",
        ]
        .iter()
        .zip(fast.iter().zip(&reference))
        {
            assert_eq!(got.len(), want.len(), "{what}");
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{what}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn halves_on_two_threads_give_the_whole_batchs_loss_and_gradients() {
        // Five images: halves of two and three, weighted 2/5 and 3/5. The second half must
        // draw the masks of images 2..5 (those of 0..3 change the loss), and each parameter's
        // gradient must be the whole batch's.
        let device = Device::flex().autodiff();
        let mae = tiny(&device);
        let views = vec![Tensor::<4>::random(
            [5, 1, 16, 16],
            Distribution::Default,
            &device,
        )];
        let progress = Progress::at(3, 10);
        let whole = mae.step(&views, progress);
        let whole_grads = GradientsParams::from_grads(whole.loss.backward(), &mae);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (halves, halves_grads) =
            pool.install(|| crate::train::loss_and_gradients(&mae, &views, progress));
        close(&to_f32(halves.loss), &to_f32(whole.loss), "loss");
        close(
            &to_f32(halves.embeddings),
            &to_f32(whole.embeddings),
            "embeddings",
        );
        assert_same_gradients(&mae, &halves_grads, &whole_grads);
    }

    #[test]
    fn masked_predictions_are_the_whole_predictions_rows_with_the_same_gradients() {
        // decode_masked skips the visible rows' projection and MLP in the decoder's last block;
        // its rows must be the whole prediction's masked rows, and a loss on them must give
        // every parameter the gradient it gets through the whole prediction.
        let device = Device::flex().autodiff();
        let mae = tiny(&device);
        let images = Tensor::<4>::random([3, 1, 16, 16], Distribution::Default, &device);
        let shuffles = mae.draw(3, 7);
        // Each side encodes afresh: one backward pass consumes its graph.
        let encoded = || mae.encode_visible(images.clone(), shuffles.clone());
        let masked = mae.decode_masked(&encoded());
        let whole = mae.decode(&encoded());
        let rows: Vec<&[usize]> = shuffles.iter().map(|s| &s.order[s.keep..]).collect();
        let picked = select_rows(whole, &rows);
        assert_eq!(masked.dims(), picked.dims());
        close(
            &to_f32(masked.clone()),
            &to_f32(picked.clone()),
            "predictions",
        );
        let weights = Tensor::<3>::random(masked.dims(), Distribution::Default, &device);
        let grads = |pred: Tensor<3>| {
            GradientsParams::from_grads((pred * weights.clone()).sum().backward(), &mae)
        };
        assert_same_gradients(&mae, &grads(masked), &grads(picked));
    }
}
