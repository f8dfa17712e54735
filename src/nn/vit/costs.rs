//! What a ViT costs per image: the cost tables of its passes (see `nn::cost`).

use burn::module::Module;

use super::{Block, Vit};
use crate::nn::cost::{self, Cost, Stage, shape};

impl Vit {
    /// The cost table of [`Vit::forward`] on one `side`-pixel image: with CLS pooling the last
    /// block's projection and MLP and the final norm see CLS alone.
    pub fn pooled_costs(&self, side: usize) -> Vec<Stage> {
        if self.mean_pool {
            return self.costs(side, |all| all);
        }
        self.costs_keeping(side, |all| all, Some(1))
    }

    /// The cost table of one `side`-pixel image whose blocks see `visible` of its patches (all
    /// of them, or MAE's unmasked ones) after the prefix tokens, every token kept.
    pub fn costs(&self, side: usize, visible: impl Fn(usize) -> usize) -> Vec<Stage> {
        self.costs_keeping(side, visible, None)
    }

    /// [`Vit::costs`] with the last block's output, and the final norm, at `kept` tokens (all
    /// when `None`).
    fn costs_keeping(
        &self,
        side: usize,
        visible: impl Fn(usize) -> usize,
        kept: Option<usize>,
    ) -> Vec<Stage> {
        let d = self.embed_dim;
        let [_, channels, p, _] = self.patch_embed.proj.weight.dims();
        let patches = (side / p) * (side / p);
        let tokens = visible(patches) + self.prefix_len();
        let kept = kept.unwrap_or(tokens);
        let mut embed_params = self.patch_embed.num_params() + self.cls_token.num_params();
        embed_params += self.pos_embed.num_params();
        embed_params += self.reg_token.as_ref().map_or(0, |r| r.num_params());
        // The projection keeps only the image (counted with the inputs); the position-embedded,
        // prefixed sequence is the first block's input, counted there.
        let embed = Cost::new(
            (d * channels * p * p * patches) as u64,
            0,
            (d * patches) as u64,
        );
        let mut rows = vec![Stage::new(
            "patch_embed",
            shape(&[patches, d]),
            embed_params,
            embed,
        )];
        let blocks = blocks_cost_kept(&self.blocks, d, tokens, kept);
        let block_params = self.blocks.iter().map(|b| b.num_params()).sum();
        let name = format!("blocks ×{}", self.blocks.len());
        rows.push(Stage::new(name, shape(&[kept, d]), block_params, blocks));
        // The final norm keeps its input and two statistics per token.
        let norm = Cost::new(0, ((d + 2) * kept) as u64, (d * kept) as u64);
        rows.push(Stage::new(
            "norm",
            shape(&[kept, d]),
            self.norm.num_params(),
            norm,
        ));
        rows
    }
}

/// Transformer blocks of width `dim` over `tokens` tokens of one image, the last one's output at
/// `kept` of them ([`Block::forward_rows`]).
pub fn blocks_cost_kept(blocks: &[Block], dim: usize, tokens: usize, kept: usize) -> Cost {
    let Some((last, first)) = blocks.split_last() else {
        return Cost::default();
    };
    let block = |kept| {
        cost::transformer_block(
            dim,
            last.mlp.fc1.weight.dims()[1],
            last.attn.heads(),
            [tokens, kept],
            last.ls1.is_some(),
        )
    };
    block(tokens).times(first.len() as u64) + block(kept)
}
