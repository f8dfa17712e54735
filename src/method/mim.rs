//! What the masked-image-modeling methods share: the ViT they need, seeded per-step masks, and
//! masks / gather indices as tensors.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::loader::mix_seed;
use crate::nn::cost::{Stage, shape};
use crate::nn::{Backbone, Vit};

/// Reconstruction cannot be solved by a constant, so collapse is the encoder's features going flat.
pub const COLLAPSE_HINT: &str = "Pixel reconstruction cannot be solved by a constant, so this is the encoder's features going flat: lower optim.base_lr or raise optim.warmup_epochs.";

/// `method.mask_ratio` is a fraction strictly between 0 and 1.
pub fn check_mask_ratio(mask_ratio: f64) -> Result<(), String> {
    if !(mask_ratio > 0.0 && mask_ratio < 1.0) {
        return Err(format!(
            "method.mask_ratio = {mask_ratio} must be in (0, 1) (MAE 0.75, SimMIM 0.6, BEiT 0.4)"
        ));
    }
    Ok(())
}

/// A masking block (`method.mask_block`, `method.mask_min_block`) spans at least one patch.
pub fn check_block(name: &str, patches: usize) -> Result<(), String> {
    if patches == 0 {
        return Err(format!("method.{name} must be at least 1 patch"));
    }
    Ok(())
}

/// What `selfsup methods` says of a masked image model.
pub fn about(title: &'static str, prevents_collapse: &'static str) -> super::About {
    super::About {
        title,
        family: "masked image modeling",
        prevents_collapse,
        negatives: false,
    }
}

/// The encoder's ViT; recipe validation refuses masked image modeling on a ResNet.
pub fn vit(encoder: &Backbone) -> &Vit {
    encoder
        .vit()
        .expect("recipe validation requires a ViT for masked image modeling")
}

/// The RNG that masks the batch of `step`: a function of (seed, step) only, so a resumed run
/// masks exactly as an uninterrupted one.
pub fn mask_rng(seed: u64, step: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix_seed(&[seed, step as u64, 0x4d41_534b]))
}

/// Per-sample masks (true = masked) as a `[b, n]` tensor of 0 / 1.
pub fn mask_tensor(masks: &[Vec<bool>], device: &Device) -> Tensor<2> {
    let n = masks[0].len();
    let data: Vec<f32> = masks.iter().flatten().map(|&m| m as u8 as f32).collect();
    Tensor::from_data(TensorData::new(data, [masks.len(), n]), device)
}

/// SimMIM / BEiT: the encoder over `images` with `mask` (`[b, n]`) replaced by `mask_token`, and
/// `head` applied to every patch token. Returns (head outputs `[b, n, out]`, all tokens).
pub fn predict_masked(
    vit: &Vit,
    images: Tensor<4>,
    mask: Tensor<2>,
    mask_token: Tensor<3>,
    head: &Linear,
) -> (Tensor<3>, Tensor<3>) {
    let tokens = vit.forward_masked(images, mask, mask_token);
    let out = crate::kernels::linear_layer(head, vit.patch_part(tokens.clone()));
    (out, tokens)
}

/// A ViT's cost table for one `side`-pixel image with `head` applied to every patch token.
pub fn vit_with_head(vit: &Vit, side: usize, head: &Linear, name: &str) -> Vec<Stage> {
    let mut stages = vit.costs(side, |all| all);
    let [d, out] = head.weight.dims();
    let patches = (side / vit.patch_size()).pow(2);
    let cost = crate::nn::cost::linear(d, out, patches);
    stages.push(Stage::new(
        name,
        shape(&[patches, out]),
        head.num_params(),
        cost,
    ));
    stages
}

/// A masked-image model's output for pictures: the masks and the predicted images (in the
/// normalised space the model sees; the caller maps them back to pixels).
pub struct Reconstruction {
    /// `[b, n]`, true where the patch was masked (empty for a tokenizer, which masks nothing).
    pub masks: Vec<Vec<bool>>,
    pub prediction: Tensor<4>,
}
