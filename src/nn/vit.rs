//! Vision Transformer (Dosovitskiy et al. 2021) with the pieces SSL papers use: fused `qkv`,
//! pre-norm blocks, optional LayerScale and stochastic depth, CLS and register tokens, fixed 2-D
//! sin-cos or learned position embeddings. Field names follow timm / the official MAE and DINO
//! checkpoints (`patch_embed.proj`, `blocks.N.attn.qkv`, `blocks.N.ls1.gamma`, `norm`, …) so their
//! weights map onto it by name (torch `Linear` weights transposed: burn stores `[in, out]`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::drop_path::DropPath;
use super::norm::LayerNorm;
use crate::kernels::{gelu, linear_layer, multi_head_attention};

/// How the encoder turns tokens into one feature vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Cls,
    MeanPatch,
}

/// Position embedding kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosEmbedKind {
    /// Fixed 2-D sin-cos (MAE, MoCo v3), not trained.
    SinCos,
    /// Learned, initialised N(0, 0.02²) (ViT, DINO).
    Learned,
}

#[derive(Clone, Debug)]
pub struct VitConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: f64,
    /// LayerScale init value (CaiT / DINOv2: 1e-5 … 0.1); 0 disables LayerScale.
    pub layer_scale: f64,
    /// Stochastic-depth rate of the last block; block i drops with rate·i/(depth−1).
    pub drop_path: f64,
    pub pos_embed: PosEmbedKind,
    /// Register tokens (Darcet et al. 2024), appended after CLS; 0 for none.
    pub registers: usize,
    pub pool: Pool,
    /// Keep the random patch projection fixed (MoCo v3's stability trick).
    pub freeze_patch_embed: bool,
}

impl VitConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.patch_size == 0 || self.image_size % self.patch_size != 0 {
            return Err(format!(
                "model.patch_size = {} must divide the image side {} (set data.image_size to resize)",
                self.patch_size, self.image_size
            ));
        }
        if self.heads == 0 || self.embed_dim % self.heads != 0 {
            return Err(format!(
                "model.embed_dim = {} must be a multiple of model.heads = {}",
                self.embed_dim, self.heads
            ));
        }
        if self.pos_embed == PosEmbedKind::SinCos && self.embed_dim % 4 != 0 {
            return Err(format!(
                "model.embed_dim = {} must be a multiple of 4 for sin-cos position embeddings",
                self.embed_dim
            ));
        }
        if self.depth == 0 {
            return Err("model.depth must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(format!(
                "model.drop_path = {} must be in [0, 1)",
                self.drop_path
            ));
        }
        if !(self.mlp_ratio > 0.0) {
            return Err(format!("model.mlp_ratio = {} must be > 0", self.mlp_ratio));
        }
        Ok(())
    }

    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    pub fn init(&self, device: &Device) -> Vit {
        let d = self.embed_dim;
        let grid = self.image_size / self.patch_size;
        let mut proj = Conv2dConfig::new([self.in_channels, d], [self.patch_size, self.patch_size])
            .with_stride([self.patch_size, self.patch_size])
            .with_initializer(Initializer::XavierUniform { gain: 1.0 })
            .init(device);
        if self.freeze_patch_embed {
            proj = proj.no_grad();
        }
        let pos_embed = match self.pos_embed {
            PosEmbedKind::SinCos => {
                Param::from_tensor(sincos_2d(d, grid, device)).set_require_grad(false)
            }
            PosEmbedKind::Learned => Param::from_tensor(normal([1, 1 + grid * grid, d], device)),
        };
        let hidden = (d as f64 * self.mlp_ratio).round() as usize;
        let blocks = (0..self.depth)
            .map(|i| {
                let rate = if self.depth > 1 {
                    self.drop_path * i as f64 / (self.depth - 1) as f64
                } else {
                    self.drop_path
                };
                Block::new(d, self.heads, hidden, self.layer_scale, rate, device)
            })
            .collect();
        Vit {
            patch_embed: PatchEmbed { proj },
            cls_token: Param::from_tensor(normal([1, 1, d], device)),
            reg_token: (self.registers > 0)
                .then(|| Param::from_tensor(normal([1, self.registers, d], device))),
            pos_embed,
            blocks,
            norm: LayerNorm::new(d, device),
            embed_dim: d,
            registers: self.registers,
            mean_pool: self.pool == Pool::MeanPatch,
        }
    }
}

