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

/// For sample i of `x [b, n, d]`, the tokens `rows[i]` in that order: `[b, k, d]`. One index per
/// row into the flattened `[b·n, d]` (a `gather` would take one per element, and its backward a
/// scatter over all of them).
pub fn select_rows(x: Tensor<3>, rows: &[&[usize]]) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let k = rows[0].len();
    assert!(
        rows.len() == b
            && rows
                .iter()
                .all(|r| r.len() == k && r.iter().all(|&t| t < n))
    );
    let flat: Vec<i64> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.iter().map(move |&t| (i * n + t) as i64))
        .collect();
    let index = Tensor::from_data(TensorData::new(flat, [b * k]), &x.device());
    x.reshape([b * n, d]).select(0, index).reshape([b, k, d])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_rows_picks_each_samples_tokens_and_routes_their_gradient_back() {
        let device = Device::flex().autodiff();
        // x[i, t, c] = 100·i + 10·t + c: every value names its sample, token and channel.
        let values: Vec<f32> = (0..2 * 4 * 3)
            .map(|e| (100 * (e / 12) + 10 * (e / 3 % 4) + e % 3) as f32)
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(values, [2, 4, 3]), &device).require_grad();
        let rows: [&[usize]; 2] = [&[3, 0], &[1, 2]];
        let picked = select_rows(x.clone(), &rows);
        let want = [
            30.0, 31.0, 32.0, 0.0, 1.0, 2.0, 110.0, 111.0, 112.0, 120.0, 121.0, 122.0,
        ];
        assert_eq!(picked.to_data().try_to_vec::<f32>().unwrap(), want);
        // d(Σ w·picked)/dx: the weight of each picked position lands on its source row, zero
        // on the rows no sample picked.
        let weights: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let w = Tensor::<3>::from_data(TensorData::new(weights, [2, 2, 3]), &device);
        let grads = (picked * w).sum().backward();
        let dx = x
            .grad(&grads)
            .unwrap()
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        // Sample 0 picked tokens 3 then 0, sample 1 tokens 1 then 2.
        let want_dx = [
            [4.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0],
            [
                0.0, 0.0, 0.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 0.0, 0.0, 0.0,
            ],
        ];
        assert_eq!(dx, want_dx.concat());
    }
}
