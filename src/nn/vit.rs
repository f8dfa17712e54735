//! Vision Transformer (Dosovitskiy et al. 2021) with the pieces SSL papers use: fused `qkv`,
//! pre-norm blocks, optional LayerScale and stochastic depth, CLS and register tokens, fixed 2-D
//! sin-cos or learned position embeddings. Field names follow timm / the official MAE and DINO
//! checkpoints (`patch_embed.proj`, `blocks.N.attn.qkv`, `blocks.N.ls1.gamma`, `norm`, …) so their
//! weights map onto it by name (torch `Linear` weights transposed: burn stores `[in, out]`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};

mod block;
mod costs;
mod positions;

pub use block::{Attention, Block, LayerScale, MlpBlock};
pub use costs::blocks_cost_kept;
pub use positions::{bilinear_resample, sincos_2d};

use super::norm::LayerNorm;
use super::patches::{gather_rows, select_rows};

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
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "model.patch_size = {} must divide the image side {} (set data.image_size to resize)",
                self.patch_size, self.image_size
            ));
        }
        if self.heads == 0 || !self.embed_dim.is_multiple_of(self.heads) {
            return Err(format!(
                "model.embed_dim = {} must be a multiple of model.heads = {}",
                self.embed_dim, self.heads
            ));
        }
        if self.pos_embed == PosEmbedKind::SinCos && !self.embed_dim.is_multiple_of(4) {
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
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 {
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
    // A new parameter, not `bias.map(zeros_like)`: that tensor would not require a gradient,
    // and the biases would stay frozen at zero.
    layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    layer
}

fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 0.02), device)
}

#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: Conv2d,
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
        let patches = crate::kernels::conv2d_layer(&self.patch_embed.proj, images);
        let [_, d, gh, gw] = patches.dims();
        patches.reshape([b, d, gh * gw]).swap_dims(1, 2)
    }

    /// Position-embedded embeddings `[b, k, d]` of the patches `keep[i]` of sample i only (MAE's
    /// visible set), equal to [`Vit::patch_embeddings`] plus positions, then those rows. Their
    /// pixels are gathered first and projected as a linear layer with the positions as the
    /// product's initial value: the masked patches cost nothing, forward or backward.
    pub fn embed_patches_at(&self, images: Tensor<4>, keep: &[&[usize]]) -> Tensor<3> {
        let [b, c, height, width] = images.dims();
        let p = self.patch_size();
        let (rows, cols) = (height / p, width / p);
        let n = rows * cols;
        assert_eq!(n, self.num_patches(), "the training grid's patches");
        let d = self.embed_dim;
        // Each patch's pixels in the projection weight's (channel, row, column) order.
        let pixels = images
            .reshape([b, c, rows, p, cols, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, n, c * p * p]);
        let visible = select_rows(pixels, keep);
        let k = keep[0].len();
        let table = self.pos_embed.val().reshape([1 + n, d]);
        let index: Vec<i64> = keep
            .iter()
            .flat_map(|r| r.iter().map(|&t| 1 + t as i64))
            .collect();
        let positions = gather_rows(table, index).reshape([b, k, d]);
        let proj = &self.patch_embed.proj;
        let weight = proj.weight.val().reshape([d, c * p * p]).transpose();
        crate::kernels::linear_plus(
            positions,
            visible,
            weight,
            proj.bias.as_ref().map(|bias| bias.val()),
        )
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

    /// The tokens entering the last block, and that block.
    fn up_to_last_block(&self, images: Tensor<4>) -> (Tensor<3>, &Block) {
        let mut x = self.embed_tokens(images);
        let (last, rest) = self
            .blocks
            .split_last()
            .expect("a ViT has at least one block");
        for block in rest {
            x = block.forward(x);
        }
        (x, last)
    }

    /// The last block's attention from CLS to every patch, per head: `[b, heads, patches]`
    /// (DINO's attention maps).
    pub fn cls_attention(&self, images: Tensor<4>) -> Tensor<3> {
        let (x, last) = self.up_to_last_block(images);
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

    /// The image representation: the CLS token, or the mean of the patch tokens. CLS reads one
    /// row of the last block, so that block projects and runs its MLP on CLS alone
    /// ([`Block::forward_rows`]; the same values and gradients as pooling every token).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        if self.mean_pool {
            return self.pool(self.forward_tokens(images));
        }
        let (x, last) = self.up_to_last_block(images);
        let [b, _, d] = x.dims();
        let cls: &[usize] = &[0];
        self.norm
            .forward(last.forward_rows(x, &vec![cls; b]))
            .reshape([b, d])
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
mod tests;