pub fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    // Xavier-uniform weights, zero biases: the MAE / MoCo v3 initialisation.
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    layer.bias = layer.bias.map(|b| b.map(|t| t.zeros_like()));
    layer
}

fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 0.02), device)
}

/// The `[to², from²]` matrix that resamples a row-major `from × from` grid to `to × to` by bilinear
/// interpolation (pixel centres aligned, as `align_corners = false`; edges clamped).
pub fn bilinear_resample(from: usize, to: usize, device: &Device) -> Tensor<2> {
    let taps = |o: usize| {
        let x = ((o as f64 + 0.5) * from as f64 / to as f64 - 0.5).clamp(0.0, (from - 1) as f64);
        let lo = x.floor() as usize;
        let hi = (lo + 1).min(from - 1);
        let w = x - lo as f64;
        [(lo, 1.0 - w), (hi, w)]
    };
    let mut data = vec![0.0f32; to * to * from * from];
    for oi in 0..to {
        for oj in 0..to {
            let row = (oi * to + oj) * from * from;
            for (i, wi) in taps(oi) {
                for (j, wj) in taps(oj) {
                    data[row + i * from + j] += (wi * wj) as f32;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [to * to, from * from]), device)
}

/// MAE's fixed 2-D sin-cos embedding `[1, 1 + grid², dim]`: a zero row for CLS, then per patch
/// (row i, column j) sin/cos of j at dim/4 frequencies followed by the same for i.
pub fn sincos_2d(dim: usize, grid: usize, device: &Device) -> Tensor<3> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let mut data = vec![0.0f32; dim];
    for i in 0..grid {
        for j in 0..grid {
            for coord in [j, i] {
                data.extend(omega.iter().map(|w| (coord as f64 * w).sin() as f32));
                data.extend(omega.iter().map(|w| (coord as f64 * w).cos() as f32));
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [1, 1 + grid * grid, dim]), device)
}

#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: Conv2d,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    heads: usize,
}

impl Attention {
    /// Self-attention over `[b, n, d]`; also returns the attention weights `[b, heads, n, n]`.
    pub fn forward_with_weights(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<4>) {
        let [b, n, d] = x.dims();
        let h = self.heads;
        let hd = d / h;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, h, hd])
            .permute([2, 0, 3, 1, 4]);
        let take = |i: usize| qkv.clone().slice(i..i + 1).reshape([b, h, n, hd]);
        let (q, k, v) = (take(0), take(1), take(2));
        let scores = q
            .mul_scalar(1.0 / (hd as f64).sqrt())
            .matmul(k.swap_dims(2, 3));
        let weights = softmax(scores, 3);
        let out = weights.clone().matmul(v).swap_dims(1, 2).reshape([b, n, d]);
        (self.proj.forward(out), weights)
    }

    /// Self-attention over `[b, n, d]` by the fused kernel (same result as
    /// [`Self::forward_with_weights`], without materialising the weights for the caller).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let qkv = linear_layer(&self.qkv, x);
        linear_layer(&self.proj, multi_head_attention(qkv, self.heads))
    }
}

#[derive(Module, Debug)]
pub struct MlpBlock {
    pub fc1: Linear,
    pub fc2: Linear,
}

#[derive(Module, Debug)]
pub struct LayerScale {
    pub gamma: Param<Tensor<1>>,
}

