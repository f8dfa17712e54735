//! The transformer block: pre-norm multi-head self-attention with a fused `qkv`, an MLP,
//! optional LayerScale and stochastic depth (timm's names).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::linear;
use crate::kernels::{gelu, linear_layer, linear_onto, multi_head_attention};
use crate::nn::drop_path::DropPath;
use crate::nn::norm::LayerNorm;
use crate::nn::patches::select_rows;

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
    pub fn heads(&self) -> usize {
        self.heads
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear_layer(&self.proj, self.mix(x))
    }

    /// The heads' outputs concatenated, before the output projection.
    fn mix(&self, x: Tensor<3>) -> Tensor<3> {
        multi_head_attention(linear_layer(&self.qkv, x), self.heads)
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
        self.forward_picked(x, |tokens| tokens)
    }

    /// [`Block::forward`]'s output at tokens `rows[i]` of image i only (as many for each),
    /// `[b, k, d]`. Attention still reads every token; the output projection and the MLP run on
    /// the kept rows alone, each row's result the same as in the whole output.
    pub fn forward_rows(&self, x: Tensor<3>, rows: &[&[usize]]) -> Tensor<3> {
        self.forward_picked(x, |tokens| select_rows(tokens, rows))
    }

    /// The block with `pick` choosing the token rows after attention.
    fn forward_picked(&self, x: Tensor<3>, pick: impl Fn(Tensor<3>) -> Tensor<3>) -> Tensor<3> {
        let mixed = self.attn.mix(self.norm1.forward(x.clone()));
        let x = branch_onto(
            pick(x),
            &self.attn.proj,
            pick(mixed),
            &self.ls1,
            &self.drop_path1,
        );
        let hidden = gelu(linear_layer(&self.mlp.fc1, self.norm2.forward(x.clone())));
        branch_onto(x, &self.mlp.fc2, hidden, &self.ls2, &self.drop_path2)
    }
}

/// `x + drop_path(scale(layer(h)))`, a residual branch's last layer onto the stream: one fused
/// product when neither LayerScale nor stochastic depth acts.
fn branch_onto(
    x: Tensor<3>,
    layer: &Linear,
    h: Tensor<3>,
    ls: &Option<LayerScale>,
    drop_path: &DropPath,
) -> Tensor<3> {
    if ls.is_none() && drop_path.is_identity_on(&x) {
        return linear_onto(x, layer, h);
    }
    x + drop_path.forward(scale(ls, linear_layer(layer, h)))
}
