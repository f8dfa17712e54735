//! MAE's light decoder: a linear map into its own width, fixed 2-D sin-cos position embeddings,
//! a few transformer blocks, a norm, and a linear prediction of each patch's pixels.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::backbone::ImageShape;
use super::cost::{self, Cost};
use super::norm::LayerNorm;
use super::patches::select_rows;
use super::vit::{Block, blocks_cost_kept, linear, sincos_2d};
use crate::kernels::linear_layer;

/// A decoder's width, depth and heads (`method.decoder_dim` / `_depth` / `_heads`).
#[derive(Clone, Copy, Debug)]
pub struct DecoderSize {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
}

#[derive(Clone, Debug)]
pub struct DecoderConfig {
    /// Width of the tokens it receives (the encoder's).
    pub in_dim: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    /// Patch grid side: the position table has `1 + grid²` rows (CLS first).
    pub grid: usize,
    /// Values predicted per patch (`p·p·channels` for pixels).
    pub out_dim: usize,
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub embed: Linear,
    pub pos_embed: Param<Tensor<3>>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    pub pred: Linear,
}

impl DecoderSize {
    pub fn validate(&self) -> Result<(), String> {
        if self.dim == 0
            || self.heads == 0
            || !self.dim.is_multiple_of(self.heads)
            || !self.dim.is_multiple_of(4)
        {
            return Err(format!(
                "method.decoder_dim = {} must be a positive multiple of 4 and of method.decoder_heads = {}",
                self.dim, self.heads
            ));
        }
        Ok(())
    }
}

impl DecoderConfig {
    /// A decoder of `size` from `in_dim`-wide tokens to the pixels of `patch`-px patches of
    /// `shape` images.
    pub fn pixels(in_dim: usize, size: DecoderSize, shape: ImageShape, patch: usize) -> Self {
        DecoderConfig {
            in_dim,
            dim: size.dim,
            depth: size.depth,
            heads: size.heads,
            grid: shape.side / patch,
            out_dim: patch * patch * shape.channels,
        }
    }

    pub fn init(&self, device: &Device) -> Decoder {
        Decoder {
            embed: linear(self.in_dim, self.dim, device),
            pos_embed: Param::from_tensor(sincos_2d(self.dim, self.grid, device))
                .set_require_grad(false),
            blocks: (0..self.depth)
                .map(|_| Block::new(self.dim, self.heads, 4 * self.dim, 0.0, 0.0, device))
                .collect(),
            norm: LayerNorm::new(self.dim, device),
            pred: linear(self.dim, self.out_dim, device),
        }
    }
}

impl Decoder {
    /// Per image: the embedding of `encoded` encoder tokens into the decoder's width, the blocks
    /// over the `tokens` it decodes (the last block's projection and MLP over the `predicted`
    /// rows only, as [`Decoder::predict_rows`]), the norm and the prediction of those rows.
    pub fn cost(&self, encoded: usize, tokens: usize, predicted: usize) -> Cost {
        let [d_in, dim] = self.embed.weight.dims();
        let [_, out] = self.pred.weight.dims();
        let norm = Cost::new(0, ((dim + 2) * predicted) as u64, (dim * predicted) as u64);
        cost::linear(d_in, dim, encoded)
            + blocks_cost_kept(&self.blocks, dim, tokens, predicted)
            + norm
            + cost::linear(dim, out, predicted)
    }

    /// Encoder tokens into the decoder's width.
    pub fn embed(&self, tokens: Tensor<3>) -> Tensor<3> {
        linear_layer(&self.embed, tokens)
    }

    /// Predictions `[b, n, out_dim]` for a full sequence of decoder-width tokens: `[b, 1 + n, dim]`
    /// (CLS first, as MAE) or `[b, n, dim]` (patches only).
    pub fn forward(&self, tokens: Tensor<3>) -> Tensor<3> {
        let [_, m, dim] = tokens.dims();
        let rows = self.pos_embed.val().dims()[1];
        let skip = rows - m;
        let x = tokens + self.pos_embed.val().slice([0..1, skip..rows, 0..dim]);
        self.forward_positioned(x)
    }

    /// Predictions `[b, k, out_dim]` at tokens `rows[i]` of image i only (as many for each) of
    /// `x`, positioned as for [`Decoder::forward_positioned`], each the same as that row of the
    /// whole prediction: the last block projects and runs its MLP on those rows alone (what a
    /// loss over masked patches reads).
    pub fn predict_rows(&self, mut x: Tensor<3>, rows: &[&[usize]]) -> Tensor<3> {
        let x = match self.blocks.split_last() {
            Some((last, first)) => {
                for block in first {
                    x = block.forward(x);
                }
                last.forward_rows(x, rows)
            }
            None => select_rows(x, rows),
        };
        linear_layer(&self.pred, self.norm.forward(x))
    }

    /// [`Decoder::forward`] for tokens that carry their positions already.
    pub fn forward_positioned(&self, mut x: Tensor<3>) -> Tensor<3> {
        let [b, m, dim] = x.dims();
        let skip = self.pos_embed.val().dims()[1] - m;
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.norm.forward(x);
        let start = 1 - skip;
        linear_layer(&self.pred, x.slice([0..b, start..m, 0..dim]))
    }
}