impl LayerScale {
    fn new(dim: usize, init: f64, device: &Device) -> Self {
        LayerScale {
            gamma: Param::from_tensor(Tensor::full([dim], init, device)),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        x * self.gamma.val().unsqueeze::<3>()
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub ls1: Option<LayerScale>,
    pub drop_path1: DropPath,
    pub norm2: LayerNorm,
    pub mlp: MlpBlock,
    pub ls2: Option<LayerScale>,
    pub drop_path2: DropPath,
}

fn scale(ls: &Option<LayerScale>, x: Tensor<3>) -> Tensor<3> {
    match ls {
        Some(ls) => ls.forward(x),
        None => x,
    }
}

impl Block {
    /// A pre-norm block of width `dim` with an MLP of `hidden` units; LayerScale when
    /// `layer_scale > 0`, stochastic depth at `drop_path`.
    pub fn new(
        dim: usize,
        heads: usize,
        hidden: usize,
        layer_scale: f64,
        drop_path: f64,
        device: &Device,
    ) -> Self {
        let ls = || (layer_scale > 0.0).then(|| LayerScale::new(dim, layer_scale, device));
        Block {
            norm1: LayerNorm::new(dim, device),
            attn: Attention {
                qkv: linear(dim, 3 * dim, device),
                proj: linear(dim, dim, device),
                heads,
            },
            ls1: ls(),
            drop_path1: DropPath::new(drop_path),
            norm2: LayerNorm::new(dim, device),
            mlp: MlpBlock {
                fc1: linear(dim, hidden, device),
                fc2: linear(hidden, dim, device),
            },
            ls2: ls(),
            drop_path2: DropPath::new(drop_path),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let a = self.attn.forward(self.norm1.forward(x.clone()));
        let x = x + self.drop_path1.forward(scale(&self.ls1, a));
        let hidden = gelu(linear_layer(&self.mlp.fc1, self.norm2.forward(x.clone())));
        let m = linear_layer(&self.mlp.fc2, hidden);
        x.clone() + self.drop_path2.forward(scale(&self.ls2, m))
    }
}

#[derive(Module, Debug)]
pub struct Vit {
    pub patch_embed: PatchEmbed,
    pub cls_token: Param<Tensor<3>>,
    pub reg_token: Option<Param<Tensor<3>>>,
    pub pos_embed: Param<Tensor<3>>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    embed_dim: usize,
    registers: usize,
    mean_pool: bool,
}

impl Vit {
    pub fn out_dim(&self) -> usize {
        self.embed_dim
    }

    /// Side of the square patches.
    pub fn patch_size(&self) -> usize {
        self.patch_embed.proj.weight.dims()[2]
    }

    pub fn num_patches(&self) -> usize {
        self.pos_embed.val().dims()[1] - 1
    }

    /// Side of the square patch grid.
    pub fn grid(&self) -> usize {
        self.num_patches().isqrt()
    }

    /// Tokens before the patches: CLS and the registers.
    pub fn prefix_len(&self) -> usize {
        1 + self.registers
    }

    /// Patch embeddings without position: `[b, n, d]`, row-major over the patch grid.
    pub fn patch_embeddings(&self, images: Tensor<4>) -> Tensor<3> {
        let b = images.dims()[0];
        let patches = self.patch_embed.proj.forward(images);
        let [_, d, gh, gw] = patches.dims();
        patches.reshape([b, d, gh * gw]).swap_dims(1, 2)
    }

    /// Adds the patches' position embeddings to `[b, n, d]` patch embeddings. A grid other than
    /// the training one (DINO's local crops) gets the embeddings bilinearly resampled to its side.
    pub fn add_patch_positions(&self, patches: Tensor<3>) -> Tensor<3> {
        let [_, n, d] = patches.dims();
        let total = self.num_patches();
        let table = self.pos_embed.val().slice([0..1, 1..1 + total, 0..d]);
        if n == total {
            return patches + table;
        }
        let side = n.isqrt();
        assert_eq!(side * side, n, "patch grids are square");
        let resample = bilinear_resample(self.grid(), side, &patches.device());
        patches + resample.matmul(table.reshape([total, d])).unsqueeze()
    }

    /// Prepends CLS (with its position) and the registers (which carry none, as in timm /
    /// DINOv2) to position-embedded patch tokens: `[b, k, d]` → `[b, 1 + r + k, d]`.
    pub fn prepend_prefix(&self, patches: Tensor<3>) -> Tensor<3> {
        let [b, _, d] = patches.dims();
        let cls = (self.cls_token.val() + self.pos_embed.val().slice([0..1, 0..1, 0..d]))
            .expand([b, 1, d]);
        let mut parts = vec![cls];
        if let Some(reg) = &self.reg_token {
            parts.push(reg.val().expand([b, self.registers, d]));
        }
        parts.push(patches);
        Tensor::cat(parts, 1)
    }

    /// The blocks and the final norm over any token sequence.
    pub fn encode(&self, mut x: Tensor<3>) -> Tensor<3> {
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.norm.forward(x)
    }

    /// Patch tokens with CLS (+ registers) prepended, position-embedded: `[b, 1 + r + n, d]`.
    pub fn embed_tokens(&self, images: Tensor<4>) -> Tensor<3> {
        self.prepend_prefix(self.add_patch_positions(self.patch_embeddings(images)))
    }

    /// All tokens after the final norm: `[b, 1 + registers + patches, d]`.
    pub fn forward_tokens(&self, images: Tensor<4>) -> Tensor<3> {
        self.encode(self.embed_tokens(images))
    }

    /// SimMIM / BEiT input: patches where `mask` (`[b, n]`, 1 = masked) is set are replaced by
    /// `mask_token` (`[1, 1, d]`) before the position embedding. Returns all tokens after the norm.
    pub fn forward_masked(
        &self,
        images: Tensor<4>,
        mask: Tensor<2>,
        mask_token: Tensor<3>,
    ) -> Tensor<3> {
        let patches = self.patch_embeddings(images);
        let [b, n, d] = patches.dims();
        let m = mask.reshape([b, n, 1]);
        let patches =
            patches * (m.clone().neg().add_scalar(1.0)) + mask_token.expand([b, n, d]) * m;
        self.encode(self.prepend_prefix(self.add_patch_positions(patches)))
    }

    /// The last block's attention from CLS to every patch, per head: `[b, heads, patches]`
    /// (DINO's attention maps).
    pub fn cls_attention(&self, images: Tensor<4>) -> Tensor<3> {
        let mut x = self.embed_tokens(images);
        let (last, rest) = self
            .blocks
            .split_last()
            .expect("a ViT has at least one block");
        for block in rest {
            x = block.forward(x);
        }
        let (_, weights) = last.attn.forward_with_weights(last.norm1.forward(x));
        let [b, h, n, _] = weights.dims();
        weights
            .slice([0..b, 0..h, 0..1, self.prefix_len()..n])
            .reshape([b, h, n - self.prefix_len()])
    }

    /// The patch tokens of a token sequence (CLS and registers dropped).
    pub fn patch_part(&self, tokens: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = tokens.dims();
        tokens.slice([0..b, self.prefix_len()..n, 0..d])
    }

    /// The image representation: the CLS token, or the mean of the patch tokens.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.pool(self.forward_tokens(images))
    }

    /// CLS, or the mean of the patch tokens, of a normed token sequence `[b, 1 + r + k, d]`.
    pub fn pool(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = tokens.dims();
        if self.mean_pool {
            self.patch_part(tokens).mean_dim(1).reshape([b, d])
        } else {
            tokens.slice([0..b, 0..1]).reshape([b, d])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(image_size: usize) -> VitConfig {
        VitConfig {
            image_size,
            patch_size: 4,
            in_channels: 1,
            embed_dim: 16,
            depth: 2,
            heads: 2,
            mlp_ratio: 2.0,
            layer_scale: 0.1,
            drop_path: 0.1,
            pos_embed: PosEmbedKind::SinCos,
            registers: 2,
            pool: Pool::Cls,
            freeze_patch_embed: true,
        }
    }

    #[test]
    fn parameter_names_follow_timm() {
        let vit = tiny(8).init(&Device::flex());
        let names: Vec<String> = crate::host::named_values(&vit)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for expected in [
            "patch_embed.proj.weight",
            "patch_embed.proj.bias",
            "cls_token",
            "reg_token",
            "pos_embed",
            "blocks.0.norm1.weight",
            "blocks.0.norm1.bias",
            "blocks.0.attn.qkv.weight",
            "blocks.0.attn.qkv.bias",
            "blocks.0.attn.proj.weight",
            "blocks.0.ls1.gamma",
            "blocks.0.norm2.weight",
            "blocks.0.mlp.fc1.weight",
            "blocks.0.mlp.fc2.bias",
            "blocks.1.ls2.gamma",
            "norm.weight",
            "norm.bias",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} not in {names:?}"
            );
        }
        // qkv is one fused [d, 3d] projection.
        assert_eq!(vit.blocks[0].attn.qkv.weight.val().dims(), [16, 48]);
        assert_eq!(vit.pos_embed.val().dims(), [1, 1 + 4, 16]);
    }

    #[test]
    fn output_is_cls_or_mean_patch_token() {
        let device = Device::flex();
        let images = Tensor::<4>::random([3, 1, 8, 8], Distribution::Default, &device);
        let vit = tiny(8).init(&device);
        let tokens = vit.forward_tokens(images.clone());
        assert_eq!(tokens.dims(), [3, 1 + 2 + 4, 16]);
        let cls = crate::host::to_f32(vit.forward(images.clone()));
        let first = crate::host::to_f32(tokens.clone().slice([0..3, 0..1]).reshape([3, 16]));
        assert_eq!(cls, first);
        let mut cfg = tiny(8);
        cfg.pool = Pool::MeanPatch;
        device.seed(1);
        let vit = cfg.init(&device);
        let tokens = vit.forward_tokens(images.clone());
        let mean = crate::host::to_f32(tokens.slice([0..3, 3..7]).mean_dim(1).reshape([3, 16]));
        let got = crate::host::to_f32(vit.forward(images));
        for (a, b) in got.iter().zip(&mean) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn bilinear_resample_halves_a_grid_by_averaging_2x2_blocks() {
        // 4×4 → 2×2 with aligned centres: output (0, 0) sits at input (0.5, 0.5), the mean of the
        // top-left 2×2 block; every row of the matrix sums to 1.
        let m = crate::host::to_f32(bilinear_resample(4, 2, &Device::flex()));
        let row0 = &m[0..16];
        for (k, &w) in row0.iter().enumerate() {
            let want = if [0, 1, 4, 5].contains(&k) { 0.25 } else { 0.0 };
            assert!((w - want).abs() < 1e-6, "{row0:?}");
        }
        for row in m.chunks_exact(16) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // The same side is the identity.
        let same = crate::host::to_f32(bilinear_resample(3, 3, &Device::flex()));
        for i in 0..9 {
            for j in 0..9 {
                assert_eq!(same[i * 9 + j], (i == j) as u8 as f32);
            }
        }
    }

    #[test]
    fn smaller_images_run_on_resampled_positions_and_cls_attention_sums_to_one() {
        let device = Device::flex();
        let vit = tiny(8).init(&device);
        let small = Tensor::<4>::random([2, 1, 4, 4], Distribution::Default, &device);
        assert_eq!(vit.forward_tokens(small).dims(), [2, 1 + 2 + 1, 16]);
        // CLS also attends to itself and the registers, so its patch weights sum below 1.
        let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let attn = crate::host::to_f32(vit.cls_attention(images));
        assert_eq!(attn.len(), 2 * 2 * 4);
        for head in attn.chunks_exact(4) {
            let total: f32 = head.iter().sum();
            assert!(total > 0.0 && total < 1.0, "{head:?}");
        }
    }

    #[test]
    fn sincos_embedding_matches_mae_formula() {
        // dim 8 → 2 frequencies (1, 1/100). Patch (row 1, col 2) of a 3×3 grid is token 1 + 5:
        // [sin 2, sin 0.02, cos 2, cos 0.02, sin 1, sin 0.01, cos 1, cos 0.01].
        let pe = crate::host::to_f32(sincos_2d(8, 3, &Device::flex()));
        assert!(pe[..8].iter().all(|&v| v == 0.0), "CLS row is zero");
        let row = &pe[6 * 8..7 * 8];
        let want = [
            2f64.sin(),
            0.02f64.sin(),
            2f64.cos(),
            0.02f64.cos(),
            1f64.sin(),
            0.01f64.sin(),
            1f64.cos(),
            0.01f64.cos(),
        ];
        for (g, w) in row.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{row:?}");
        }
    }

    #[test]
    fn frozen_patch_projection_and_sincos_get_no_gradient() {
        let device = Device::flex().autodiff();
        let vit = tiny(8).init(&device);
        let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let grads = vit.forward(images).sum().backward();
        assert!(vit.patch_embed.proj.weight.val().grad(&grads).is_none());
        assert!(vit.pos_embed.val().grad(&grads).is_none());
        assert!(vit.cls_token.val().grad(&grads).is_some());
        assert!(vit.blocks[1].attn.qkv.weight.val().grad(&grads).is_some());
    }

    #[test]
    fn drop_path_is_identity_in_eval_mode() {
        let device = Device::flex().autodiff();
        let mut cfg = tiny(8);
        cfg.drop_path = 0.5;
        let vit = cfg.init(&device).valid();
        let images =
            Tensor::<4>::random([4, 1, 8, 8], Distribution::Default, &device.clone().inner());
        let a = crate::host::to_f32(vit.forward(images.clone()));
        let b = crate::host::to_f32(vit.forward(images));
        assert_eq!(a, b);
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = tiny(30);
        assert!(cfg.validate().unwrap_err().contains("model.patch_size"));
        cfg.image_size = 32;
        cfg.heads = 3;
        assert!(cfg.validate().unwrap_err().contains("model.heads"));
    }
}
